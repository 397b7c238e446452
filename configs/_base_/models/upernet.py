# UPerNet (mmseg's UPerHead) + FCN auxiliary head on any 4-level pyramid (strides
# 4/8/16/32), backbone-neutral: the family file states model.backbone (and a neck
# if it needs one) and the widths it feeds, decode_head.in_channels (4 levels) and
# auxiliary_head.in_channels (the level at in_index).
norm_cfg = dict(type='SyncBN', requires_grad=True)  # tools/train.py turns it into BN without distribution
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(),  # the family file's (None would refuse its dict: mmengine merges dicts only)
    decode_head=dict(
        type='UPerHead',
        in_channels=None,  # the backbone's 4 level widths: the family file
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=None,  # the width of level in_index: the family file
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
