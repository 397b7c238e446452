"""The backbones' speed paths: what each family calls so that the same network
runs faster on current torch. None changes what a backbone computes
(tests/test_fast_paths.py compares each with the plain path). Each is kept for
a row of a results file written by tools/benchmark.py, named beside it, and
goes when a measurement shows it no longer pays.

* Weights cast once for AMP inference (:class:`AutocastWeightCache`, a base
  of ``PyramidBackbone``): under autocast without gradients, a call runs on
  copies of the linear and conv weights already in autocast's dtype, where
  autocast alone casts every weight again at every call.
  Row: results/fast_paths_2026-11-30.md, ViT-B/16 at 224, bf16 forward, before/after.
* Channels-last convolutions (ConvMixer, CoAtNet, ViTAE; Swin's patch conv):
  oneDNN's CPU depthwise convolutions and their backward are faster on NHWC
  memory. CoAtNet and ViTAE keep their 4-D weights channels-last
  (:func:`channels_last_weights`; loading copies into them keeps the layout),
  every family turns its input channels-last (:func:`channels_last_input`),
  and :func:`channels_last_grads` keeps the gradients that heads send back
  channels-last too. Outputs are NCHW tensors in channels-last memory (all
  torch ops accept them; ``.contiguous()`` gives NCHW memory).
  Rows: results/cpu_benchmarks_2026-11.md, ConvMixer-768/32 and CoAtNet-0 against timm.
* Attention biases kept for inference (:func:`cached_for_inference`): LeViT's,
  Swin's and CoAtNet's biases depend only on a learned table and the map size,
  so inference builds each once per size, as timm and mmpretrain keep LeViT's.
  Rows: results/cpu_benchmarks_2026-11.md, LeViT-256 and CoAtNet-0 forward against timm.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ['AutocastWeightCache', 'channels_last_weights', 'channels_last_input', 'channels_last_grads', 'cached_for_inference',
           'release_inference_caches', 'tensor_state']


# -- channels-last convolutions --------------------------------------------------


def channels_last_weights(module: nn.Module) -> None:
    """Store ``module``'s 4-D parameters and buffers channels-last, in place."""
    module.to(memory_format=torch.channels_last)


def channels_last_input(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) ``x`` in channels-last memory: the convolutions after it run NHWC."""
    return x.contiguous(memory_format=torch.channels_last)


def _to_channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


def channels_last_grads(outs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``outs``, with the gradients that will arrive at their channels-last
    maps made channels-last.

    A head may send back NCHW gradients (global pooling, a mean, an NCHW
    conv); summed with the channels-last gradient of the backbone's next block
    the result is NCHW, and torch's CPU BatchNorm backward on mixed layouts is
    the slow one, so one copy here costs less than it saves."""
    if torch.is_grad_enabled():
        for x in outs:
            if x.requires_grad and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
                x.register_hook(_to_channels_last)
    return outs


# -- attention biases kept for inference -------------------------------------------


def tensor_state(t: torch.Tensor) -> tuple:
    """What changes when a tensor is moved, replaced or written in place: a
    key for caches derived from it."""
    return t.device, t.dtype, t.data_ptr(), t._version


def cached_for_inference(module: nn.Module, key: tuple, table: torch.Tensor,
                         compute: Callable[[], torch.Tensor], size: int = 4) -> torch.Tensor:
    """``compute()`` memoised on ``module`` per ``key`` while no gradient is
    recorded (inference), for a bias that a learned ``table`` gives per map size.

    Entries are keyed on the table's device, dtype, storage and version
    counter, so moving the module or loading weights (an in-place copy)
    recomputes them; training, ``torch.compile`` and the TorchScript tracer
    (ONNX export) always compute. At most ``size`` sizes are kept; they are
    not buffers (never saved) and :func:`release_inference_caches` drops them.
    """
    if torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return compute()
    cache = module.__dict__.setdefault('_inference_cache', {})
    full = (key, *tensor_state(table))
    if full not in cache:
        if len(cache) >= size:
            cache.pop(next(iter(cache)))
        cache[full] = compute()
    return cache[full]


def release_inference_caches(model: nn.Module) -> None:
    """Drop what inference keeps between calls on ``model``'s modules (the
    biases of :func:`cached_for_inference`, the weight copies of
    :class:`AutocastWeightCache`); the next inference call makes them again."""
    for module in model.modules():
        module.__dict__.pop('_inference_cache', None)
        module.__dict__.pop('_autocast_weight_cache', None)


# -- weights cast once for AMP inference -------------------------------------------

# modules whose weights autocast casts (to its lower-precision dtype) at every call
_AUTOCAST_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _autocast_inference(module: nn.Module) -> tuple[str, torch.dtype] | None:
    """(device type, dtype) when ``module`` runs under autocast without
    gradients in eager mode, else None."""
    # _compiled_call_impl: set by nn.Module.compile(), whose graph must see the module's own weights
    if (torch.is_grad_enabled() or torch.compiler.is_compiling()
            or getattr(module, '_compiled_call_impl', None) is not None):
        return None
    param = next(module.parameters(), None)
    if param is None:
        return None
    device = param.device.type
    if device not in ('cpu', 'cuda') or not torch.is_autocast_enabled(device):
        return None
    return device, torch.get_autocast_dtype(device)


class AutocastWeightCache(nn.Module):
    """Under autocast without gradients (AMP inference), run on copies of the
    linear and conv weights already cast to autocast's dtype, made once and
    kept while the weights stay the same (a weight replaced, moved or changed
    in place is cast again). The outputs are bit-identical to autocast's own
    (it casts the same tensors the same way). The copies cost 2 bytes per
    weight in bf16/fp16 and are freed by the next call with gradients or by
    :func:`release_inference_caches`. Skipped under torch.compile and FSDP."""

    def __call__(self, *args, **kwargs):
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

    def _autocast_weights(self, device: str, dtype: torch.dtype) -> dict[str, torch.Tensor] | None:
        """{name: weight cast to ``dtype``} for the linear and conv layers;
        None under FSDP (sharded parameters)."""
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
