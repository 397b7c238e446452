"""Layers shared by several backbone families (the rest come from timm.layers)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from timm.layers import PatchEmbed as TimmPatchEmbed
from timm.layers import trunc_normal_
from torch import nn


def patch_embed(in_channels: int, embed_dims: int, patch_size: int, norm: bool = True) -> nn.Module:
    """Non-overlapping patchify conv for any input size: pads H, W up to a
    multiple of ``patch_size``; (B, C, H, W) -> (B, H/p, W/p, embed_dims).
    Keys ``proj``/``norm`` match the official, timm and (renamed) mmseg layouts."""
    return TimmPatchEmbed(img_size=None, patch_size=patch_size, in_chans=in_channels,
                          embed_dim=embed_dims, norm_layer=nn.LayerNorm if norm else None,
                          output_fmt='NHWC', strict_img_size=False, dynamic_img_pad=True)


def drop_path_rates(rate: float, depths: Sequence[int]) -> list[list[float]]:
    """Stochastic-depth rates rising linearly over all blocks, split per stage."""
    rates = torch.linspace(0, rate, sum(depths)).tolist()
    out, start = [], 0
    for d in depths:
        out.append(rates[start:start + d])
        start += d
    return out


def init_transformer_weights(module: nn.Module) -> None:
    """The ViT/Swin initialisation (timm, official releases): truncated-normal
    (std .02) linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def tensor_state(t: torch.Tensor) -> tuple:
    """What changes when a tensor is moved, replaced or written in place: a
    key for caches derived from it."""
    return t.device, t.dtype, t.data_ptr(), t._version


def clear_inference_cache(module: nn.Module) -> None:
    """Drop the entries :func:`cached_for_inference` keeps on ``module``."""
    module.__dict__.pop('_inference_cache', None)


def cached_for_inference(module: nn.Module, key: tuple, table: torch.Tensor,
                         compute: Callable[[], torch.Tensor], size: int = 4) -> torch.Tensor:
    """``compute()`` memoised on ``module`` per ``key`` while no gradient is
    recorded (inference), as timm and mmpretrain keep LeViT's attention
    biases in eval mode.

    For a bias that a learned ``table`` gives per map size: entries are keyed
    on the table's device, dtype, storage and version counter, so moving the
    module or loading weights (an in-place copy) recomputes them; training
    and ``torch.compile`` always compute. At most ``size`` sizes are kept.
    """
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return compute()
    cache = module.__dict__.setdefault('_inference_cache', {})  # not a buffer: never saved
    full = (key, *tensor_state(table))
    if full not in cache:
        if len(cache) >= size:
            cache.pop(next(iter(cache)))
        cache[full] = compute()
    return cache[full]


def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v for (B, heads, N, d) q, k, (B, heads, M, dv)
    v and a bias broadcastable to (B, heads, N, M).

    Written out rather than ``F.scaled_dot_product_attention`` where SDPA would
    take its CPU math fallback (values wider than keys, as in LeViT, or a bias
    that needs a gradient, as Swin's in training): that fallback adds NaN guards
    for fully masked rows (isneginf, all, where: three more passes over every
    attention map) that an additive bias never needs. timm's LeViT computes it
    the same way. In interleaved A/B runs on CPU (LeViT-256) this took 0.59x /
    0.87x the forward time of SDPA at 224 / 512 and 0.90x / 0.87x the training step."""
    attn = torch.baddbmm(bias.expand(*q.shape[:2], -1, -1).flatten(0, 1),
                         q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2), alpha=q.shape[-1] ** -0.5)
    return (attn.softmax(-1) @ v.flatten(0, 1)).unflatten(0, q.shape[:2])
