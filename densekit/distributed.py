"""Distributed training: CPU processes (DDP over gloo) and the SyncBN conversion.

mmengine 0.10.7 assumes a GPU per process: its ``pytorch`` launcher calls
``torch.cuda.set_device`` and ``Runner.wrap_model`` passes
``device_ids=[LOCAL_RANK]`` to DistributedDataParallel, which both fail for CPU
processes. :func:`prepare_cpu_distributed` starts the process group itself
(the Runner then keeps it) and selects :class:`CPUDistributedDataParallel`.

With ``sync_bn='torch'`` mmengine's Runner applies
``mmengine.model.convert_sync_batchnorm``, which turns timm's ``BatchNormAct2d``
(CoAtNet, ConvMixer-free timm blocks) into a plain ``SyncBatchNorm`` and drops
its activation. :func:`distributed_cfg` hands ``sync_bn`` to our wrappers
instead, which convert with :func:`timm.layers.convert_sync_batchnorm`
(``BatchNormAct2d`` -> ``SyncBatchNormAct``, activation kept). On CPU, where
torch's SyncBatchNorm cannot run in training, every SyncBatchNorm runs as a
per-process BatchNorm, said in one warning line.
"""
from __future__ import annotations

import atexit
import logging

import torch
import torch.distributed as dist
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from mmengine.model import revert_sync_batchnorm as _mmengine_revert_sync_batchnorm
from torch import nn

from .registry import MODEL_WRAPPERS


def convert_sync_batchnorm(module: nn.Module, implementation: str = 'torch') -> nn.Module:
    """``sync_bn`` as the Runner would apply it, keeping timm's norm + activation
    layers whole (timm's converter). Only torch's SyncBatchNorm is supported."""
    if implementation != 'torch':
        raise ValueError(f"sync_bn={implementation!r}: DenseKit converts with torch's SyncBatchNorm only; "
                         "set sync_bn='torch'")
    from timm.layers import convert_sync_batchnorm as timm_convert_sync_batchnorm
    return timm_convert_sync_batchnorm(module)


def revert_sync_batchnorm(module: nn.Module) -> tuple[nn.Module, int]:
    """Every SyncBatchNorm -> a BatchNorm of the same state; timm's
    ``SyncBatchNormAct`` -> ``BatchNormAct2d`` (activation kept). Returns the
    module and the number of layers reverted."""
    from timm.layers.norm_act import BatchNormAct2d, SyncBatchNormAct
    count = 0
    for m in module.modules():
        if isinstance(m, SyncBatchNormAct):
            m.__class__ = BatchNormAct2d  # same parameters, buffers and children; BatchNorm's forward
            count += 1
        elif isinstance(m, nn.SyncBatchNorm) or type(m).__name__ == 'SyncBatchNorm':  # torch's or mmcv's
            count += 1
    if isinstance(module, SyncBatchNormAct):
        return module, count
    return _mmengine_revert_sync_batchnorm(module), count


@MODEL_WRAPPERS.register_module()
class DistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper, applying the config's ``sync_bn`` with
    :func:`convert_sync_batchnorm` (timm's norm + activation layers kept)."""

    def __init__(self, module, sync_bn: str | None = None, **kwargs):
        if sync_bn:
            module = convert_sync_batchnorm(module, sync_bn)
        super().__init__(module=module, **kwargs)


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for a model on the CPU (``device_ids`` dropped).

    Every SyncBatchNorm (``norm_cfg=dict(type='SyncBN')``, ``sync_bn``) runs as
    a per-process BatchNorm: torch's SyncBatchNorm needs GPUs in training."""

    def __init__(self, module, device_ids=None, sync_bn: str | None = None, **kwargs):
        module, count = revert_sync_batchnorm(module)
        if count or sync_bn:
            print_log(f'CPU DDP: {count} SyncBatchNorm layer(s)'
                      + (f" and sync_bn='{sync_bn}'" if sync_bn else '')
                      + ' run as per-process BatchNorm (SyncBatchNorm needs GPUs); '
                      "for batch-independent norms set the norm_cfg's type to 'GN'",
                      logger='current', level=logging.WARNING)
        super().__init__(module=module, device_ids=None, **kwargs)


def distributed_cfg(cfg, cuda: bool) -> None:
    """Route ``cfg.sync_bn`` and the model wrapper of a distributed run
    through our wrappers (CPU: :class:`CPUDistributedDataParallel`; GPU:
    :class:`DistributedDataParallel`, unless the config chose another type)."""
    sync_bn = cfg.pop('sync_bn', None)
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    if cuda:
        if wrapper.get('type', 'MMDistributedDataParallel') not in ('MMDistributedDataParallel',
                                                                    'densekit.DistributedDataParallel'):
            if sync_bn:  # another wrapper: leave the conversion to mmengine
                cfg.sync_bn = sync_bn
            return
        wrapper['type'] = 'densekit.DistributedDataParallel'
    else:
        wrapper['type'] = 'densekit.CPUDistributedDataParallel'
    if sync_bn:
        wrapper['sync_bn'] = sync_bn
    cfg.model_wrapper_cfg = wrapper


def prepare_cpu_distributed(cfg, launcher: str) -> None:
    """For a distributed launch: route ``sync_bn`` through our wrappers
    (:func:`distributed_cfg`); without CUDA (``--launcher pytorch`` only) also
    join the gloo process group from torchrun's environment and wrap the model
    for CPU DDP. A no-op without a launcher."""
    if launcher == 'none':
        return
    if torch.cuda.is_available():
        distributed_cfg(cfg, cuda=True)
        return
    if launcher != 'pytorch':
        raise ValueError(f'--launcher {launcher} without CUDA: only --launcher pytorch '
                         '(torchrun, tools/dist_train.sh) runs on CPU processes')
    backend = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend', 'gloo')
    if backend != 'gloo':
        raise ValueError(f"env_cfg.dist_cfg.backend='{backend}' needs CUDA; on CPU use "
                         "--cfg-options env_cfg.dist_cfg.backend=gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')  # RANK, WORLD_SIZE, MASTER_* from torchrun
        # gloo's threads abort the interpreter at exit if the group is left open
        atexit.register(dist.destroy_process_group)
    distributed_cfg(cfg, cuda=False)
