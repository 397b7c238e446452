# CoAtNet-0 classifier: S4, average pool, LayerNorm, tanh pre-logits, linear:
# timm's coatnet_0_224 (heads/cls_heads.py: NormMlpClsHead).
data_preprocessor = dict(
    type='ClsDataPreprocessor',
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
model = dict(
    type='ImageClassifier',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='densekit.CoAtNet', arch='0', drop_path_rate=0.2, out_indices=(3,), out_norm='none'),
    head=dict(type='densekit.NormMlpClsHead', num_classes=1000, in_channels=768, hidden_channels=768,
              loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    # DeiT's batch augmentation: mixup 0.8 or cutmix 1.0 (one per batch)
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
