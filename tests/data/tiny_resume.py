# Deterministic CPU training for the crash-and-resume test: 6 iterations,
# a checkpoint every 2, no validation; random flips and drop-path stay on so
# that resuming must also restore the random generators.
_base_ = ['./tiny_upernet_swin.py']
randomness = dict(seed=0, deterministic=True)
train_cfg = dict(max_iters=6, val_interval=100)
val_dataloader = val_cfg = val_evaluator = None  # training only
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=-1))
