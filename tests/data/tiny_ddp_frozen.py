# The users' DDP recipe of issue 18 on the tiny UPerNet: frozen stem and first
# stage, three of four levels (Swin's last stage never runs), mmseg's SyncBN
# heads and sync_bn='torch' (both per-process BN on CPU), batch 2 per process.
# Needs tests/data on PYTHONPATH.
_base_ = ['./tiny_upernet_swin.py']
model = dict(
    backbone=dict(frozen_stages=1, out_indices=(0, 1, 2)),
    decode_head=dict(in_channels=[16, 32, 64], in_index=[0, 1, 2]),
    auxiliary_head=dict(in_channels=64, in_index=2))
sync_bn = 'torch'
env_cfg = dict(dist_cfg=dict(backend='gloo'))
train_cfg = dict(max_iters=3, val_interval=100)
val_dataloader = val_cfg = val_evaluator = None  # training only
default_hooks = dict(checkpoint=dict(interval=3))
custom_imports = dict(imports=['densekit.runtime', 'densekit.backbones', 'densekit.necks', 'densekit.heads'], allow_failed_imports=False)
