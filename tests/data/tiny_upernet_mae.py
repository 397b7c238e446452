# The MAE segmentation recipe at the width of the MAE demo's ViT (96 wide, 4
# blocks, patches of 8), for fine-tuning its pretraining checkpoint in tests:
# position embeddings for 128x128 (the demo pretrains at 64x64), 64x64 crops,
# plain BN, 2 iterations. Needs tests/data on PYTHONPATH.
_base_ = ['../../configs/mae/upernet_mae-vit-b16_100e_ade20k.py']
crop_size = (64, 64)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=dict(_delete_=True, embed_dims=96, depth=4, num_heads=3, patch_size=8), img_size=128,
                  out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=96, in_stride=8, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=[96] * 4, channels=16, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=96, channels=8, norm_cfg=norm_cfg),
    test_cfg=dict(_delete_=True, mode='whole'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = val_cfg = test_cfg = val_evaluator = test_evaluator = None  # training only
param_scheduler = []
train_cfg = dict(max_iters=2, val_interval=100)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
custom_imports = dict(imports=['densekit.runtime', 'densekit.backbones', 'densekit.necks', 'densekit.heads', 'testing_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='densekit.NonFiniteLossHook', action='stop'), dict(type='WeightsBeforeTraining')]
