# Runtime settings shared by every task (segmentation, detection, classification).
# Importing densekit registers its modules and allow-lists the types mmengine
# checkpoints hold, so --resume works under torch's weights-only loading (also
# with the toolboxes' own tools/train.py).
custom_imports = dict(imports=['densekit.runtime', 'densekit.backbones', 'densekit.necks', 'densekit.heads'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
# Exact resume (random generators saved in checkpoints) and a clear stop on a
# NaN/inf loss before it reaches the weights (action='skip' skips the step).
custom_hooks = [
    dict(type='densekit.RandomStateHook'),
    dict(type='densekit.NonFiniteLossHook', action='stop'),
]
