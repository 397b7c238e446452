"""Distributed training on machines without CUDA (DDP over gloo on CPU).

mmengine 0.10.7 assumes a GPU per process: its ``pytorch`` launcher calls
``torch.cuda.set_device`` and ``Runner.wrap_model`` passes
``device_ids=[LOCAL_RANK]`` to DistributedDataParallel, which both fail for CPU
processes. :func:`prepare_cpu_distributed` starts the process group itself
(the Runner then keeps it) and selects :class:`CPUDistributedDataParallel`.
"""
from __future__ import annotations

import atexit

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel

from .registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for a model on the CPU (``device_ids`` dropped)."""

    def __init__(self, module, device_ids=None, **kwargs):
        super().__init__(module=module, device_ids=None, **kwargs)


def prepare_cpu_distributed(cfg, launcher: str) -> None:
    """For ``--launcher pytorch`` without CUDA: join the gloo process group
    from torchrun's environment and wrap the model for CPU DDP. A no-op with
    CUDA or without a launcher."""
    if launcher == 'none' or torch.cuda.is_available():
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
    wrapper = cfg.get('model_wrapper_cfg') or {}
    cfg.model_wrapper_cfg = dict(wrapper, type='densekit.CPUDistributedDataParallel')
