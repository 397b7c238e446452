# CoAtNet-0 (Dai et al. 2021, Table 3: 25M params), the paper's ImageNet-1k recipe:
# 300 epochs, AdamW lr 1e-3, weight decay 0.05, 10k warm-up steps (~8 epochs at
# 1024/step), RandAugment, mixup 0.8, label smoothing 0.1, stochastic depth 0.2.
# Classifier: S4, average pool, LayerNorm, tanh pre-logits, linear: timm's
# coatnet_0_224 (heads/cls_heads.py: NormMlpClsHead). The CoAtNet family file for classification.
_base_ = ['../_base_/models/classifier.py', '../_base_/datasets/imagenet.py',
          '../_base_/schedules/imagenet_300e.py', '../_base_/default_runtime.py']

model = dict(
    backbone=dict(type='densekit.CoAtNet', arch='0', drop_path_rate=0.2, out_indices=(3,), out_norm='none'),
    head=dict(type='densekit.NormMlpClsHead', in_channels=768, hidden_channels=768))
warmup_epochs = 8
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs, end=300),
]
