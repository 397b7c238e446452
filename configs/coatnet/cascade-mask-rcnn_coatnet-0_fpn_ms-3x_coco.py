# Cascade Mask R-CNN + CoAtNet-0, FPN, 3x with multi-scale + crop training on COCO 2017.
# The recipe of swin/cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py (the Swin paper's:
# 4conv1fc box heads with GIoU, multi-scale + crop training, 3x, AdamW 1e-4,
# weight decay 0.05, 16 images per batch), with the backbone and input normalisation of
# mask-rcnn_coatnet-0_coco.py (96/192/384/768 at strides 4-32, drop path 0.2;
# its S3/S4 stages attend globally). The CoAtNet paper reports no detection
# results and this config has not been trained here.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/cascade-mask-rcnn_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_3x.py'
]
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        type='densekit.CoAtNet',
        arch='0',
        pretrain_img_size=224,
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        out_norm='all',
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/coatnet_0_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
# BatchNorm in the MBConv stages, 2 images per GPU: synchronised in distributed training
sync_bn = 'torch'
# no weight decay on norms, position embeddings and relative-position tables
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'relative_position_bias_table': dict(decay_mult=0.),
    'pos_embed': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.),
}))
env_cfg = dict(cudnn_benchmark=False)  # images of many sizes
log_processor = dict(by_epoch=True)
