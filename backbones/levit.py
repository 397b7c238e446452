"""LeViT (Graham et al., ICCV 2021) as a pyramid backbone.

LeViT is a 16x convolutional stem (four stride-2 3x3 conv+BN, Hardswish in
between) followed by three attention stages at strides 16/32/64. Stages are
joined by *shrinking attention* (attention-subsample: queries from every
second token, keys/values from all, more heads, then an MLP), every linear
layer is followed by BatchNorm, and position enters only through a learned
*attention bias* per head and absolute 2-d offset (|dy|, |dx|).

Levels (``out_indices``), all for any input size (level i is
``ceil(H / stride_i) x ceil(W / stride_i)``):

=====  ======  ==============================================  ========
level  stride  map                                             channels
=====  ======  ==============================================  ========
0      4       stem after conv2 + Hardswish                    C1 / 4
1      8       stem after conv3 + Hardswish                    C1 / 2
2      16      stage 1: stem conv4, ``stages[0]``              C1
3      32      stage 2: ``stages[1]`` (shrinking attn first)   C2
4      64      stage 3: ``stages[2]`` (optional)               C3
=====  ======  ==============================================  ========

The default ``out_indices=(0, 1, 2, 3)`` is the 4/8/16/32 pyramid that
UPerNet/FPN expect. Stage 3 (/64) is built only when 4 is requested: unbuilt,
it costs nothing and leaves no unused parameters (DDP), and its checkpoint
weights are reported as ignored.

Attention biases at other resolutions. A bias table is stored on the grid of
offsets of the resolution it was trained at (``img_size``: 14x14, 7x7, 4x4
for 224). For a feature map of another size, the (|dy|, |dx|) table is
resampled to that size with antialiased bicubic interpolation (timm's
``resize_rel_pos_bias_table_levit``, extended to non-square maps) before it is
gathered, in the forward pass, so any input size works and gradients reach the
stored table. Checkpoints trained at another ``img_size`` are resampled the
same way once at load time.

Inference: :meth:`LeViT.switch_to_deploy` (alias :meth:`LeViT.fuse`) folds
every BatchNorm into the conv/linear before it, as the official release does.

Checkpoints load from the official release (``model`` key,
``patch_embed.0.c.weight``, ``blocks.N.m.qkv.c.weight``, ...), timm
(``levit_*`` and the 1x1-conv ``levit_conv_*``) and mmpretrain layouts
(:meth:`LeViT.checkpoint_filter`); our keys are timm's.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from densekit.registry import MODELS
from .base import PyramidBackbone
from .fast_paths import cached_for_inference
from .layers import biased_attention, gather_bias, pair_index, size_cache

# -- BN-fusable layers ------------------------------------------------------------


@torch.no_grad()
def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a bias-free linear/conv followed by ``bn`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
    return w, bn.bias - bn.running_mean * scale


class LinearBN(nn.Module):
    """Linear (no bias) + BatchNorm1d over all tokens, on (..., C) inputs.
    :meth:`fuse` folds the BN into the linear (``bn`` becomes Identity)."""

    def __init__(self, in_features: int, out_features: int, bn_weight_init: float = 1.):
        super().__init__()
        self.bn_weight_init = bn_weight_init
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()
        if isinstance(self.bn, nn.BatchNorm1d):
            self.bn.reset_parameters()
            nn.init.constant_(self.bn.weight, self.bn_weight_init)

    @torch.no_grad()
    def fuse(self) -> None:
        if not isinstance(self.bn, nn.BatchNorm1d):
            return
        w, b = _fold_bn(self.linear.weight, self.bn)
        fused = nn.Linear(w.shape[1], w.shape[0], device=w.device, dtype=w.dtype)
        fused.weight.copy_(w)
        fused.bias.copy_(b)
        self.linear, self.bn = fused, nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        if isinstance(self.bn, nn.Identity):
            return x
        return self.bn(x.reshape(-1, x.shape[-1])).view_as(x)


class ConvBN(nn.Module):
    """Conv2d (no bias) + BatchNorm2d; :meth:`fuse` folds the BN into the conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 2,
                 padding: int = 1):
        super().__init__()
        self.linear = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()
        if isinstance(self.bn, nn.BatchNorm2d):
            self.bn.reset_parameters()

    @torch.no_grad()
    def fuse(self) -> None:
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        c = self.linear
        w, b = _fold_bn(c.weight, self.bn)
        fused = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                          device=w.device, dtype=w.dtype)
        fused.weight.copy_(w)
        fused.bias.copy_(b)
        self.linear, self.bn = fused, nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(x))


