# Image classifier (mmpretrain's ImageClassifier, LinearClsHead), backbone-neutral:
# the family file states model.backbone (one returned map, or the class token), a
# neck if the map needs pooling (GlobalAveragePooling), and the width it feeds,
# head.in_channels; a family with another head changes head.type. Label smoothing
# 0.1 and DeiT's batch augmentation, as the DeiT-style ImageNet recipes train.
data_preprocessor = dict(
    type='ClsDataPreprocessor',
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
model = dict(
    type='ImageClassifier',
    data_preprocessor=data_preprocessor,
    backbone=dict(),  # the family file's (None would refuse its dict: mmengine merges dicts only)
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=None,  # in_channels: the family file
              loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    # DeiT's batch augmentation: mixup 0.8 or cutmix 1.0 (one per batch)
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
