"""Layers shared by several backbone families (the rest come from timm.layers)."""
from __future__ import annotations

from functools import lru_cache, wraps
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
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
    # on the CPU: plain numbers also when the model is built under torch.device('meta')
    rates = torch.linspace(0, rate, sum(depths), device='cpu').tolist()
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


def size_cache(maxsize: int) -> Callable[[Callable], Callable]:
    """``functools.lru_cache(maxsize)`` for a tensor made from a map size
    (masks, bias indices), bypassed while the TorchScript tracer records the
    model (ONNX export): a tensor cached by an earlier eager call would enter
    the graph as a constant of that size, so the export would be wrong at
    every other size. ``torch.compile`` inlines the cached function itself."""
    def decorate(fn: Callable) -> Callable:
        cached = lru_cache(maxsize)(fn)

        @wraps(fn)
        def call(*args):
            if torch.jit.is_tracing() and not torch.compiler.is_compiling():
                return fn(*args)
            return cached(*args)
        call.cache_clear, call.cache_info = cached.cache_clear, cached.cache_info
        return call
    return decorate


class TableBias(NamedTuple):
    """An additive attention bias given by how it is made: the entries of a
    small learned ``table`` (heads, T) at ``index`` (N, M), an int64 index
    into T for every (query, key) pair, plus an optional constant ``mask``
    (G, 1, N, M) that makes one bias per group (Swin's shifted windows).

    Why a recipe rather than the tensor: the training path of
    :func:`biased_attention` rebuilds the bias in the backward pass instead of
    keeping it. The (G, heads, N, M) bias is as large as the attention map at
    batch 1 (Swin's shifted blocks: one per window), the table a few KB."""
    table: torch.Tensor
    index: torch.Tensor
    mask: torch.Tensor | None = None

    def materialize(self) -> torch.Tensor:
        """The bias as SDPA's mask: (1, heads, N, M), or (G, heads, N, M) with a mask."""
        return _gathered_bias(self.table, self.index, self.mask)


