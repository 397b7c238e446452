# The embedded demo: UPerNet + a small Swin trained from scratch on the synthetic
# ADE-layout data that tools/synthetic_ade.py generates (textured backgrounds, six
# shape classes, held-out validation split) in a few minutes on 2 CPU cores.
# It inherits the real ADE20K config and changes only what a CPU demo needs:
# a narrower Swin, 128x128 crops, no pretrained weights, a short schedule.
_base_ = ['../swin/upernet_swin-t_160k_ade20k.py']

dataset_type = 'densekit.SyntheticADEDataset'  # ADE20K layout, the demo data's classes
data_root = 'data/synthetic_ade'
crop_size = (128, 128)
num_classes = 7  # background + 6 shapes

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        # a custom size replaces the base's arch='tiny' (_delete_: a dict cannot merge into a str)
        arch=dict(_delete_=True, embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)),
        window_size=4,
        drop_path_rate=0.1,
        init_cfg=None),
    decode_head=dict(in_channels=[32, 64, 128, 256], channels=64, num_classes=num_classes),
    auxiliary_head=dict(in_channels=128, channels=32, num_classes=num_classes))

# Hue carries class evidence in this data, so PhotoMetricDistortion's hue
# shifts are left out; geometry is augmented as in the ADE20K recipe.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 800
optim_wrapper = dict(optimizer=dict(lr=2e-3, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=max_iters, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
# ms+flip (tools/test.py --tta): the ADE20K base's ratios on this test scale
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(256 * r), int(128 * r)), keep_ratio=True)
         for r in [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')]])
]
