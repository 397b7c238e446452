# The embedded classification demo: a small ConvMixer trained from scratch on the
# synthetic ImageNet-layout data of tools/synthetic_cls.py (8 shape classes,
# 64x64, held-out val split) in a few minutes on 2 CPU cores. It inherits the
# ConvMixer-768/32 ImageNet config and changes only what a CPU demo needs: a
# narrow, shallow ConvMixer, 64x64 inputs, no pretrained weights, a short schedule.
_base_ = ['../convmixer/convmixer-768-32_150e_imagenet.py']

data_root = 'data/synthetic_cls'
num_classes = 8
model = dict(
    data_preprocessor=dict(num_classes=num_classes),
    # a custom size replaces the base's arch string (_delete_: a dict cannot merge into a str)
    backbone=dict(arch=dict(_delete_=True, dim=128, depth=6, kernel_size=5, patch_size=8, act='gelu')),
    head=dict(num_classes=num_classes, in_channels=128),
    # mixup/cutmix off: with 8 classes and a few epochs they slow learning more than they regularise
    train_cfg=dict(_delete_=True))
# The shape is the class at any orientation, so flips are label-preserving;
# crops and RandAugment's colour/geometry ops are left out (small objects, small images).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=50,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 16
optim_wrapper = dict(optimizer=dict(lr=3e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
