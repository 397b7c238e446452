# A few-second MAE pretraining for tests: the demo's recipe at 32x32 (16
# patches of 8, 4 visible), a 32-wide 2-block ViT, batch 2 per process, 2
# iterations on any folder of images (data_root=DIR, no labels), gloo for DDP.
# Needs tests/data on PYTHONPATH.
_base_ = ['../../configs/demo/mae_vit-demo_synthetic-cls.py']
img_size = 32
model = dict(
    backbone=dict(arch=dict(embed_dims=32, depth=2, num_heads=2), img_size=img_size),
    neck=dict(num_patches=16, embed_dim=32, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='PackInputs')
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_prefix='', pipeline=train_pipeline))
param_scheduler = []
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2, by_epoch=False))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
custom_imports = dict(imports=['densekit.runtime', 'densekit.backbones', 'densekit.necks', 'densekit.heads', 'testing_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='densekit.NonFiniteLossHook', action='stop'), dict(type='RecordLosses')]
