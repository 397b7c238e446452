"""What every DenseKit backbone shares: output selection, frozen stages,
gradient checkpointing, ``init_cfg=dict(type='Pretrained', ...)`` loading and
the level maps of isotropic backbones.

Written once here so that each family file holds only its architecture and its
checkpoint converter (the plumbing mmseg repeats in every backbone). Speed
paths are not here: they live in :mod:`backbones.fast_paths` (the one this
class inherits, :class:`~backbones.fast_paths.AutocastWeightCache`, casts the
weights once for AMP inference).
"""
from __future__ import annotations

from abc import ABCMeta
from typing import Sequence

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from densekit.checkpoint import LoadReport, load_pretrained, load_state
from .fast_paths import AutocastWeightCache


class LevelMaps(tuple):
    """A backbone's tuple of maps, which also carries the (H, W) of the input
    image (``image_size``). An isotropic backbone at a stride that does not
    divide the image (ConvMixer's 7, ViT's 16 on a 250-pixel side) pads it;
    the pyramid adapter needs the true size to give every derived level
    ceil(H/s) x ceil(W/s), as the pyramid families do. Everything else sees a
    plain tuple."""

    image_size: tuple[int, int]

    def __new__(cls, maps, image_size: tuple[int, int]):
        obj = super().__new__(cls, maps)
        obj.image_size = tuple(image_size)  # not int(): a trace (ONNX export) keeps the sizes symbolic
        return obj

    def __reduce__(self):
        return LevelMaps, (tuple(self), self.image_size)


class _FinishedAtConstruction(ABCMeta):
    """Calls ``_finish_init()`` once the outermost ``__init__`` has returned,
    whatever subclass is built."""

    def __call__(cls, *args, **kwargs):
        module = super().__call__(*args, **kwargs)
        module._finish_init()
        return module