class Stem(nn.Module):
    """Four stride-2 3x3 ConvBN (C/8, C/4, C/2, C), Hardswish between them."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.conv1 = ConvBN(in_channels, dim // 8)
        self.act1 = nn.Hardswish()
        self.conv2 = ConvBN(dim // 8, dim // 4)
        self.act2 = nn.Hardswish()
        self.conv3 = ConvBN(dim // 4, dim // 2)
        self.act3 = nn.Hardswish()
        self.conv4 = ConvBN(dim // 2, dim)


# -- attention biases ------------------------------------------------------------


def resample_bias_table(table: torch.Tensor, src: Sequence[int], dst: Sequence[int]) -> torch.Tensor:
    """(heads, src_h*src_w) offset table -> (heads, dst_h*dst_w): antialiased
    bicubic resampling of the (|dy|, |dx|) grid, as timm resizes LeViT-style
    tables (``resize_rel_pos_bias_table_levit``), for any aspect ratio."""
    src, dst = tuple(src), tuple(dst)
    if src == dst:
        return table
    heads = table.shape[0]
    grid = F.interpolate(table.float().reshape(1, heads, *src), size=dst, mode='bicubic',
                         align_corners=False, antialias=True)
    return grid.reshape(heads, -1).to(table.dtype)


@size_cache(16)
def _offset_index(q_size: tuple[int, int], k_size: tuple[int, int], stride: int,
                  device: torch.device) -> torch.Tensor:
    """(Nq, Nk) index into a flattened k_size offset grid: dy * Wk + dx with
    dy = |yq * stride - yk|, dx = |xq * stride - xk| for queries on the
    ``stride``-subsampled q_size grid and keys on k_size (row-major)."""
    with torch.inference_mode(False):  # cached tensors may later be saved for backward
        dy, dx = ((torch.arange(nq, device=device)[:, None] * stride - torch.arange(nk, device=device)).abs()
                  for nq, nk in zip(q_size, k_size))
        return pair_index(dy, dx, k_size[1])


class AttentionBias(nn.Module):
    """Learned per-head bias for every absolute offset (|dy|, |dx|) of a
    ``resolution`` grid: ``attention_biases`` (heads, H*W), entry dy*W + dx,
    the official and timm layout."""

    def __init__(self, num_heads: int, resolution: tuple[int, int]):
        super().__init__()
        self.resolution = tuple(resolution)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution[0] * resolution[1]))

    def attention_bias(self, q_size: tuple[int, int], k_size: tuple[int, int], stride: int) -> torch.Tensor:
        """(heads, Nq, Nk) bias between queries on a ``stride``-subsampled grid
        ``q_size`` and keys on ``k_size`` (both flattened row-major); built
        once per size for inference."""
        return cached_for_inference(self, (tuple(q_size), tuple(k_size), stride), self.attention_biases,
                                    lambda: self._attention_bias(q_size, k_size, stride))

    def _attention_bias(self, q_size: tuple[int, int], k_size: tuple[int, int], stride: int) -> torch.Tensor:
        table = resample_bias_table(self.attention_biases, self.resolution, k_size)
        # traced sizes stay symbolic while exporting to ONNX (the size cache steps aside then)
        sizes = (tuple(q_size), tuple(k_size)) if torch.jit.is_tracing() else (tuple(map(int, q_size)),
                                                                                tuple(map(int, k_size)))
        index = _offset_index(*sizes, stride, table.device)
        return gather_bias(table, index)


class Attention(AttentionBias):
    """LeViT multi-head attention on (B, H, W, C) tokens: LinearBN q/k/v (key
    dim ``key_dim``, value dim ``attn_ratio * key_dim``), attention bias,
    Hardswish, LinearBN projection (BN weight 0 at init: residual starts off)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float,
                 resolution: tuple[int, int]):
        super().__init__(num_heads, resolution)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.qkv = LinearBN(dim, num_heads * (2 * key_dim + self.val_dim))
        self.proj = nn.Sequential(OrderedDict(
            act=nn.Hardswish(), ln=LinearBN(num_heads * self.val_dim, dim, bn_weight_init=0.)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        q, k, v = (self.qkv(x).view(B, H * W, self.num_heads, -1).transpose(1, 2)
                   .split([self.key_dim, self.key_dim, self.val_dim], dim=-1))
        bias = self.attention_bias((H, W), (H, W), 1).to(q.dtype)
        x = biased_attention(q, k, v, bias)
        return self.proj(x.transpose(1, 2).reshape(B, H, W, -1))


class AttentionSubsample(AttentionBias):
    """Shrinking attention: queries from every ``stride``-th token, keys and
    values from all; (B, H, W, C_in) -> (B, ceil(H/s), ceil(W/s), C_out)."""

    def __init__(self, in_dim: int, out_dim: int, key_dim: int, num_heads: int, attn_ratio: float,
                 resolution: tuple[int, int], stride: int = 2):
        super().__init__(num_heads, resolution)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.stride = stride
        self.kv = LinearBN(in_dim, num_heads * (key_dim + self.val_dim))
        self.q = nn.Sequential(OrderedDict(ln=LinearBN(in_dim, num_heads * key_dim)))
        self.proj = nn.Sequential(OrderedDict(
            act=nn.Hardswish(), ln=LinearBN(num_heads * self.val_dim, out_dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        k, v = (self.kv(x).view(B, H * W, self.num_heads, -1).transpose(1, 2)
                .split([self.key_dim, self.val_dim], dim=-1))
        xq = x[:, ::self.stride, ::self.stride]
        Hq, Wq = xq.shape[1:3]
        q = self.q(xq).view(B, Hq * Wq, self.num_heads, self.key_dim).transpose(1, 2)
        bias = self.attention_bias((Hq, Wq), (H, W), self.stride).to(q.dtype)
        x = biased_attention(q, k, v, bias)
        return self.proj(x.transpose(1, 2).reshape(B, Hq, Wq, -1))


class Mlp(nn.Module):
    """LinearBN, Hardswish, LinearBN (BN weight 0 at init)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.ln1 = LinearBN(dim, hidden)
        self.act = nn.Hardswish()
        self.ln2 = LinearBN(hidden, dim, bn_weight_init=0.)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln2(self.act(self.ln1(x)))


class LeViTBlock(nn.Module):
    """Residual attention, then residual MLP."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, mlp_ratio: float,
                 resolution: tuple[int, int], drop_path: float = 0.):
        super().__init__()
        self.attn = Attention(dim, key_dim, num_heads, attn_ratio, resolution)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(x))
        return x + self.drop_path2(self.mlp(x))


class LeViTDownsample(nn.Module):
    """Shrinking attention (no residual: the width changes), then a residual MLP."""

    def __init__(self, in_dim: int, out_dim: int, key_dim: int, attn_ratio: float, mlp_ratio: float,
                 resolution: tuple[int, int], drop_path: float = 0.):
        super().__init__()
        self.attn_downsample = AttentionSubsample(in_dim, out_dim, key_dim, in_dim // key_dim,
                                                  attn_ratio, resolution)
        self.mlp = Mlp(out_dim, int(out_dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn_downsample(x)
        return x + self.drop_path(self.mlp(x))


class LeViTStage(nn.Module):
    def __init__(self, downsample: nn.Module | None, blocks: list[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)


# -- model ---------------------------------------------------------------------


@MODELS.register_module()
class LeViT(PyramidBackbone):
    """LeViT backbone returning NCHW maps at strides 4/8/16/32 (and 64).

    Args:
        arch: '128s' | '128' | '192' | '256' | '384' (the paper's and timm's
            LeViT-128S ... 384), or a dict with ``embed_dims`` (3 widths),
            ``key_dim``, ``num_heads`` (3) and ``depths`` (3).
        img_size: input size the attention-bias tables are stored for (int or
            (h, w)); other sizes resample them on the fly. 224 for the
            ImageNet releases; a checkpoint for another size is resampled on
            loading.
        attn_ratio / mlp_ratio: value-dim and MLP ratios inside stages (2, 2).
        down_attn_ratio / down_mlp_ratio: the same for shrinking attention (4, 2).
        drop_path_rate: stochastic depth, the same rate on every residual
            branch, as in the official code (0.1 for LeViT-384 there).
        out_indices: levels to return, 0..4 (table in the module docstring).
        frozen_stages: levels 0..frozen_stages are frozen, with everything
            that computes them (-1: none; 1: conv1-3 of the stem; 2: the
            whole stem and stage 1; ...).
        with_cp: gradient checkpointing of each block.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='LeViT-256-13b5763e.pth')``;
            official, timm and mmpretrain layouts are accepted.
    """

    arch_settings = {
        '128s': dict(embed_dims=(128, 256, 384), key_dim=16, num_heads=(4, 6, 8), depths=(2, 3, 4)),
        '128': dict(embed_dims=(128, 256, 384), key_dim=16, num_heads=(4, 8, 12), depths=(4, 4, 4)),
        '192': dict(embed_dims=(192, 288, 384), key_dim=32, num_heads=(3, 5, 6), depths=(4, 4, 4)),
        '256': dict(embed_dims=(256, 384, 512), key_dim=32, num_heads=(4, 6, 8), depths=(4, 4, 4)),
        '384': dict(embed_dims=(384, 512, 768), key_dim=32, num_heads=(6, 9, 12), depths=(4, 4, 4)),
    }

    def __init__(self, arch: str | dict = '256', in_channels: int = 3, img_size: int | Sequence[int] = 224,
                 attn_ratio: float = 2., mlp_ratio: float = 2., down_attn_ratio: float = 4.,
                 down_mlp_ratio: float = 2., drop_path_rate: float = 0.,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 with_cp: bool = False, init_cfg: dict | None = None):
        super().__init__(out_indices, frozen_stages, with_cp, init_cfg)
        if isinstance(arch, str):
            if arch.lower() not in self.arch_settings:
                raise KeyError(f"LeViT: unknown arch '{arch}', expected one of "
                               f'{sorted(self.arch_settings)} or a dict')
            arch = self.arch_settings[arch.lower()]
        dims, key_dim = tuple(arch['embed_dims']), arch['key_dim']
        heads, depths = tuple(arch['num_heads']), tuple(arch['depths'])
        if not len(dims) == len(heads) == len(depths):
            raise ValueError(f'LeViT: embed_dims, num_heads and depths differ in length: {arch}')
        if dims[0] % 8:
            raise ValueError(f'LeViT: embed_dims[0]={dims[0]} must be a multiple of 8 (stem widths C/8..C)')
        self.depths = depths
        self.num_levels = 2 + len(dims)
        self.level_channels = (dims[0] // 4, dims[0] // 2, *dims)
        self.level_strides = tuple(4 * 2 ** i for i in range(self.num_levels))
        self._check_levels()
        self.deploy = False

        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        res = (-(-h // 16), -(-w // 16))  # the stem's output for an img_size input
        self.stem = Stem(in_channels, dims[0])
        self.stages = nn.ModuleList()
        for i in range(max(self.out_indices) - 1):  # only the stages some output needs
            down = None
            if i > 0:
                down = LeViTDownsample(dims[i - 1], dims[i], key_dim, down_attn_ratio, down_mlp_ratio,
                                       res, drop_path_rate)
                res = ((res[0] + 1) // 2, (res[1] + 1) // 2)
            blocks = [LeViTBlock(dims[i], key_dim, heads[i], attn_ratio, mlp_ratio, res, drop_path_rate)
                      for _ in range(depths[i])]
            self.stages.append(LeViTStage(down, blocks))

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (LinearBN, ConvBN)):
                m.reset_parameters()
            elif isinstance(m, AttentionBias):
                nn.init.zeros_(m.attention_biases)

    def frozen_modules(self, upto: int) -> list[nn.Module]:
        s = self.stem
        if upto < 2:
            return [s.conv1, s.act1, s.conv2, s.act2] + ([s.conv3, s.act3] if upto == 1 else [])
        return [s, *self.stages[:upto - 1]]

    @torch.no_grad()
    def switch_to_deploy(self) -> 'LeViT':
        """Fold every BatchNorm into the conv/linear before it (inference only:
        uses the running statistics). Call after loading weights; the fused
        model's state dict has ``linear.weight``/``linear.bias`` and no ``bn``."""
        for m in self.modules():
            if isinstance(m, (LinearBN, ConvBN)):
                m.fuse()
        self.deploy = True
        return self

    fuse = switch_to_deploy

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: (B, C, H, W), any H, W. Returns one (B, C_i, ceil(H/s_i), ceil(W/s_i))
        map per ``out_indices`` entry, s_i in 4/8/16/32/64, in level order."""
        outs = []
        s = self.stem
        x = s.act2(s.conv2(s.act1(s.conv1(x))))
        if 0 in self.out_indices:
            outs.append(x)
        if max(self.out_indices) >= 1:
            x = s.act3(s.conv3(x))
            if 1 in self.out_indices:
                outs.append(x)
        if self.stages:
            x = s.conv4(x).permute(0, 2, 3, 1)  # tokens stay (B, H, W, C) from here
        for i, stage in enumerate(self.stages):
            if stage.downsample is not None:
                x = self.run_block(stage.downsample, x)
            for block in stage.blocks:
                x = self.run_block(block, x)
            if i + 2 in self.out_indices:
                outs.append(x.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)

    # -- checkpoints ---------------------------------------------------------
    @staticmethod
    def checkpoint_filter(state_dict: dict, model: 'LeViT') -> dict:
        """Official release / timm / mmpretrain / DenseKit LeViT weights -> our keys.

        Ours are timm's. The official release keeps a flat ``blocks``
        sequence (attention and MLP residuals, shrinking attention after
        stages 1 and 2), ``patch_embed.{0,2,4,6}`` and ``.c.``/``.bn.``;
        mmpretrain nests it per stage. timm's ``levit_conv_*`` weights are
        1x1 convs, flattened here. Bias tables stored for another resolution
        are resampled; ``attention_bias_idxs`` (derived) is dropped; the two
        classifier heads and stages this model did not build are ignored.
        """
        sd = {k: v for k, v in state_dict.items() if not k.endswith('attention_bias_idxs')}
        if 'patch_embed.0.c.weight' in sd:
            sd = _from_official(sd, model.depths)
        elif any(k.startswith('patch_embed.patch_embed.') for k in sd):
            sd = _from_mmpretrain(sd)
        own = model.state_dict()
        out: dict = {}
        for k, v in sd.items():
            m = re.match(r'stages\.(\d+)\.', k)
            if k.startswith(('head.', 'head_dist.')) or (m and int(m[1]) >= len(model.stages)):
                out[k] = None  # classifier / a stage no output needs
                continue
            if k in own and v.dim() == 4 and own[k].dim() == 2 and v.shape[2:] == (1, 1):
                v = v.flatten(1)  # timm levit_conv_*: 1x1 conv -> linear
            if k.endswith('attention_biases') and k in own and v.shape != own[k].shape:
                side = int(round(v.shape[1] ** .5))
                if side * side == v.shape[1] and v.shape[0] == own[k].shape[0]:
                    res = model.get_submodule(k[:-len('.attention_biases')]).resolution
                    v = resample_bias_table(v, (side, side), res)
            out[k] = v
        return out


_OFFICIAL_ATTN = {'qkv': 'qkv', 'proj.1': 'proj.ln'}
_OFFICIAL_SUB = {'kv': 'kv', 'q.1': 'q.ln', 'proj.1': 'proj.ln'}
_OFFICIAL_MLP = {'0': 'ln1', '2': 'ln2'}


def _linear_bn(rest: str, names: dict[str, str]) -> str | None:
    """'<module>.c.weight' / '<module>.bn.x' with <module> renamed by ``names``."""
    m = re.fullmatch(r'(.+)\.(c|bn)\.(\w+)', rest)
    if not m or m[1] not in names:
        return None
    return f"{names[m[1]]}.{'linear' if m[2] == 'c' else m[2]}.{m[3]}"


def _from_official(sd: dict, depths: Sequence[int]) -> dict:
    """facebookresearch/LeViT layout -> timm layout (unknown keys pass through)."""
    where = {}  # official block index -> (our module, kind)
    n = 0
    for i, depth in enumerate(depths):
        if i > 0:
            where[n] = (f'stages.{i}.downsample.attn_downsample', 'sub')
            where[n + 1] = (f'stages.{i}.downsample.mlp', 'mlp')
            n += 2
        for j in range(depth):
            where[n] = (f'stages.{i}.blocks.{j}.attn', 'attn')
            where[n + 1] = (f'stages.{i}.blocks.{j}.mlp', 'mlp')
            n += 2
    out = {}
    for k, v in sd.items():
        new = None
        if m := re.fullmatch(r'patch_embed\.([0246])\.(c|bn)\.(\w+)', k):
            new = f"stem.conv{int(m[1]) // 2 + 1}.{'linear' if m[2] == 'c' else 'bn'}.{m[3]}"
        elif (m := re.fullmatch(r'blocks\.(\d+)\.(?:m\.)?(.+)', k)) and int(m[1]) in where:
            prefix, kind = where[int(m[1])]
            rest = m[2]
            if rest == 'attention_biases':
                new = f'{prefix}.attention_biases'
            else:
                names = {'attn': _OFFICIAL_ATTN, 'sub': _OFFICIAL_SUB, 'mlp': _OFFICIAL_MLP}[kind]
                sub = _linear_bn(rest, names)
                new = f'{prefix}.{sub}' if sub else None
        out[new or k] = v
    return out


def _from_mmpretrain(sd: dict) -> dict:
    """mmpretrain ``LeViT`` layout -> timm layout (unknown keys pass through)."""
    out = {}
    for k, v in sd.items():
        new = None
        if m := re.fullmatch(r'patch_embed\.patch_embed\.([0246])\.(conv|bn)\.(\w+)', k):
            new = f"stem.conv{int(m[1]) // 2 + 1}.{'linear' if m[2] == 'conv' else 'bn'}.{m[3]}"
        elif m := re.fullmatch(r'stages\.(\d+)\.(\d+)\.(.+)', k):
            i, idx, rest = int(m[1]), int(m[2]), m[3]
            if i > 0 and idx == 0:  # shrinking attention
                new = f'stages.{i}.downsample.attn_downsample.' + (
                    rest if rest == 'attention_biases' else
                    re.sub(r'^(kv|q\.1|proj\.1)\.', lambda g: {'kv': 'kv.', 'q.1': 'q.ln.', 'proj.1': 'proj.ln.'}[g[1]],
                           rest))
            elif i > 0 and idx == 1:
                new = f'stages.{i}.downsample.mlp.' + re.sub(r'^block\.linear([12])\.', r'ln\1.', rest)
            else:
                j = idx - (2 if i > 0 else 0)
                if j % 2 == 0:
                    new = f'stages.{i}.blocks.{j // 2}.attn.' + re.sub(
                        r'^block\.(qkv|proj\.1|attention_biases)',
                        lambda g: {'qkv': 'qkv', 'proj.1': 'proj.ln', 'attention_biases': 'attention_biases'}[g[1]],
                        rest)
                else:
                    new = f'stages.{i}.blocks.{j // 2}.mlp.' + re.sub(r'^block\.linear([12])\.', r'ln\1.', rest)
        out[new or k] = v
    return out
