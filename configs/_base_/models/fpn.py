# Semantic FPN (Kirillov et al., 2019) as mmseg's configs/_base_/models/fpn_r50.py:
# mmseg's FPN neck (256 wide, 4 levels) and FPNHead (128 wide, one upsampling
# branch per level, summed at stride 4), no auxiliary head. Backbone-neutral:
# the family config sets model.backbone and the neck's in_channels.
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
    backbone=dict(),  # the family config's (None would refuse its dict: mmengine merges dicts only)
    neck=dict(type='FPN', in_channels=None, out_channels=256, num_outs=4),
    decode_head=dict(
        type='FPNHead',
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=128,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