class PyramidBackbone(AutocastWeightCache, BaseModule, metaclass=_FinishedAtConstruction):
    """Base class of backbones that return a tuple of NCHW maps.

    Subclasses set ``self.num_levels``, ``self.level_channels`` and
    ``self.level_strides`` (one entry per level, e.g. strides 4/8/16/32), and
    implement :meth:`frozen_modules` and :meth:`checkpoint_filter`.

    When construction ends, two things a distributed wrapper must see are
    already done: the modules that no level of ``out_indices`` needs
    (:meth:`unused_modules`) are removed, and the frozen stages' parameters
    have ``requires_grad=False``. DistributedDataParallel fixes at wrapping
    which parameters it waits for, and mmengine's Runner wraps the model
    before ``init_weights``/``train()``: a parameter built but never used, or
    frozen only later, stops training at the second iteration ("Expected to
    have finished reduction in the prior iteration").

    Args:
        out_indices: levels returned by ``forward``.
        frozen_stages: levels ``0..frozen_stages`` (and the stem) are kept in
            eval mode without gradients; -1 freezes nothing.
        with_cp: gradient checkpointing of blocks in training (less memory,
            one more forward).
    """

    def __init__(self, out_indices: Sequence[int], frozen_stages: int = -1,
                 with_cp: bool = False, init_cfg: dict | None = None):
        super().__init__(init_cfg=init_cfg)
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp

    def _finish_init(self) -> None:
        self._drop_unused_modules()
        self._freeze()

    def unused_modules(self) -> list[str]:
        """Qualified names of the modules that no level of ``out_indices``
        uses (e.g. stages after the last returned level, output norms of
        levels not returned); the family lists them, the base removes them.
        Here: the output norms ``norm{i}`` of levels not in ``out_indices``."""
        return [f'norm{i}' for i in range(self.num_levels) if i not in self.out_indices and hasattr(self, f'norm{i}')]

    def _drop_unused_modules(self) -> None:
        names = self.unused_modules()
        # last entries first, so that removing a ModuleList's tail keeps the other indices
        for name in sorted(names, key=lambda n: [int(p) if p.isdigit() else -1 for p in n.split('.')],
                           reverse=True):
            parent_name, _, child = name.rpartition('.')
            parent = self.get_submodule(parent_name) if parent_name else self
            if isinstance(parent, nn.ModuleList):
                if int(child) != len(parent) - 1:
                    raise ValueError(f'{type(self).__name__}: unused module {name} is not the last of {parent_name}')
                del parent[int(child)]
            else:
                delattr(parent, child)
        self.pruned_modules = tuple(sorted(names))

    def release_lacks(self) -> tuple[str, ...]:
        """Key prefixes of weights that a classifier release cannot hold:
        the output norms this pyramid adds to levels before the last
        (``norm0.`` .. ``norm{n-2}.``); a load leaves them at their init and
        reports them as expected, not as missing."""
        return tuple(f'norm{i}.' for i in range(self.num_levels - 1) if hasattr(self, f'norm{i}'))

    def _check_levels(self) -> None:
        bad = [i for i in self.out_indices if not 0 <= i < self.num_levels]
        if bad or not self.out_indices:
            raise ValueError(f'{type(self).__name__}: out_indices {self.out_indices} must be a '
                             f'non-empty subset of 0..{self.num_levels - 1}')
        if not -1 <= self.frozen_stages < self.num_levels:
            raise ValueError(f'{type(self).__name__}: frozen_stages={self.frozen_stages} '
                             f'must be in -1..{self.num_levels - 1}')

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of each returned map, in ``out_indices`` order."""
        return tuple(self.level_channels[i] for i in self.out_indices)

    @property
    def out_strides(self) -> tuple[int, ...]:
        """Stride of each returned map w.r.t. the input, in ``out_indices`` order."""
        return tuple(self.level_strides[i] for i in self.out_indices)

    # -- frozen stages -------------------------------------------------------
    def frozen_modules(self, upto: int) -> list[nn.Module]:
        """Modules to freeze when ``frozen_stages == upto`` (stem included)."""
        raise NotImplementedError

    def stem_and_stages(self, stem: nn.Module, stages: Sequence[nn.Module], upto: int) -> list[nn.Module]:
        """The usual frozen set: the stem, stages ``0..upto-1`` and their
        output norms (``norm{i}``, where present)."""
        mods = [stem]
        for i in range(min(upto, len(stages))):  # stages after the last output are not built
            mods.append(stages[i])
            if hasattr(self, f'norm{i}'):
                mods.append(getattr(self, f'norm{i}'))
        return mods

    def _freeze(self) -> None:
        if self.frozen_stages < 0 or not hasattr(self, 'pruned_modules'):  # not yet constructed
            return
        for module in self.frozen_modules(self.frozen_stages):
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze()  # frozen parts stay in eval mode (norm statistics, dropout)
        return self

    def run_block(self, block: nn.Module, *args):
        """Run ``block``, through activation checkpointing when enabled."""
        if self.with_cp and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    # -- weights -------------------------------------------------------------
    @staticmethod
    def checkpoint_filter(state_dict: dict, model: nn.Module) -> dict:
        """Map a release checkpoint (official, timm, mmseg, ours) to this
        model's keys; classifier-only keys map to ``None``."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """The family's default (random) initialisation."""

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            report = self.load_pretrained(cfg['checkpoint'], prefix=cfg.get('prefix'))
            print_log(f'{type(self).__name__}: {report}', logger='current')
        else:
            self.reset_parameters()
            super().init_weights()
        self._is_init = True
        self._freeze()

    def load_pretrained(self, path: str, prefix: str | None = None, strict: bool = False) -> LoadReport:
        """Load ``path`` in any supported layout; see :func:`densekit.checkpoint.load_pretrained`."""
        return load_pretrained(self, path, self.checkpoint_filter, prefix=prefix, strict=strict)

    def load_pretrained_state(self, state_dict: dict, strict: bool = False) -> LoadReport:
        """Like :meth:`load_pretrained`, from a state dict in memory."""
        return load_state(self, state_dict, self.checkpoint_filter, strict=strict)
