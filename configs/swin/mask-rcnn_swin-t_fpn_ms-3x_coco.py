# Mask R-CNN + Swin-T, FPN, 3x (36 epochs) with multi-scale training, the Swin
# paper's setting (mmdet's mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco: 46.0 box
# AP, 41.6 mask AP on val2017): the shorter side drawn from 480..800 (longer
# at most 1333), or, half the time, a resize to 400..600, a random 384..600
# crop and a resize again (DETR's augmentation). AdamW 1e-4, weight decay
# 0.05, lr x0.1 after epochs 27 and 33 (_base_/schedules/schedule_3x.py), 16
# images per batch. Otherwise the recipe of mask-rcnn_swin-t_fpn_1x_coco.py.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['mask-rcnn_swin-t_fpn_1x_coco.py']
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1)
]
scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
          (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
