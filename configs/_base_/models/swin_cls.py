# Swin-T classifier: final LayerNorm (out_norm='last'), global average pool,
# linear head: timm's swin_*_patch4_window7_224.
data_preprocessor = dict(
    type='ClsDataPreprocessor',
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
model = dict(
    type='ImageClassifier',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='densekit.SwinTransformer', arch='tiny', drop_path_rate=0.2,
                  out_indices=(3,), out_norm='last'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=768, loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    # DeiT's batch augmentation: mixup 0.8 or cutmix 1.0 (one per batch)
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
