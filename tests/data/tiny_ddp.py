# The tiny model for the DDP-vs-single-process test: nothing that depends on
# the per-process batch (GroupNorm instead of BatchNorm in the heads), nothing
# random (no dropout or drop-path, no flips), plain SGD (AdamW divides by the gradient's
# magnitude, which turns float rounding in near-zero gradients into +-lr steps),
# 3 iterations of batch 1 per process. Needs tests/data on PYTHONPATH.
_base_ = ['./tiny_upernet_swin.py']
norm_cfg = dict(type='GN', num_groups=4, requires_grad=True)
model = dict(
    backbone=dict(drop_path_rate=0.0),
    decode_head=dict(norm_cfg=norm_cfg, dropout_ratio=0.0),
    auxiliary_head=dict(norm_cfg=norm_cfg, dropout_ratio=0.0))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=1, dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))
param_scheduler = []
randomness = dict(seed=0, deterministic=True)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
train_cfg = dict(max_iters=3, val_interval=100)
val_dataloader = val_cfg = val_evaluator = None  # training only
default_hooks = dict(checkpoint=dict(interval=3))
custom_imports = dict(imports=['densekit.runtime', 'densekit.backbones', 'densekit.necks', 'densekit.heads', 'testing_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='densekit.NonFiniteLossHook', action='stop'), dict(type='RecordLosses')]
