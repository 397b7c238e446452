# Swin-T (Liu et al. 2021, Table 1: 28M params), the paper's ImageNet-1k recipe:
# DeiT's, with 20 warm-up epochs, stochastic depth 0.2 and gradient clipping 5.
# Final LayerNorm (out_norm='last'), global average pool, linear head: timm's
# swin_*_patch4_window7_224. The Swin family file for classification.
_base_ = ['../_base_/models/classifier.py', '../_base_/datasets/imagenet.py',
          '../_base_/schedules/imagenet_300e.py', '../_base_/default_runtime.py']

model = dict(
    backbone=dict(type='densekit.SwinTransformer', arch='tiny', drop_path_rate=0.2,
                  out_indices=(3,), out_norm='last'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(in_channels=768))
optim_wrapper = dict(clip_grad=dict(max_norm=5.0))
warmup_epochs = 20
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs, end=300),
]
