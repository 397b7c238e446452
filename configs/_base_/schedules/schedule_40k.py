# 40k iterations, the Semantic FPN recipe of PVT (official segmentation configs)
# and PoolFormer, as mmseg ships it (poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py):
# AdamW lr 2e-4, weight decay 1e-4 on every parameter, poly decay (power 0.9)
# to 0 with no warm-up, for 32 images per batch (8 GPUs x 4).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=40000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# --cfg-options auto_scale_lr.enable=True scales lr to other total batch sizes
auto_scale_lr = dict(enable=False, base_batch_size=32)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
