# Cascade Mask R-CNN + LeViT-256, FPN, 3x with multi-scale + crop training on COCO 2017.
# The recipe of swin/cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py (the Swin paper's:
# 4conv1fc box heads with GIoU, multi-scale + crop training, 3x, AdamW 1e-4,
# weight decay 0.05, 16 images per batch), with the backbone of mask-rcnn_levit-256_coco.py
# (64/128/256/384 at strides 4-32, attention-bias tables resampled to each
# input's grid, drop path 0.1). The LeViT paper reports no detection results
# and this config has not been trained here.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/cascade-mask-rcnn_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_3x.py'
]
model = dict(
    backbone=dict(
        type='densekit.LeViT',
        arch='256',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/LeViT-256-13b5763e.pth')),
    neck=dict(in_channels=[64, 128, 256, 384]))
# BatchNorm is LeViT's only normalisation, with 2 images per GPU: synchronise
# it in distributed training; no weight decay on it and the attention biases
sync_bn = 'torch'
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'attention_biases': dict(decay_mult=0.)}))
env_cfg = dict(cudnn_benchmark=False)  # images of many sizes
log_processor = dict(by_epoch=True)
