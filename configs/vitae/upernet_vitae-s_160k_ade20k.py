# UPerNet + ViTAE-S on ADE20K, 512x512, 160k iterations. The UPerNet-Swin-T
# recipe (AdamW 6e-5, weight decay 0.01 but none on norms, 16 images per batch,
# i.e. 8 GPUs x 2). The ViTAE paper reports no segmentation results and this
# config has not been trained here, so there is no reference mIoU for it.
#
# Pyramid (backbones/vitae.py): /4 RC1 (96), /8 RC2 (192), /16 RC3 + 14 normal
# cells (384), /32 a 2x2 max-pool of the /16 map (384). Drop path 0.1 is the
# official ImageNet training value.
#
# Weights: the official ImageNet-1k release ViTAE-S.pth.tar (ViTAE-Transformer
# README; its EMA weights are used, as the official validate.py does). It is a
# timm training checkpoint that also pickles the training arguments, which
# weights-only loading refuses: set DENSEKIT_TRUST_CHECKPOINTS=1 for that file.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# The ViTAE family file for segmentation.
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='densekit.ViTAE',
        arch='small',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/ViTAE-S.pth.tar')),
    decode_head=dict(in_channels=[96, 192, 384, 384]),
    auxiliary_head=dict(in_channels=384))
# The PCMs hold BatchNorm: with 2 images per GPU, synchronise its statistics
# across GPUs in distributed training (ignored on one device); no weight decay
# on their affine terms either, like the LayerNorms.
sync_bn = 'torch'
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0., custom_keys={
    'relative_position_bias_table': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.),
}))
