"""Layers shared by several backbone families (the rest come from timm.layers)."""
from __future__ import annotations

from typing import Sequence

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
