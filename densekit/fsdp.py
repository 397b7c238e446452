"""FSDP training through mmengine's ``FlexibleRunner`` and ``FSDPStrategy``.

``tools/train.py --strategy fsdp`` builds :func:`fsdp_strategy`: mmengine's
strategy with three DenseKit choices:

- :class:`BlockShardedDataParallel` (the model wrapper): one FSDP unit per
  backbone block (Swin, ViT/MAE, LeViT, ViTAE, CoAtNet blocks), so only one
  block's full weights exist at a time; and ``device_id`` = the CPU for
  processes without CUDA (mmengine passes ``LOCAL_RANK``, a CUDA index; FSDP
  itself runs over gloo on the CPU in torch >= 2.x).
- full state dicts: checkpoints are single files with the unsharded model's
  keys, which load in a plain single-process run (``tools/test.py``,
  ``load_from``) like any DDP checkpoint. mmengine's default, ``local``,
  writes one shard per rank.
- :class:`DenseKitFSDPStrategy`: ``--resume`` works: mmengine 0.10.7 calls
  a torch FSDP function with the arguments of torch 2.0. (Checkpoint files
  are written atomically as the plain Runner's: densekit/checkpoint.py.)
"""
from __future__ import annotations

import copy

import torch
from mmengine._strategy import FSDPStrategy
from mmengine.model import MMFullyShardedDataParallel
from mmengine.registry import STRATEGIES
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from .registry import MODEL_WRAPPERS


def backbone_blocks() -> set[type[nn.Module]]:
    """The repeated blocks of our backbones: the FSDP units (ConvMixer's
    blocks are plain ``nn.Sequential``s and stay in their parent's unit)."""
    from timm.models.maxxvit import MbConvBlock
    from timm.models.vision_transformer import Block

    from densekit.backbones.coatnet import CoAtTransformerBlock
    from densekit.backbones.levit import LeViTBlock
    from densekit.backbones.swin import SwinBlock
    from densekit.backbones.vitae import NormalCell, ReductionCell
    return {SwinBlock, Block, LeViTBlock, NormalCell, ReductionCell, CoAtTransformerBlock, MbConvBlock}


@MODEL_WRAPPERS.register_module()
class BlockShardedDataParallel(MMFullyShardedDataParallel):
    """mmengine's FSDP wrapper, by default sharded per backbone block
    (:func:`backbone_blocks`), on the CPU when there is no CUDA.

    Args:
        module: the model.
        device_id: CUDA device index (mmengine: ``LOCAL_RANK``); ignored
            without CUDA.
        auto_wrap_policy: None (per block), or mmengine's forms (a
            ``FUNCTIONS`` name, dict or callable).
        **kwargs: ``MMFullyShardedDataParallel``'s (``mixed_precision``,
            ``sharding_strategy``, ``cpu_offload``, ...).
    """

    def __init__(self, module: nn.Module, device_id: int | None = None, auto_wrap_policy=None, **kwargs):
        if not torch.cuda.is_available():
            device_id = torch.device('cpu')
        if auto_wrap_policy is None:
            auto_wrap_policy = ModuleWrapPolicy(backbone_blocks())
        super().__init__(module, device_id=device_id, auto_wrap_policy=auto_wrap_policy, **kwargs)


# mmengine builds strategies from its root registry only (no scoped lookup)
@STRATEGIES.register_module()
class DenseKitFSDPStrategy(FSDPStrategy):
    """mmengine's ``FSDPStrategy`` resuming the optimizer with torch >= 2.1's
    argument order (its checkpoint files are written atomically by
    ``densekit.checkpoint.make_checkpoint_saves_atomic``, like the plain Runner's)."""

    def load_optim_state_dict(self, state_dict: dict) -> None:
        # mmengine 0.10.7 passes (state_dict, model, optim): torch 2.0's order
        # of FSDP.optim_state_dict_to_load; torch 2.1 changed it (--resume failed)
        self.optim_wrapper.load_state_dict(FSDP.optim_state_dict_to_load(
            model=self.model, optim=self.optim_wrapper.optimizer, optim_state_dict=state_dict))


def fsdp_strategy(overrides: dict | None = None) -> dict:
    """The ``strategy`` of a ``FlexibleRunner`` config: per-block FSDP, full
    state dicts; ``overrides`` (a config's own ``strategy``) are merged in,
    e.g. ``dict(model_wrapper=dict(mixed_precision=dict(param_dtype='bfloat16')))``
    or ``dict(model_wrapper=dict(sharding_strategy='SHARD_GRAD_OP'))``."""
    strategy = dict(type='DenseKitFSDPStrategy', state_dict_cfg='full',
                    model_wrapper=dict(type='densekit.BlockShardedDataParallel'))
    for key, value in copy.deepcopy(dict(overrides or {})).items():
        if isinstance(value, dict) and isinstance(strategy.get(key), dict):
            strategy[key] = {**strategy[key], **value}
        else:
            strategy[key] = value
    return strategy
