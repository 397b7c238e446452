# Mask R-CNN + CoAtNet-0, FPN, 1x on COCO 2017: the Swin-T recipe (1333x800,
# AdamW 1e-4, weight decay 0.05, none on norms and relative-position tables,
# drop path 0.2) with CoAtNet-0's 96/192/384/768 pyramid. Its S3/S4 stages
# attend globally: O((H/16 * W/16)^2) memory, about 4k tokens at 1333x800.
# The CoAtNet paper reports no detection results and this config has not been
# trained here. The CoAtNet family file for Mask R-CNN.
# Weights and input normalisation as in upernet_coatnet-0_160k_ade20k.py:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_1x.py'
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
# no weight decay on norms and relative-position tables (the Swin paper's detection optimiser)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'relative_position_bias_table': dict(decay_mult=0.),
    'pos_embed': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.),
}))
# images of many sizes: cuDNN's per-shape benchmarking would cost more than it saves
env_cfg = dict(cudnn_benchmark=False)
log_processor = dict(by_epoch=True)
