"""The backbones' speed paths: what each family calls so that the same network
runs faster on current torch. None changes what a backbone computes
(tests/test_fast_paths.py compares each with the plain path); each is kept for
the rows of results/fast_paths_2026-11-30.md (written by tools/benchmark.py)
named beside it, and goes when a measurement shows it no longer pays.

* Channels-last convolutions (ConvMixer, CoAtNet, ViTAE; Swin's patch conv):
  oneDNN's CPU depthwise convolutions and their backward are faster on NHWC
  memory. CoAtNet and ViTAE keep their 4-D weights channels-last
  (:func:`channels_last_weights`; loading copies into them keeps the layout),
  every family turns its input channels-last (:func:`channels_last_input`),
  and :func:`channels_last_grads` keeps the gradients that heads send back
  channels-last too. Outputs are NCHW tensors in channels-last memory (all
  torch ops accept them; ``.contiguous()`` gives NCHW memory).
  Rows: ConvMixer-768/32, CoAtNet-0 (train step).
* Attention biases kept for inference (:func:`cached_for_inference`): LeViT's,
  Swin's and CoAtNet's biases depend only on a learned table and the map size,
  so inference builds each once per size, as timm and mmpretrain keep LeViT's.
  Rows: LeViT-256, CoAtNet-0, Swin-T (forward).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ['channels_last_weights', 'channels_last_input', 'channels_last_grads', 'cached_for_inference',
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
    """Drop what :func:`cached_for_inference` keeps on ``model``'s modules;
    the next inference call makes it again."""
    for module in model.modules():
        module.__dict__.pop('_inference_cache', None)
