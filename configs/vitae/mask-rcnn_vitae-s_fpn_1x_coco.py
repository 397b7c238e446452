# Mask R-CNN + ViTAE-S, FPN, 1x on COCO 2017: the Swin-T recipe (1333x800,
# AdamW 1e-4, weight decay 0.05, none on norms) with ViTAE-S's pyramid
# (96/192/384/384 at strides 4-32, see upernet_vitae-s_160k_ade20k.py). The ViTAE
# paper reports no detection results and this config has not been trained here.
# The ViTAE family file for Mask R-CNN.
# Weights: the official ViTAE-S.pth.tar (needs DENSEKIT_TRUST_CHECKPOINTS=1):
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_1x.py'
]
model = dict(
    backbone=dict(
        type='densekit.ViTAE',
        arch='small',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/ViTAE-S.pth.tar')),
    neck=dict(in_channels=[96, 192, 384, 384]))
# BatchNorm in the PCMs, 2 images per GPU: synchronise it in distributed
# training; no weight decay on its affine terms either
sync_bn = 'torch'
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0., custom_keys={
    'relative_position_bias_table': dict(decay_mult=0.),
    'pos_embed': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.),
}))
# images of many sizes: cuDNN's per-shape benchmarking would cost more than it saves
env_cfg = dict(cudnn_benchmark=False)
log_processor = dict(by_epoch=True)
