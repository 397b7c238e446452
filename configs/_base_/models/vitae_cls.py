# ViTAE-S classifier: the stride-16 tokens (level 2), their mean, one linear
# layer: the official ViTAE_ViT_basic classifier (``forward_features`` ends in
# ``torch.mean(x, 1)``, no norm; ViTAEv2 the same), whose release files load as
# they are (densekit/whole_model.py: ``head`` -> ``head.fc``).
data_preprocessor = dict(
    type='ClsDataPreprocessor',
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
model = dict(
    type='ImageClassifier',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='densekit.ViTAE', arch='small', drop_path_rate=0.1, out_indices=(2,)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=384, loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    # DeiT's batch augmentation: mixup 0.8 or cutmix 1.0 (one per batch)
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
