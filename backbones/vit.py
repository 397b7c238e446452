"""Vision Transformer (Dosovitskiy et al., ICLR 2021) as an isotropic backbone.

A ViT keeps one resolution: every block works on the stride-16 token grid, so
each returned map is (B, C, ceil(H/16), ceil(W/16)) and ``level_strides`` is 16
for every level (a level is a block here: ``num_levels`` = depth). The
4/8/16/32 pyramid that dense heads need comes from the adapter
``necks.pyramid_adapter.SimpleFeaturePyramid`` (``densekit.SimpleFeaturePyramid``).

Blocks are timm's, so the parameter names are timm's (also those of the official
Google/JAX-converted, DeiT and MAE releases). Inputs of any size are padded to
a multiple of the patch size, and the position embedding is resampled to the
token grid (timm's ``resample_abs_pos_embed``, bicubic).

ViTDet-style attention (Li et al., ECCV 2022, "Exploring Plain Vision
Transformer Backbones for Object Detection"; the same design is SAM's image
encoder) is an option: ``window_size`` > 0 makes every block but those in
``global_attn_indexes`` attend within non-overlapping windows of the token
map, and ``use_rel_pos`` adds the decomposed relative position bias (MViTv2)
to every block's attention. Those blocks are timm's SAM blocks
(``timm.models.vision_transformer_sam.Block``): they run on (B, h, w, C) maps,
pad a map that the window size does not divide (as ViTDet does) and crop the
padding again, and their keys are those of the plain blocks plus
``attn.rel_pos_h`` / ``attn.rel_pos_w``. Such a model has no class token, as
ViTDet and SAM; a checkpoint's class token is dropped on load.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import torch
from timm.layers import resample_abs_pos_embed, to_2tuple, trunc_normal_
from timm.models.vision_transformer import Block
from timm.models.vision_transformer_sam import Block as SpatialBlock
from torch import nn
from torch.nn import functional as F

from densekit.registry import MODELS
from .base import LevelMaps, PyramidBackbone
from .layers import init_transformer_weights, patch_embed

# mmseg (``VisionTransformer``) and mmpretrain names -> timm names
MM_RENAMES = (('patch_embed.projection.', 'patch_embed.proj.'), ('.ln1.', '.norm1.'), ('.ln2.', '.norm2.'),
              ('.attn.attn.in_proj_weight', '.attn.qkv.weight'), ('.attn.attn.in_proj_bias', '.attn.qkv.bias'),
              ('.attn.attn.out_proj.', '.attn.proj.'),
              ('.ffn.layers.0.0.', '.mlp.fc1.'), ('.ffn.layers.1.', '.mlp.fc2.'))


@MODELS.register_module()
class VisionTransformer(PyramidBackbone):
    """ViT returning the (B, C, ceil(H/p), ceil(W/p)) token maps of chosen blocks.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' | 'huge' (timm's
            ``vit_*_patch16_224``; huge is patch 14), or a dict with
            ``embed_dims``, ``depth``, ``num_heads`` (and optionally ``patch_size``).
        img_size: int or (H, W): sets the stored position-embedding grid
            (img_size / patch_size); a checkpoint trained at another size is
            resampled to it on load, and other input sizes resample it on the fly.
        patch_size: None takes the arch's (16; 14 for huge).
        out_indices: blocks whose outputs are returned (0..depth-1), e.g.
            (3, 5, 7, 11) for ViT-B; default the last block.
        out_norm: None; 'last' applies the final LayerNorm ``norm`` to the last
            block's output (timm ``forward_features``, mmseg ``final_norm``);
            'all' applies it to every returned map (timm
            ``forward_intermediates(norm=True)``).
        out_type: 'featmap' returns each selected block's patch tokens as a
            (B, C, h, w) map; 'cls_token' returns its class token, (B, C), as
            timm's and DeiT's classifiers read it (``global_pool='token'``).
        window_size: 0 (default): global attention in every block; > 0: ViTDet's
            window attention in the blocks not in ``global_attn_indexes``,
            windows of ``window_size`` x ``window_size`` tokens (a map the
            window does not divide is padded, as in ViTDet). ViTDet-B: 14.
        global_attn_indexes: the blocks that keep global attention when
            ``window_size`` > 0 (ViTDet-B: (2, 5, 8, 11)).
        use_rel_pos: add the decomposed relative position bias of ViTDet/SAM
            to every block; its tables (``blocks.i.attn.rel_pos_h/_w``, zeros
            at init, as ViTDet) are sized for the window, or for the
            ``img_size`` token grid in global blocks, and are interpolated
            for other sizes. A checkpoint without them (MAE, timm, ...) loads
            with them reported as expected (left at init).
        pretrain_img_size: int or (H, W) the loaded checkpoint was trained at;
            needed only for a non-square position-embedding grid (e.g. 512x1024,
            a 32x64 grid), which its length alone does not determine.
        pos_antialias: resample the position embedding with timm's
            antialiased bicubic (True, a=-0.5 kernel even when upsampling) or
            with plain bicubic (False, a=-0.75) as mmseg does: use False to
            reproduce a model fine-tuned in mmseg at sizes other than its own.
        drop_path_rate: stochastic depth, rising linearly over blocks.
        frozen_stages: -1 none; 0 patch embedding, class token and position
            embedding; k > 0 also blocks 0..k-1.
        with_cp: gradient checkpointing of each block.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)``: timm/official/DeiT,
            MAE, mmseg and mmpretrain layouts (:meth:`checkpoint_filter`).
    """

    arch_settings = {
        'tiny': dict(embed_dims=192, depth=12, num_heads=3),
        'small': dict(embed_dims=384, depth=12, num_heads=6),
        'base': dict(embed_dims=768, depth=12, num_heads=12),
        'large': dict(embed_dims=1024, depth=24, num_heads=16),
        'huge': dict(embed_dims=1280, depth=32, num_heads=16, patch_size=14),
    }

    def __init__(self, arch: str | dict = 'base', img_size: int | tuple[int, int] = 224,
                 patch_size: int | None = None, in_channels: int = 3, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, drop_rate: float = 0., attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0., out_indices: Sequence[int] | None = None,
                 out_norm: str | None = None, out_type: str = 'featmap',
                 window_size: int = 0, global_attn_indexes: Sequence[int] = (), use_rel_pos: bool = False,
                 pretrain_img_size: int | tuple[int, int] | None = None, pos_antialias: bool = True,
                 frozen_stages: int = -1, with_cp: bool = False, init_cfg: dict | None = None):
        arch = self.resolve_arch(arch)
        C, depth, heads = arch['embed_dims'], arch['depth'], arch['num_heads']
        super().__init__((depth - 1,) if out_indices is None else out_indices, frozen_stages, with_cp, init_cfg)
        if out_norm not in (None, 'last', 'all'):
            raise ValueError(f"{type(self).__name__}: out_norm must be None, 'last' or 'all', got {out_norm!r}")
        if out_type not in ('featmap', 'cls_token'):
            raise ValueError(f"{type(self).__name__}: out_type must be 'featmap' or 'cls_token', got {out_type!r}")
        self.out_type = out_type
        self.window_size, self.use_rel_pos = window_size, use_rel_pos
        self.global_attn_indexes = tuple(global_attn_indexes)
        self._check_attention(depth)
        # ViTDet/SAM blocks work on (B, h, w, C) maps: no class token
        self.spatial = window_size > 0 or use_rel_pos
        self.num_prefix_tokens = 0 if self.spatial else 1
        self.patch_size = patch_size or arch.get('patch_size', 16)
        self.num_levels = depth
        self.level_channels = (C,) * depth
        self.level_strides = (self.patch_size,) * depth
        self._check_levels()
        self.out_norm = out_norm
        self.pos_antialias = pos_antialias
        self.grid_size = tuple(s // self.patch_size for s in to_2tuple(img_size))
        self.pretrain_grid_size = (None if pretrain_img_size is None else
                                   tuple(s // self.patch_size for s in to_2tuple(pretrain_img_size)))

        self.patch_embed = patch_embed(in_channels, C, self.patch_size, norm=False)
        self.register_parameter('cls_token', None if self.spatial else nn.Parameter(torch.zeros(1, 1, C)))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + math.prod(self.grid_size), C))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear, as timm
        common = dict(qkv_bias=qkv_bias, proj_drop=drop_rate, attn_drop=attn_drop_rate,
                      norm_layer=partial(nn.LayerNorm, eps=1e-6))
        if self.spatial:
            self.blocks = nn.ModuleList(
                SpatialBlock(C, heads, mlp_ratio, drop_path=dpr[i], use_rel_pos=use_rel_pos,
                             window_size=0 if i in self.global_attn_indexes else window_size,
                             input_size=self.grid_size, **common)
                for i in range(depth))
        else:
            self.blocks = nn.ModuleList(Block(C, heads, mlp_ratio, drop_path=dpr[i], **common) for i in range(depth))
        # built only when used: an unused parameter breaks DDP
        if out_norm == 'all' or (out_norm == 'last' and depth - 1 in self.out_indices):
            self.norm = nn.LayerNorm(C, eps=1e-6)

    def _check_attention(self, depth: int) -> None:
        name = type(self).__name__
        if not isinstance(self.window_size, int) or self.window_size < 0:
            raise ValueError(f'{name}: window_size must be an int >= 0 (0: global attention in every block), '
                             f'got {self.window_size!r}')
        bad = [i for i in self.global_attn_indexes if not 0 <= i < depth]
        if bad:
            raise ValueError(f'{name}: global_attn_indexes {self.global_attn_indexes} must be blocks in '
                             f'0..{depth - 1}; {bad} are not')
        if self.global_attn_indexes and not self.window_size:
            raise ValueError(f'{name}: global_attn_indexes={self.global_attn_indexes} needs window_size > 0 '
                             '(with window_size=0 every block attends globally), e.g. window_size=14')
        if (self.window_size or self.use_rel_pos) and self.out_type == 'cls_token':
            raise ValueError(f"{name}: out_type='cls_token' needs a class token, which a model with "
                             'window_size > 0 or use_rel_pos=True (ViTDet, SAM) does not have; use '
                             "out_type='featmap'")

    @classmethod
    def resolve_arch(cls, arch: str | dict) -> dict:
        if isinstance(arch, dict):
            return arch
        if arch not in cls.arch_settings:
            raise KeyError(f"{cls.__name__}: unknown arch '{arch}', expected one of "
                           f'{sorted(cls.arch_settings)} or a dict')
        return cls.arch_settings[arch]

    def reset_parameters(self) -> None:
        """timm's default ViT initialisation."""
        trunc_normal_(self.pos_embed, std=.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        init_transformer_weights(self)
        for block in self.blocks:  # zeros, as ViTDet and SAM initialise them
            if getattr(block.attn, 'use_rel_pos', False):
                nn.init.zeros_(block.attn.rel_pos_h)
                nn.init.zeros_(block.attn.rel_pos_w)

    def release_lacks(self) -> tuple[str, ...]:
        """The relative position tables: a release of a plain ViT (MAE, timm,
        mmpretrain) has none; ViTDet fine-tunes them from zeros."""
        rel = tuple(f'blocks.{i}.attn.rel_pos_' for i in range(len(self.blocks)) if self.use_rel_pos)
        return super().release_lacks() + rel

    def unused_modules(self) -> list[str]:
        return [f'blocks.{i}' for i in range(max(self.out_indices) + 1, self.num_levels)]

    def frozen_modules(self, upto: int) -> list[nn.Module]:
        return [self.patch_embed, *self.blocks[:upto]]

    def _freeze(self) -> None:
        super()._freeze()
        if self.frozen_stages >= 0:
            if self.cls_token is not None:
                self.cls_token.requires_grad = False
            self.pos_embed.requires_grad = False

    def get_layer_depth(self, param_name: str, prefix: str = 'backbone.') -> tuple[int, int]:
        """(depth of ``param_name``, number of depths) for layer-wise lr decay:
        embeddings 0, block i at i + 1, the rest of the backbone (final norm)
        and everything outside it (neck, heads) at depth + 1. The convention of
        mmpretrain's ``get_layer_depth``."""
        num = self.num_levels + 2
        if not param_name.startswith(prefix):
            return num - 1, num
        name = param_name[len(prefix):]
        if name in ('cls_token', 'pos_embed') or name.startswith('patch_embed.'):
            return 0, num
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1, num
        return num - 1, num

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: (B, 3, H, W), any H, W. Returns one (B, C, ceil(H/p), ceil(W/p))
        map per ``out_indices`` entry (``out_type='featmap'``), or one (B, C)
        class token per entry (``out_type='cls_token'``)."""
        image_size = x.shape[-2:]
        x = self.patch_embed(x)  # B, h, w, C (padded to a multiple of p)
        B, h, w, C = x.shape
        pos = resample_abs_pos_embed(self.pos_embed, new_size=(h, w), old_size=self.grid_size,
                                     num_prefix_tokens=self.num_prefix_tokens, antialias=self.pos_antialias)
        if self.spatial:  # ViTDet/SAM blocks take the (B, h, w, C) map
            x = self.pos_drop(x + pos.reshape(1, h, w, C))
        else:
            x = torch.cat([self.cls_token.expand(B, -1, -1), x.reshape(B, h * w, C)], dim=1)
            x = self.pos_drop(x + pos)
        outs, last = [], self.num_levels - 1
        for i, block in enumerate(self.blocks):
            x = self.run_block(block, x)
            if i in self.out_indices:
                outs.append(self._level_output(x, i == last, (B, h, w, C)))
            if i == max(self.out_indices):
                break
        # the image size lets the pyramid adapter give ceil(H/s) at every stride
        return LevelMaps(outs, image_size)

    def _level_output(self, x: torch.Tensor, is_last: bool, shape: tuple[int, int, int, int]) -> torch.Tensor:
        """One returned level from the (B, 1 + h*w, C) tokens (a (B, h, w, C)
        map in a ViTDet-style model). A method, not a
        loop local: a normed copy held in ``forward`` would stay alive through
        the following blocks (3 MB more at ViT-B's forward peak at 512)."""
        if self.out_norm == 'all' or (self.out_norm == 'last' and is_last):
            x = self.norm(x)
        if self.spatial:
            return x.permute(0, 3, 1, 2).contiguous()
        if self.out_type == 'cls_token':
            return x[:, 0]
        return x[:, 1:].reshape(shape).permute(0, 3, 1, 2).contiguous()

    # -- checkpoints ---------------------------------------------------------
    @staticmethod
    def checkpoint_filter(state_dict: dict, model: 'VisionTransformer') -> dict:
        """timm / official (Google-JAX-converted) / DeiT / MAE / mmseg /
        mmpretrain ViT weights, and the SAM image encoder (ViTDet-style: timm,
        mmpretrain ``ViTSAM``, the official release) -> our (timm's) keys.

        The classifier (``head``, ``fc_norm``), SAM's neck (``neck``,
        ``channel_reduction``; the release's prompt encoder and mask decoder), DeiT's
        distillation token, a class token the model does not have (ViTDet
        style) and a final ``norm`` the model does not use map to None. A
        position embedding trained at another size is resampled to
        ``model.grid_size``; relative position tables (``attn.rel_pos_h/_w``)
        of another length are interpolated linearly, as ViTDet and SAM do at
        run time (``get_rel_pos``).
        """
        sd, other = dict(state_dict), []
        if any(k.startswith('image_encoder.') for k in sd):  # the official SAM release (timm's filter)
            other = [k for k in sd if not k.startswith('image_encoder.')]  # prompt encoder, mask decoder
            sd = {k[len('image_encoder.'):].replace('mlp.lin', 'mlp.fc'): v
                  for k, v in sd.items() if k.startswith('image_encoder.')}
        if any(k.startswith('layers.') for k in sd):  # mmseg / mmpretrain
            renamed = {}
            for k, v in sd.items():
                if k.startswith('ln1.'):  # the final norm
                    k = 'norm.' + k[len('ln1.'):]
                elif k.startswith('layers.'):
                    k = 'blocks.' + k[len('layers.'):]
                for old, new in MM_RENAMES:
                    k = k.replace(old, new)
                renamed[k] = v
            sd = renamed
            w = sd.get('patch_embed.proj.weight')
            if w is not None and 'patch_embed.proj.bias' not in sd:  # mmseg's default patch_bias=False
                sd['patch_embed.proj.bias'] = w.new_zeros(w.shape[0])
        out: dict = dict.fromkeys(other)
        own = model.state_dict()
        for k, v in sd.items():
            if k.startswith(('head.', 'head_dist.', 'fc_norm.', 'dist_token', 'neck.', 'channel_reduction.')) or \
                    (k.startswith('norm.') and k not in own) or (k == 'cls_token' and k not in own):
                out[k] = None  # classifier, SAM's neck (timm, mmpretrain), distillation, unused norm or class token
                continue
            if k == 'pos_embed':
                v = _own_pos_embed(v, 'cls_token' in sd, 'dist_token' in sd, model)
            elif k.endswith(('.attn.rel_pos_h', '.attn.rel_pos_w')) and k in own and v.shape != own[k].shape:
                v = _resize_rel_pos(v, own[k].shape[0])
            out[k] = v
        return out


def _own_pos_embed(v: torch.Tensor, has_cls: bool, has_dist: bool, model: VisionTransformer) -> torch.Tensor:
    """A checkpoint's position embedding -- (1, prefix + N, C), or SAM's
    (1, h, w, C) -- as ``model`` holds it: (1, model.num_prefix_tokens + gh * gw, C)
    on ``model.grid_size``."""
    if v.dim() == 4:  # SAM / ViTDet: a map, no prefix tokens
        v = v.flatten(1, 2)
    if has_dist:  # DeiT-distilled: two prefix tokens
        v = torch.cat([v[:, :1], v[:, 2:]], dim=1)
    if has_cls and not model.num_prefix_tokens:  # ViTDet drops the pretrained class position
        v = v[:, 1:]
    elif model.num_prefix_tokens and not has_cls:  # a class-free release in a model with one
        v = torch.cat([v.new_zeros(1, 1, v.shape[-1]), v], dim=1)
    if v.shape[1] != model.pos_embed.shape[1]:
        prefix = model.num_prefix_tokens
        old = _source_grid(v.shape[1] - prefix, model)
        v = resample_abs_pos_embed(v, new_size=model.grid_size, old_size=old, num_prefix_tokens=prefix,
                                   antialias=model.pos_antialias)
    return v


def _resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """A (L, head_dim) relative position table linearly interpolated to
    ``length`` rows, the resizing of ``get_rel_pos`` in timm's SAM and
    detectron2's ViTDet."""
    return F.interpolate(table.t().unsqueeze(0), size=length, mode='linear').squeeze(0).t().contiguous()


def _source_grid(tokens: int, model: VisionTransformer) -> tuple[int, int]:
    """The (h, w) grid of a checkpoint's ``tokens`` position embeddings: the
    model's ``pretrain_img_size`` when given, else the square grid."""
    given = model.pretrain_grid_size
    if given is not None and math.prod(given) == tokens:
        return given
    side = math.isqrt(tokens)
    if side * side == tokens and given is None:
        return side, side
    hint = (f'pretrain_img_size={tuple(g * model.patch_size for g in given)} gives a {given[0]}x{given[1]} '
            f'grid, not {tokens} positions' if given else 'a non-square grid')
    raise ValueError(f'pos_embed: the checkpoint holds {tokens} patch positions, {hint}; set the backbone\'s '
                     'pretrain_img_size=(H, W) to the size it was trained at (e.g. pretrain_img_size=(512, 1024))')
