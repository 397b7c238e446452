"""Swin Transformer (Liu et al., ICCV 2021) as a pyramid backbone.

Four stages at strides 4/8/16/32 for any input size. Windows follow the
official segmentation code (pad each map to a multiple of the window, then
shift), and, as the official classification code and timm do, a map that fits
in a single window is not shifted. Tokens are kept channels-last (B, H, W, C)
between blocks; outputs are NCHW.

Checkpoints load from the official release, timm and mmseg layouts
(:meth:`SwinTransformer.checkpoint_filter`).
"""
from __future__ import annotations

import re
from typing import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, resize_rel_pos_bias_table, trunc_normal_
from timm.models.swin_transformer import PatchMerging, get_relative_position_index
from torch import nn

from densekit.registry import MODELS
from .base import PyramidBackbone
from .fast_paths import cached_for_inference, channels_last_input
from .layers import TableBias, biased_attention, drop_path_rates, init_transformer_weights, patch_embed, size_cache

# -- windows -------------------------------------------------------------------


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of ``window`` -> (B, nW, window*window, C)."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C).transpose(2, 3)
    return x.reshape(B, -1, window * window, C)


def window_reverse(windows: torch.Tensor, window: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B, nW, window*window, C) -> (B, H, W, C)."""
    B, _, _, C = windows.shape
    x = windows.view(B, H // window, W // window, window, window, C).transpose(2, 3)
    return x.reshape(B, H, W, C)


@size_cache(32)
def shifted_window_mask(H: int, W: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """Additive mask (nW, 1, N, N) that keeps the shifted windows' sub-regions
    apart; -100 as in the official code (exp(-100) is 0 in fp32)."""
    img = torch.zeros(1, H, W, 1, device=device)
    regions = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for label, (h, w) in enumerate((h, w) for h in regions for w in regions):
        img[:, h, w, :] = label
    ids = window_partition(img, window).squeeze(-1).squeeze(0)  # nW, N
    mask = (ids.unsqueeze(1) != ids.unsqueeze(2)).float() * -100.0
    return mask.unsqueeze(1)


# -- blocks --------------------------------------------------------------------


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative
    position bias. The bias and the shift mask enter SDPA's fused kernel as its
    additive mask (:func:`layers.biased_attention`, whose backward gives the
    bias its gradient)."""

    def __init__(self, dim: int, num_heads: int, window: int, qkv_bias: bool = True,
                 attn_drop: float = 0., proj_drop: float = 0.):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index',
                             get_relative_position_index(window, window), persistent=False)

    def attention_bias(self, mask: torch.Tensor | None, dtype: torch.dtype) -> TableBias:
        """SDPA's additive mask for one image as a :class:`layers.TableBias`:
        (1, heads, N, N), plus the shift mask (nW, heads, N, N). 4-D even when it
        broadcasts: torch's CPU flash kernel takes only 4-D masks (a 3-D one
        falls back to the slower math path)."""
        N = self.window * self.window
        return TableBias(self.relative_position_bias_table.t().to(dtype), self.relative_position_index.view(N, N),
                         None if mask is None else mask.to(dtype))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, mask_key: tuple = ()) -> torch.Tensor:
        """x: (B, nW, N, C); mask: (nW, 1, N, N) or None, named by ``mask_key``
        (what it was made from) for the inference cache. Returns (B, nW, N, C)."""
        B, nW, N, C = x.shape
        # windows join the batch: a 5-D (B, nW, heads, N, d) SDPA call misses the fused CPU kernel
        q, k, v = self.qkv(x).view(B * nW, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if torch.is_grad_enabled():  # the attention rebuilds the bias in its backward
            bias = self.attention_bias(mask, q.dtype)
        else:
            bias = cached_for_inference(self, (q.dtype, mask is None, mask_key), self.relative_position_bias_table,
                                        lambda: self.attention_bias(mask, q.dtype).materialize())
        x = biased_attention(q, k, v, bias, self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, nW, N, C)))


