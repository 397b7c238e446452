"""ConvMixer (Trockman & Kolter, "Patches Are All You Need?", TMLR 2023) as an
isotropic backbone.

A patch-embedding convolution (stride p), then ``depth`` blocks of depthwise
conv (with a residual) + pointwise conv, each followed by an activation and
BatchNorm, all at stride p. As for the ViT, every block is a level at the same
stride (``num_levels`` = depth, ``level_strides`` all p) and the 4/8/16/32
pyramid comes from ``densekit.SimpleFeaturePyramid`` (in_stride=p: 7 or 14
are not powers of two, the adapter resamples). Inputs of any size are padded
to a multiple of p, so maps are (B, dim, ceil(H/p), ceil(W/p)) (timm's
model floors instead: it drops the last partial patch).

Parameter names are timm's (``convmixer_*``); the official release's
``nn.Sequential`` layout and mmpretrain's also load (:meth:`ConvMixer.checkpoint_filter`).
"""
from __future__ import annotations

import re
from typing import Sequence

import torch
import torch.nn.functional as F
from timm.models.convmixer import Residual
from torch import nn

from densekit.registry import MODELS
from .base import LevelMaps, PyramidBackbone
from .fast_paths import channels_last_grads, channels_last_input

ACTIVATIONS = {'gelu': nn.GELU, 'relu': nn.ReLU}


def mixer_block(dim: int, kernel_size: int, act: type[nn.Module]) -> nn.Sequential:
    """Depthwise k x k conv (residual) then pointwise conv, each + act + BN."""
    return nn.Sequential(
        Residual(nn.Sequential(nn.Conv2d(dim, dim, kernel_size, groups=dim, padding='same'),
                               act(), nn.BatchNorm2d(dim))),
        nn.Conv2d(dim, dim, 1), act(), nn.BatchNorm2d(dim))


@MODELS.register_module()
class ConvMixer(PyramidBackbone):
    """ConvMixer returning the (B, dim, ceil(H/p), ceil(W/p)) maps of chosen blocks.

    Args:
        arch: '1536_20' | '768_32' | '1024_20_ks9_p14' (timm's ``convmixer_*``;
            the paper's ConvMixer-1536/20, -768/32 and -1024/20 with patch 14),
            or a dict with ``dim``, ``depth``, ``kernel_size``, ``patch_size``
            and ``act`` ('gelu' | 'relu').
        out_indices: blocks whose outputs are returned (0..depth-1); default the last.
        frozen_stages: -1 none; 0 the patch embedding (stem); k > 0 also blocks
            0..k-1 (their BatchNorms stay in eval mode).
        with_cp: gradient checkpointing of each block. The recomputation runs
            the block's BatchNorms again in training mode, so their running
            statistics are updated twice per step.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)``, timm or official layout.
    """

    arch_settings = {
        '1536_20': dict(dim=1536, depth=20, kernel_size=9, patch_size=7, act='gelu'),
        '768_32': dict(dim=768, depth=32, kernel_size=7, patch_size=7, act='relu'),
        '1024_20_ks9_p14': dict(dim=1024, depth=20, kernel_size=9, patch_size=14, act='gelu'),
    }

    def __init__(self, arch: str | dict = '1536_20', in_channels: int = 3,
                 out_indices: Sequence[int] | None = None, frozen_stages: int = -1,
                 with_cp: bool = False, init_cfg: dict | None = None):
        if isinstance(arch, str):
            if arch not in self.arch_settings:
                raise KeyError(f"ConvMixer: unknown arch '{arch}', expected one of "
                               f'{sorted(self.arch_settings)} or a dict')
            arch = self.arch_settings[arch]
        dim, depth, p = arch['dim'], arch['depth'], arch['patch_size']
        super().__init__((depth - 1,) if out_indices is None else out_indices, frozen_stages, with_cp, init_cfg)
        act = ACTIVATIONS[arch.get('act', 'gelu')]
        self.patch_size = p
        self.num_levels = depth
        self.level_channels = (dim,) * depth
        self.level_strides = (p,) * depth
        self._check_levels()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, dim, p, stride=p), act(), nn.BatchNorm2d(dim))
        self.blocks = nn.ModuleList(mixer_block(dim, arch['kernel_size'], act) for _ in range(depth))

    def unused_modules(self) -> list[str]:
        return [f'blocks.{i}' for i in range(max(self.out_indices) + 1, self.num_levels)]

    def frozen_modules(self, upto: int) -> list[nn.Module]:
        return [self.stem, *self.blocks[:upto]]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: (B, 3, H, W), any H, W. Returns one (B, dim, ceil(H/p), ceil(W/p))
        map per ``out_indices`` entry: NCHW tensors in channels-last memory."""
        p = self.patch_size
        image_size = x.shape[-2:]
        x = F.pad(x, (0, -x.shape[-1] % p, 0, -x.shape[-2] % p))
        x = self.stem(channels_last_input(x))
        outs = []
        for i, block in enumerate(self.blocks):
            x = self.run_block(block, x)
            if i in self.out_indices:
                outs.append(x)
            if i == max(self.out_indices):
                break
        # the image size lets the pyramid adapter give ceil(H/s) at every stride
        return LevelMaps(channels_last_grads(tuple(outs)), image_size)

    @staticmethod
    def checkpoint_filter(state_dict: dict, model: 'ConvMixer') -> dict:
        """timm (``stem.``, ``blocks.``, ``head.``), mmpretrain (timm's with
        ``stages.`` for ``blocks.``) or the official ``nn.Sequential`` (0:
        patch conv, 2: its BN, 3..depth+2: blocks, depth+5: classifier) -> our
        keys; the classifier maps to None."""
        depth = model.num_levels
        out = {}
        for k, v in state_dict.items():
            m = re.match(r'(\d+)\.(.*)', k)
            if m:  # official layout
                i, rest = int(m[1]), m[2]
                k = (f'stem.{i}.{rest}' if i < 3 else f'blocks.{i - 3}.{rest}' if i < depth + 3
                     else f'head.{rest}')
            elif k.startswith('stages.'):  # mmpretrain
                k = 'blocks.' + k[len('stages.'):]
            out[k] = None if k.startswith('head.') else v
        return out
