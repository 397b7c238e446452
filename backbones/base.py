"""What every DenseKit backbone shares: output selection, frozen stages,
gradient checkpointing and ``init_cfg=dict(type='Pretrained', ...)`` loading.

Written once here so that each family file holds only its architecture and its
checkpoint converter (the plumbing mmseg repeats in every backbone).

Memory format: the families with convolutions run them channels-last. CoAtNet
and ViTAE store their 4-D weights channels-last at construction
(``self.to(memory_format=...)``; loading copies into them keeps the layout)
and turn their input channels-last, so every convolution runs NHWC. ConvMixer
keeps NCHW-strided weights, so its convolutions follow the layout its input is
given by :func:`conv_memory_format`: channels-last, but NCHW for inference on
AVX2-only CPUs. On CPU, oneDNN's depthwise convolutions and their backward
are much faster channels-last: in interleaved A/Bs on the 2-core Intel Xeon
(AVX-512, AMX) ConvMixer-1536/20 at 512 took 0.90x the forward and 0.70x the
training step of NCHW, ConvMixer-768/32 at 224 0.72x / 0.56x, CoAtNet-0 at
512 0.80x the forward; on the AVX2-only AMD EPYC the forward is the exception
(see :func:`conv_memory_format`). Outputs are NCHW tensors in channels-last
memory (all torch ops accept them; ``.contiguous()`` gives NCHW memory), and
:meth:`PyramidBackbone.channels_last_grads` keeps the gradients that heads
send back into them channels-last too.
"""
from __future__ import annotations

from abc import ABCMeta
from typing import Sequence

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from densekit.checkpoint import LoadReport, load_pretrained, load_state
from .layers import clear_inference_cache, tensor_state


# modules whose weights autocast casts (to its lower-precision dtype) at every call
_AUTOCAST_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _autocast_inference(module: nn.Module) -> tuple[str, torch.dtype] | None:
    """(device type, dtype) when ``module`` runs under autocast without
    gradients in eager mode, else None."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling() or module._compiled_call_impl is not None:
        return None
    param = next(module.parameters(), None)
    if param is None:
        return None
    device = param.device.type
    if device not in ('cpu', 'cuda') or not torch.is_autocast_enabled(device):
        return None
    return device, torch.get_autocast_dtype(device)


# read once: a constant to torch.compile, and the query is not free
_CPU_CAPABILITY = torch.backends.cpu.get_cpu_capability()


def conv_memory_format(x: torch.Tensor) -> torch.memory_format:
    """The layout in which a family that keeps its conv weights in standard
    (NCHW) strides runs this call: its convolutions follow the input's layout.

    Channels-last, except for inference (no autograd) on a CPU whose oneDNN
    has AVX2 but not AVX-512. There oneDNN's NHWC depthwise convolution
    (``brdgmm_dw:avx2``) took 1.8-2.4x the time of its blocked one
    (``jit_dw:avx2``, reached from NCHW), and ConvMixer's inference forward
    ran 0.81-0.88x the time in NCHW (A/B on the 2-core AMD EPYC, -768/32 at
    224 and -1536/20 at 512). Its training step stays channels-last: the NCHW
    depthwise backward took 2.4x the time there. On the AVX-512 Intel Xeon
    channels-last was the faster forward too (module docstring); AMD's
    AVX-512 parts are not measured for this and keep channels-last."""
    if x.device.type == 'cpu' and _CPU_CAPABILITY == 'AVX2' and not torch.is_grad_enabled():
        return torch.contiguous_format
    return torch.channels_last


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


def _to_channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


class _FinishedAtConstruction(ABCMeta):
    """Calls ``_finish_init()`` once the outermost ``__init__`` has returned,
    whatever subclass is built."""

    def __call__(cls, *args, **kwargs):
        module = super().__call__(*args, **kwargs)
        module._finish_init()
        return module


class PyramidBackbone(BaseModule, metaclass=_FinishedAtConstruction):
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

    # -- autocast inference --------------------------------------------------
    def __call__(self, *args, **kwargs):
        """Under autocast without gradients (AMP inference), run on copies of
        the linear and conv weights already cast to autocast's dtype, made
        once and kept while the weights stay the same.

        Autocast would otherwise cast every weight again at every call: for a
        bf16 ViT-B/16 forward at 224 on CPU (batch 1) that copying was 42% of
        the time. The cached copies give bit-identical outputs (autocast casts
        the same tensors the same way) and took 0.62x (ViT-B/16) / 0.76x
        (Swin-T) of the forward time at 224, 0.87-0.97x at 512. They cost
        memory: 2 bytes per cached weight (163 MiB for ViT-B in bf16), freed
        by the next call with gradients. Skipped under torch.compile and FSDP."""
        amp = None if self.__dict__.get('_in_cast_call') else _autocast_inference(self)
        if amp is None:
            if torch.is_grad_enabled():  # training: free the copies
                self.__dict__.pop('_autocast_weight_cache', None)
            return super().__call__(*args, **kwargs)
        weights = self._autocast_weights(*amp)
        if weights is None:
            return super().__call__(*args, **kwargs)
        self.__dict__['_in_cast_call'] = True
        try:
            return torch.func.functional_call(self, weights, args, kwargs, strict=False)
        finally:
            self.__dict__['_in_cast_call'] = False

    def release_inference_caches(self) -> None:
        """Drop what inference keeps between calls (the autocast weight copies,
        the attention biases of ``layers.cached_for_inference``); the next
        inference call makes them again."""
        self.__dict__.pop('_autocast_weight_cache', None)
        for module in self.modules():
            clear_inference_cache(module)

    def _autocast_weights(self, device: str, dtype: torch.dtype) -> dict[str, torch.Tensor] | None:
        """{name: weight cast to ``dtype``} for the linear and conv layers; a
        weight replaced, moved or changed in place (its storage or version
        counter) is cast again. None under FSDP (sharded parameters)."""
        from torch.distributed.fsdp import FullyShardedDataParallel
        named = []
        for prefix, module in self.named_modules():
            if isinstance(module, FullyShardedDataParallel):
                return None
            if isinstance(module, _AUTOCAST_WEIGHTED):
                named += [(f'{prefix}.{n}' if prefix else n, p) for n, p in module.named_parameters(recurse=False)
                          if p.is_floating_point() and p.dtype != dtype]
        cache = self.__dict__.setdefault('_autocast_weight_cache', {})  # not a buffer: never saved
        weights = {}
        for name, p in named:
            key = (tensor_state(p), dtype)
            entry = cache.get(name)
            if entry is None or entry[0] != key:
                cache[name] = entry = (key, p.detach().to(dtype))
            weights[name] = entry[1]
        return weights

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

    @staticmethod
    def channels_last_grads(outs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Make the gradients arriving at channels-last outputs channels-last.

        A head may send back NCHW gradients (global pooling, a mean, an NCHW
        conv). Summed with the channels-last gradient of the backbone's next
        block, the result is NCHW, and torch's CPU BatchNorm backward on an
        NCHW gradient with a channels-last input took 130 ms against 15 ms
        with both channels-last (1536x74x74, ConvMixer-1536/20 at 512), so
        one copy here saves far more than it costs."""
        if torch.is_grad_enabled():
            for x in outs:
                if x.requires_grad and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
                    x.register_hook(_to_channels_last)
        return outs

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