class SwinBlock(nn.Module):
    """(Shifted-)window attention + MLP, pre-norm, on (B, H, W, C) tokens."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: bool, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, drop: float = 0., attn_drop: float = 0., drop_path: float = 0.):
        super().__init__()
        self.window = window
        self.shift = window // 2 if shift else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window, qkv_bias, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        win = self.window
        pad_h, pad_w = -H % win, -W % win
        # a trace (ONNX export) keeps the padding: whether it is needed depends on the size
        padded = torch.jit.is_tracing() or bool(pad_h or pad_w)
        if padded:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w
        if torch.jit.is_tracing() and self.shift:
            return self._traced_shifted_attention(x, H, W, Hp, Wp)
        # a map inside one window gains nothing from shifting (official rule)
        shift = self.shift if (H > win or W > win) else 0
        mask = None
        if shift:
            x = torch.roll(x, (-shift, -shift), dims=(1, 2))
            mask = shifted_window_mask(Hp, Wp, win, shift, x.device)
        x = window_reverse(self.attn(window_partition(x, win), mask, (Hp, Wp, shift)), win, Hp, Wp)
        if shift:
            x = torch.roll(x, (shift, shift), dims=(1, 2))
        return x[:, :H, :W] if padded else x

    def _traced_shifted_attention(self, x: torch.Tensor, H: torch.Tensor, W: torch.Tensor,
                                  Hp: torch.Tensor, Wp: torch.Tensor) -> torch.Tensor:
        """:meth:`_attention` of a shifted block as the TorchScript tracer (ONNX
        export) records it: x (B, Hp, Wp, C) padded, H, W, Hp, Wp 0-d tensors.
        The rule "no shift when the map fits in one window" is a Python ``if``
        that a trace would freeze at the example's size; here it is a graph op:
        the roll is a gather by ``(i + shift * on) % Hp`` and the shift mask is
        scaled by ``on`` (a zero mask adds nothing), so one graph takes either
        branch at run time. Returns (B, H, W, C)."""
        win = self.window
        on = ((H > win) | (W > win)).long()
        shift = self.shift * on
        rows, cols = torch.arange(Hp, device=x.device), torch.arange(Wp, device=x.device)
        x = x.index_select(1, (rows + shift) % Hp).index_select(2, (cols + shift) % Wp)  # roll by -shift
        mask = shifted_window_mask(Hp, Wp, win, self.shift, x.device) * on.to(x.dtype)
        x = window_reverse(self.attn(window_partition(x, win), mask, (Hp, Wp, self.shift)), win, Hp, Wp)
        x = x.index_select(1, (rows - shift) % Hp).index_select(2, (cols - shift) % Wp)  # roll back
        return x[:, :H, :W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self._attention(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinStage(nn.Module):
    """Optional 2x2 patch merging, then ``depth`` blocks alternating W-MSA / SW-MSA."""

    def __init__(self, in_dim: int, dim: int, depth: int, num_heads: int, window: int,
                 downsample: bool, drop_paths: Sequence[float], **block_kwargs):
        super().__init__()
        self.downsample = PatchMerging(in_dim, dim) if downsample else None
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, shift=i % 2 == 1, drop_path=drop_paths[i], **block_kwargs)
            for i in range(depth))


# -- model ---------------------------------------------------------------------


@MODELS.register_module()
class SwinTransformer(PyramidBackbone):
    """Swin Transformer backbone returning NCHW maps at strides 4/8/16/32.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large', or a dict with
            ``embed_dims``, ``depths``, ``num_heads``.
        window_size: attention window (7 for the 224-pretrained models).
        out_indices: stages to return, 0..3.
        out_norm: 'all' adds a LayerNorm to every returned map (the Swin
            segmentation/detection heads' input); 'last' normalises only
            stage 3, as the classifier (timm, official release) does.
        drop_path_rate: stochastic depth, linearly increasing over blocks.
        frozen_stages: -1 none; 0 the patch embedding; i>0 also stages 0..i-1.
        with_cp: gradient checkpointing of each block.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='swin_tiny.pth')``;
            official, timm (.pth/.safetensors) and mmseg layouts are accepted.
    """

    arch_settings = {
        'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
        'base': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
        'large': dict(embed_dims=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
    }

    def __init__(self, arch: str | dict = 'tiny', in_channels: int = 3, patch_size: int = 4,
                 window_size: int = 7, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop_rate: float = 0., attn_drop_rate: float = 0., drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3), out_norm: str = 'all',
                 frozen_stages: int = -1, with_cp: bool = False, init_cfg: dict | None = None):
        super().__init__(out_indices, frozen_stages, with_cp, init_cfg)
        if isinstance(arch, str):
            if arch not in self.arch_settings:
                raise KeyError(f"SwinTransformer: unknown arch '{arch}', expected one of "
                               f'{sorted(self.arch_settings)} or a dict')
            arch = self.arch_settings[arch]
        if out_norm not in ('all', 'last'):
            raise ValueError(f"SwinTransformer: out_norm must be 'all' or 'last', got {out_norm!r}")
        C, depths, heads = arch['embed_dims'], tuple(arch['depths']), tuple(arch['num_heads'])
        self.num_levels = len(depths)
        self.level_channels = tuple(C * 2 ** i for i in range(self.num_levels))
        self.level_strides = tuple(patch_size * 2 ** i for i in range(self.num_levels))
        self._check_levels()

        self.window_size = window_size
        self.patch_embed = patch_embed(in_channels, C, patch_size, norm=True)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = drop_path_rates(drop_path_rate, depths)
        self.stages = nn.ModuleList(
            SwinStage(self.level_channels[max(i - 1, 0)], self.level_channels[i], depths[i], heads[i],
                      window_size, downsample=i > 0, drop_paths=dpr[i], mlp_ratio=mlp_ratio,
                      qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate)
            for i in range(self.num_levels))
        normed = self.out_indices if out_norm == 'all' else [self.num_levels - 1]
        for i in normed:
            self.add_module(f'norm{i}', nn.LayerNorm(self.level_channels[i]))

    def reset_parameters(self) -> None:
        init_transformer_weights(self)
        for m in self.modules():
            if isinstance(m, WindowAttention):
                trunc_normal_(m.relative_position_bias_table, std=.02)

    def unused_modules(self) -> list[str]:
        return super().unused_modules() + [f'stages.{i}' for i in range(max(self.out_indices) + 1, self.num_levels)]

    def frozen_modules(self, upto: int) -> list[nn.Module]:
        return self.stem_and_stages(self.patch_embed, self.stages, upto)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: (B, 3, H, W), any H, W. Returns one (B, C_i, ceil(H/s_i), ceil(W/s_i))
        map per ``out_indices`` entry, s_i in 4/8/16/32."""
        # channels-last input: the 4x4 patch conv then writes the (B, H, W, C) tokens directly
        x = self.pos_drop(self.patch_embed(channels_last_input(x)))
        outs = []
        for i, stage in enumerate(self.stages):
            if stage.downsample is not None:
                x = stage.downsample(x)
            for block in stage.blocks:
                x = self.run_block(block, x)
            if i in self.out_indices:
                # no loop local for the normed map: it would stay alive through the next stage
                norm = getattr(self, f'norm{i}', None)
                outs.append((norm(x) if norm is not None else x).permute(0, 3, 1, 2).contiguous())
            if i == max(self.out_indices):
                break
        return tuple(outs)

    # -- checkpoints ---------------------------------------------------------
    @staticmethod
    def checkpoint_filter(state_dict: dict, model: 'SwinTransformer') -> dict:
        """Official release / timm / mmseg / DenseKit Swin weights -> our keys.

        Official and timm (<0.9 too) share names (``layers.i``); the official
        layout merges patches at the end of stage i, timm and ours at the start
        of stage i+1. mmseg merges with ``nn.Unfold``, whose channel order
        differs, and renames the attention and MLP. Bias tables trained with
        another window size are resized (timm's bicubic resampling).
        """
        sd = dict(state_dict)
        layout = ('mmseg' if any('.w_msa.' in k for k in sd) else
                  'official' if 'layers.0.downsample.reduction.weight' in sd else
                  'timm' if any(k.startswith('layers.') for k in sd) else 'densekit')
        out: dict = {}
        last = model.num_levels - 1
        for k, v in sd.items():
            if k.endswith(('relative_position_index', 'attn_mask')):
                continue  # derived buffers
            if layout == 'mmseg':
                k = (k.replace('patch_embed.projection.', 'patch_embed.proj.')
                      .replace('.attn.w_msa.', '.attn.')
                      .replace('.ffn.layers.0.0.', '.mlp.fc1.').replace('.ffn.layers.1.', '.mlp.fc2.'))
                if '.downsample.' in k:
                    v = _unfold_to_concat_order(v)
                    k = re.sub(r'stages\.(\d+)\.downsample', lambda m: f'stages.{int(m[1]) + 1}.downsample', k)
            elif layout in ('official', 'timm'):
                if layout == 'official':
                    k = re.sub(r'layers\.(\d+)\.downsample', lambda m: f'layers.{int(m[1]) + 1}.downsample', k)
                k = k.replace('layers.', 'stages.')
                if k.startswith('norm.'):
                    k = f'norm{last}.' + k[len('norm.'):]
                elif k.startswith('head.'):
                    out[k] = None  # classifier
                    continue
            if k.endswith('relative_position_bias_table'):
                # the model's window, not its block's: the block may be one the model lacks
                # (a deeper release, a stage after the last output)
                window = model.window_size
                if v.shape[0] != (2 * window - 1) ** 2:
                    old = int(v.shape[0] ** .5 + 1) // 2
                    v = resize_rel_pos_bias_table(v, new_window_size=(window, window),
                                                  new_bias_shape=((2 * window - 1) ** 2, v.shape[1]),
                                                  old_window_size=(old, old))
            out[k] = v
        return out


def _unfold_to_concat_order(w: torch.Tensor) -> torch.Tensor:
    """mmseg's ``nn.Unfold`` patch merging orders the 4C input channels as
    (c, kh, kw); the official concat([x0, x1, x2, x3]) as (kw, kh, c)."""
    lead = w.shape[:-1]
    C = w.shape[-1] // 4
    return w.reshape(*lead, C, 2, 2).movedim(-3, -1).transpose(-3, -2).reshape(*lead, 4 * C)