def gather_bias(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[:, index]`` for a (heads, T) table and an (N, M) int64 index:
    (heads, N, M).

    Why index_select: its backward is an ``index_add_``, where advanced
    indexing's is an accumulating ``index_put_``, which runs serially on CPU."""
    return table.index_select(1, index.reshape(-1)).view(table.shape[0], *index.shape)


def pair_index(dy: torch.Tensor, dx: torch.Tensor, grid_width: int) -> torch.Tensor:
    """The (Hq*Wq, Hk*Wk) index, into a row-major offset grid ``grid_width``
    wide, of every (query, key) pair of two row-major maps, from per-axis
    grid rows ``dy`` (Hq, Hk) and columns ``dx`` (Wq, Wk): for :func:`gather_bias`."""
    index = dy[:, None, :, None] * grid_width + dx[None, :, None, :]  # Hq, Wq, Hk, Wk
    return index.reshape(dy.shape[0] * dx.shape[0], dy.shape[1] * dx.shape[1])


def _gathered_bias(table: torch.Tensor, index: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
    """``table[:, index]`` as (1, heads, N, M), plus ``mask``; with no index
    ``table`` is the bias itself, (G, heads, N, M)."""
    bias = table if index is None else gather_bias(table, index).unsqueeze(0)
    return bias if mask is None else bias + mask


def _attention_scores(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """q k^T * scale + bias as (B*heads, N, M) for q, k flattened to
    (B*heads, N, d); ``bias`` is (G, heads, N, M) and serves the batch as
    ``bias.repeat(B // G, 1, 1, 1)`` would."""
    G, h, N, M = bias.shape
    bias = bias.expand(q.shape[0] // (G * h), G, h, N, M).reshape(q.shape[0], N, M)  # a view unless B > G > 1
    return torch.baddbmm(bias, q, k.transpose(1, 2), alpha=scale)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float,
            dropout_p: float = 0.) -> torch.Tensor:
    """SDPA with ``bias`` as its mask, repeated over the batch where it has one
    entry per group (SDPA only broadcasts a batch dimension of 1)."""
    repeats = q.shape[0] // bias.shape[0]
    mask = bias.repeat(repeats, 1, 1, 1) if repeats > 1 and bias.shape[0] > 1 else bias
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)


def _sum_leading(t: torch.Tensor) -> torch.Tensor:
    """``t.sum(0)``, as a view when dim 0 has one entry: torch's sum still
    writes a fresh tensor then (a fill and an add over the whole attention map)."""
    return t[0] if t.shape[0] == 1 else t.sum(0)


class _BiasedAttention(torch.autograd.Function):
    """softmax(q k^T * scale + bias) v through SDPA's fused CPU kernel, keeping
    q, k, v and what the bias is made of (:class:`TableBias`) for the backward
    pass but neither the (B, heads, N, M) attention map nor the bias: the
    backward rebuilds both (a gather, one more batched matmul and a softmax),
    as flash attention recomputes the map.

    Why our own: torch's CPU flash kernel gives no gradient for its additive
    mask, and the autograd of the written-out form keeps every block's
    attention map until the backward reaches it, a tensor heads*N/C = 1.5x the
    size of a Swin block's input.

    Inputs after ``scale``: the table, its index (or None: the table is the
    whole (G, heads, N, M) bias) and the mask (or None).
    """

    @staticmethod
    def forward(ctx, q, k, v, scale, table, index, mask):
        ctx.save_for_backward(q, k, v, table, index, mask)
        ctx.scale = scale
        bias = _gathered_bias(table.detach(), index, mask)
        # detached: SDPA picks its math fallback for inputs flagged requires_grad
        return _attend(q.detach(), k.detach(), v.detach(), bias, scale)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, table, index, mask = ctx.saved_tensors
        scale = ctx.scale
        B, h, N, M = *q.shape[:3], k.shape[2]
        # (B*h, N, d) operands for bmm, each flattened once: Swin's q, k, v are
        # strided views of its qkv projection and flattening copies them
        q, k, v, grad_out = (t.flatten(0, 1) for t in (q, k, v, grad_out))
        bias = _gathered_bias(table, index, mask)  # rebuilt
        groups = bias.shape[0]
        probs = _attention_scores(q, k, bias, scale).softmax(-1)  # recomputed
        del bias
        grad_v = (probs.transpose(1, 2) @ grad_out).unflatten(0, (B, h))
        grad_scores = torch._softmax_backward_data(grad_out @ v.transpose(1, 2), probs, -1, probs.dtype)
        del probs
        grad_q = (grad_scores @ k).mul_(scale).unflatten(0, (B, h))
        grad_k = (grad_scores.transpose(1, 2) @ q).mul_(scale).unflatten(0, (B, h))
        grad_table = None
        if ctx.needs_input_grad[4]:
            if index is not None:  # one table serves every image and group (gather_bias's backward)
                grad_bias = _sum_leading(grad_scores.view(-1, h * N * M))
                grad_table = table.new_zeros(table.shape).index_add_(1, index.reshape(-1), grad_bias.view(h, -1))
            else:
                grad_table = _sum_leading(grad_scores.view(B // groups, groups, h, N, M))
                if table.shape[0] < groups:
                    grad_table = grad_table.sum(0, keepdim=True)
        return grad_q, grad_k, grad_v, None, grad_table, None, None


def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | TableBias,
                     dropout_p: float = 0.) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v for (B, heads, N, d) q, k and
    (B, heads, M, dv) v. ``bias`` is (heads, N, M) for every image, or
    (G, heads, N, M) with B a multiple of G, used as ``bias.repeat(B // G, 1, 1, 1)``
    (Swin's per-window shift masks) without repeating it; or a
    :class:`TableBias` that makes such a bias, which training then never keeps.
    ``dropout_p`` > 0 (attention dropout in training) goes to SDPA's math path,
    the only one with both dropout and a gradient for the mask.

    Keys as wide as values (Swin, CoAtNet): SDPA's fused kernel, and with gradients
    :class:`_BiasedAttention`. Values wider than keys (LeViT): written out,
    where SDPA would take its CPU math fallback, which adds NaN guards for fully
    masked rows (isneginf, all, where: three more passes over every attention
    map) that an additive bias never needs; timm's LeViT computes it the same
    way. LeViT keeps plain autograd: recomputing its maps costs time for no
    lower peak memory."""
    if isinstance(bias, TableBias):
        table, index, mask = bias
        table = table.to(q.dtype)  # the backward's matmuls need one dtype (autocast casts only its forward)
        mask = None if mask is None else mask.to(q.dtype)
    else:
        table, index, mask = (bias.unsqueeze(0) if bias.dim() == 3 else bias), None, None
    scale = q.shape[-1] ** -0.5
    if (not dropout_p and q.shape[-1] == v.shape[-1] and torch.is_grad_enabled()
            and any(t.requires_grad for t in (q, k, v, table))):
        return _BiasedAttention.apply(q, k, v, scale, table, index, mask)
    bias = _gathered_bias(table, index, mask)
    if dropout_p:
        return _attend(q, k, v, bias, scale, dropout_p)
    if q.shape[-1] != v.shape[-1]:
        probs = _attention_scores(q.flatten(0, 1), k.flatten(0, 1), bias, scale).softmax(-1)
        return (probs @ v.flatten(0, 1)).unflatten(0, q.shape[:2])
    return _attend(q, k, v, bias, scale)
