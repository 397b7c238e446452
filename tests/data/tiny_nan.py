# tiny_ddp.py (SGD, nothing random) with a checkpoint every iteration and the
# decode loss turned NaN from iteration 3 on. Needs tests/data on PYTHONPATH.
_base_ = ['./tiny_ddp.py']
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=-1))
custom_hooks = [dict(type='densekit.NonFiniteLossHook', action='stop'),
                dict(type='NaNLossFromIter', iter=3)]
