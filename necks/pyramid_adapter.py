"""Isotropic-to-pyramid adapter: one stride-``p`` map -> maps at strides 4/8/16/32.

Isotropic backbones (ViT, MAE-ViT, ConvMixer) keep a single resolution. This
neck builds the pyramid that UPerNet, FPN and Mask R-CNN expect, as ViTDet's
simple feature pyramid (Li et al., 2022; detectron2 ``SimpleFeaturePyramid``)
or as BEiT/MAE segmentation do (mmseg ``Feature2Pyramid``).

Level i, at stride ``s_i``, has the exact size ``ceil(H * p / s_i)`` for an
input map of size H: upsampling by 2^n uses n 2x2 deconvolutions, downsampling
by 2^n a 2^n max-pool with ``ceil_mode`` (the references floor; they only see
padded maps, where both agree). A ratio ``p / s`` that is not a power of two
(ConvMixer's patch 7 or 14) uses the nearest power-of-two op, then bilinear
resampling to the exact size.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d
from torch import nn

from densekit.registry import MODELS

NORMS = {'LN2d': LayerNorm2d, 'BN': nn.BatchNorm2d, 'SyncBN': nn.SyncBatchNorm}


def build_norm(cfg: dict, channels: int) -> nn.Module:
    """``dict(type='LN2d' | 'BN' | 'SyncBN' | 'GN', requires_grad=True, **kwargs)``."""
    cfg = dict(cfg)
    kind, requires_grad = cfg.pop('type'), cfg.pop('requires_grad', True)
    if kind == 'GN':
        norm = nn.GroupNorm(cfg.pop('num_groups', 32), channels, **cfg)
    elif kind in NORMS:
        norm = NORMS[kind](channels, **cfg)
    else:
        raise KeyError(f"SimpleFeaturePyramid: unknown norm type {kind!r}, expected one of "
                       f"{sorted([*NORMS, 'GN'])}")
    for p in norm.parameters():
        p.requires_grad = requires_grad
    return norm


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """Turns the map(s) of an isotropic backbone at stride ``in_stride`` into
    one map per ``out_strides`` entry.

    Args:
        in_channels: channels C of the input map(s).
        out_channels: channels of every output level; None keeps C (BEiT).
        in_stride: the backbone's stride p (16 for ViT-B/16, 7 or 14 for ConvMixer).
        out_strides: strides of the output levels.
        mode: 'simple' (ViTDet): per level 2x2 deconvs (halving channels, with
            norm + GELU between them) or max-pool, then a 1x1 and a 3x3 conv,
            each followed by the norm. 'beit' (BEiT/MAE, mmseg Feature2Pyramid):
            the deconvs keep C channels, no other conv; out_channels must be
            None or C.
        norm_cfg: ``dict(type='LN2d' | 'BN' | 'SyncBN' | 'GN', ...)``; default
            LN2d in 'simple' mode (timm's LayerNorm2d), BN in 'beit' mode.

    Input: a tuple of (B, C, h, w) maps: one map, shared by every level, or
    ``len(out_strides)`` maps, map i feeding level i (BEiT/MAE take them from
    different blocks). Output: a tuple of (B, out_channels[i],
    ceil(h * p / s_i), ceil(w * p / s_i)) maps, the padded image at stride
    s_i; when the tuple carries the image's size (``backbones.base.LevelMaps``,
    as our ViTs and ConvMixer return) each level is cropped to the image's
    ceil(H / s_i) x ceil(W / s_i), the size every pyramid family returns
    (the padding is at the bottom and right, so the crop keeps the alignment).
    """

    def __init__(self, in_channels: int, out_channels: int | None = 256, in_stride: int = 16,
                 out_strides: Sequence[int] = (4, 8, 16, 32), mode: str = 'simple',
                 norm_cfg: dict | None = None, init_cfg: dict | None = None):
        super().__init__(init_cfg=init_cfg)
        if mode not in ('simple', 'beit'):
            raise ValueError(f"SimpleFeaturePyramid: mode must be 'simple' or 'beit', got {mode!r}")
        out = in_channels if out_channels is None else out_channels
        if mode == 'beit' and out != in_channels:
            raise ValueError(f"SimpleFeaturePyramid: mode='beit' keeps the {in_channels} input "
                             f'channels; got out_channels={out_channels} (use None or mode=\'simple\')')
        norm_cfg = norm_cfg or dict(type='LN2d' if mode == 'simple' else 'BN')
        self.in_stride = in_stride
        self.out_strides = tuple(out_strides)
        self.out_channels = (out,) * len(self.out_strides)
        self.mode = mode
        self.resample = nn.ModuleList()
        self.convs = nn.ModuleList()
        for s in self.out_strides:
            # nearest power of two to p/s; the exact size follows by interpolation
            n = round(math.log2(in_stride / s))
            ops, dim = [], in_channels
            for i in range(n):
                nxt = dim // 2 if mode == 'simple' else dim
                if i:
                    ops += [build_norm(norm_cfg, dim), nn.GELU()]
                ops.append(nn.ConvTranspose2d(dim, nxt, 2, stride=2))
                dim = nxt
            if n < 0:
                ops.append(nn.MaxPool2d(2 ** -n, stride=2 ** -n, ceil_mode=True))
            self.resample.append(nn.Sequential(*ops))
            if mode == 'simple':
                self.convs.append(nn.Sequential(
                    nn.Conv2d(dim, out, 1, bias=False), build_norm(norm_cfg, out),
                    nn.Conv2d(out, out, 3, padding=1, bias=False), build_norm(norm_cfg, out)))
            else:
                self.convs.append(nn.Identity())

    def forward(self, inputs: Sequence[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        if torch.is_tensor(inputs):
            inputs = (inputs,)
        levels = len(self.out_strides)
        if len(inputs) not in (1, levels):
            raise ValueError(f'SimpleFeaturePyramid: expected 1 or {levels} input maps (one per '
                             f'out_strides entry), got {len(inputs)}; check the backbone\'s out_indices')
        image_size = getattr(inputs, 'image_size', None)
        outs = []
        for i, s in enumerate(self.out_strides):
            x = inputs[i if len(inputs) == levels else 0]
            # ceil without negative operands: ONNX integer division truncates
            size = tuple((d * self.in_stride + s - 1) // s for d in x.shape[-2:])
            x = self.resample[i](x)
            # a trace (ONNX export) keeps the resize: whether it is needed depends on the size
            if torch.jit.is_tracing() or tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
            if image_size is not None:
                x = x[..., :(image_size[0] + s - 1) // s, :(image_size[1] + s - 1) // s]
            outs.append(self.convs[i](x))
        return tuple(outs)
