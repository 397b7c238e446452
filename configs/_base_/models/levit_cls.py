# LeViT-256 classifier: the last stage (level 4, stride 64), mean token, two
# BatchNorm+linear heads averaged in eval (timm's/official distilled LeViT).
# Training distils from DeiT's RegNetY-16GF teacher (densekit/distill.py), loaded
# from a local file on the first training step (test/inference never need it);
# without the file: --cfg-options model.teacher=None (both heads learn the label).
data_preprocessor = dict(
    type='ClsDataPreprocessor',
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
model = dict(
    type='densekit.DistilledImageClassifier',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='densekit.LeViT', arch='256', out_indices=(4,)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='densekit.LeViTDistilledClsHead', num_classes=1000, in_channels=512,
              distillation=True, loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    # DeiT's batch augmentation: mixup 0.8 or cutmix 1.0 (one per batch)
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
    teacher=dict(type='regnety_160', checkpoint='checkpoints/regnety_160-a5fe301d.pth',
                 url='https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth'))
