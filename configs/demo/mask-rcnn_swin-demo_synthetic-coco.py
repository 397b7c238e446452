# The embedded detection demo: Mask R-CNN + a small Swin trained from scratch
# on the synthetic COCO-layout data of tools/synthetic_coco.py (five shape
# classes with polygon masks, 128x128, held-out val split) in a few minutes on
# 2 CPU cores. It inherits the COCO Mask R-CNN Swin-T config and changes only
# what a CPU demo needs: a narrow Swin, FPN and heads, anchors and proposal
# counts for 128x128 images, no pretrained weights, a short schedule.
_base_ = ['../swin/mask-rcnn_swin-t_fpn_1x_coco.py']

data_root = 'data/synthetic_coco/'
metainfo = dict(classes=('circle', 'rectangle', 'triangle', 'cross', 'star'))  # tools/synthetic_coco.py
num_classes = 5
img_scale = (128, 128)
channels = 64  # FPN and RoI feature width

model = dict(
    backbone=dict(
        # a custom size replaces the base's arch='tiny' (_delete_: a dict cannot merge into a str)
        arch=dict(_delete_=True, embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)),
        window_size=4,
        drop_path_rate=0.1,
        init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=channels),
    # objects are 10-60 pixels: anchors of 16-256 (scale 4 x strides 4-64) rather than 32-512
    rpn_head=dict(in_channels=channels, feat_channels=channels, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(in_channels=channels, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(num_convs=2, in_channels=channels, conv_out_channels=channels, num_classes=num_classes)),
    # at most 4 objects per image: far fewer proposals and sampled RoIs than COCO needs
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=200), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json', classwise=True)
test_evaluator = val_evaluator

# 600 training images / 8 per batch = 75 iterations per epoch, 300 in all
max_epochs = 4
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
