# Mask R-CNN + LeViT-256, FPN, 1x on COCO 2017: the Swin-T recipe (1333x800,
# AdamW 1e-4, weight decay 0.05) with LeViT's pyramid (64/128/256/384 at
# strides 4-32, see upernet_levit-256_160k_ade20k.py; the attention-bias tables
# are resampled to each input's grid). The LeViT paper reports no detection
# results and this config has not been trained here.
# The LeViT family file for Mask R-CNN.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_1x.py'
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
optim_wrapper = dict(
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys=dict(attention_biases=dict(decay_mult=0.))))
# images of many sizes: cuDNN's per-shape benchmarking would cost more than it saves
env_cfg = dict(cudnn_benchmark=False)
log_processor = dict(by_epoch=True)
