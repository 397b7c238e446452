"""MAE-pretrained ViT (He et al., CVPR 2022) and layer-wise lr decay fine-tuning.

The MAE encoder is a plain ViT, so :class:`MAEViT` only specialises
:class:`~backbones.vit.VisionTransformer`: the release's decoder and mask token
are ignored on load, a random initialisation follows MAE (fixed 2-D sin-cos
position embedding, xavier-uniform linears), and the defaults are those of
MAE/BEiT segmentation (drop path 0.1, blocks 3/5/7/11 of ViT-B).

:class:`LayerDecayOptimWrapperConstructor` is the layer-wise learning-rate
decay that BEiT and MAE fine-tuning use, for any backbone with a
``get_layer_depth`` (our ViTs). mmseg's ``LearningRateDecayOptimizerConstructor``
cannot serve: it finds blocks by mmseg's names (``backbone.layers.N``), so it
would give all our blocks the head's rate, and it decays ``pos_embed`` and
``cls_token`` (it compares them without the ``backbone.`` prefix). mmpretrain's
asks the whole model for ``get_layer_depth``, which mmseg's ``EncoderDecoder``
lacks.
"""
from __future__ import annotations

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from densekit.registry import MODELS
from .vit import VisionTransformer


def sincos_pos_embed_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """MAE's fixed position embedding (``get_2d_sincos_pos_embed`` of the
    release, with a zero class-token row): (1, 1 + gh * gw, dim)."""
    gh, gw = grid
    w, h = np.meshgrid(np.arange(gw, dtype=np.float64), np.arange(gh, dtype=np.float64))
    omega = 1. / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))

    def embed_1d(pos):
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([embed_1d(w), embed_1d(h)], axis=1)  # the release embeds w first
    emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0)


@MODELS.register_module()
class MAEViT(VisionTransformer):
    """ViT for MAE-pretrained encoders (official ``mae_pretrain_vit_*.pth``,
    timm ``vit_*_patch16_224.mae``); arguments as :class:`VisionTransformer`,
    with drop path 0.1 and, by default, the four blocks that MAE/BEiT
    segmentation use (3/5/7/11 of ViT-B, 7/11/15/23 of ViT-L; else the last).
    ViTDet's detector fine-tunes it with ``window_size=14``,
    ``global_attn_indexes=(2, 5, 8, 11)``, ``use_rel_pos=True`` and
    ``out_indices=(11,)``: the pretraining release loads into it unchanged."""

    # the blocks that BEiT and MAE segmentation feed to the pyramid (ViT-B, ViT-L)
    default_out_indices = {12: (3, 5, 7, 11), 24: (7, 11, 15, 23)}

    def __init__(self, arch: str | dict = 'base', drop_path_rate: float = 0.1,
                 out_indices=None, **kwargs):
        if out_indices is None:
            depth = self.resolve_arch(arch)['depth']
            out_indices = self.default_out_indices.get(depth, (depth - 1,))
        super().__init__(arch, drop_path_rate=drop_path_rate, out_indices=out_indices, **kwargs)

    def reset_parameters(self) -> None:
        """MAE's initialisation (``initialize_weights`` of the release)."""
        super().reset_parameters()
        pos = sincos_pos_embed_2d(self.pos_embed.shape[-1], self.grid_size)
        self.pos_embed.data.copy_(pos[:, 1 - self.num_prefix_tokens:])  # ViTDet style: no class row
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=.02)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)

    @staticmethod
    def checkpoint_filter(state_dict: dict, model: 'MAEViT') -> dict:
        """The pretraining release's decoder and mask token map to None; the
        encoder converts as :meth:`VisionTransformer.checkpoint_filter`."""
        drop = [k for k in state_dict if k.startswith(('decoder_', 'mask_token'))]
        out = VisionTransformer.checkpoint_filter({k: v for k, v in state_dict.items() if k not in drop}, model)
        out.update(dict.fromkeys(drop))
        return out


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Layer-wise learning-rate decay (BEiT, MAE fine-tuning).

    With ``(d, n) = backbone.get_layer_depth(name)`` a parameter's lr is
    ``base_lr * layer_decay_rate ** (n - 1 - d)``: for a ViT of L blocks,
    block i gets ``base_lr * rate ** (L - i)``, the embeddings ``rate ** (L + 1)``
    and the neck and heads ``base_lr``. One-dimensional parameters (norms,
    biases, layer scales), ``pos_embed``, ``cls_token`` and ``mask_token``
    have no weight decay.

    Config (any toolbox scope)::

        optim_wrapper = dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.65))
    """

    NO_DECAY = ('pos_embed', 'cls_token', 'mask_token')

    def add_params(self, params: list, module: nn.Module, **kwargs) -> None:
        backbone = getattr(module, 'backbone', module)
        if not hasattr(backbone, 'get_layer_depth'):
            raise TypeError(f'LayerDecayOptimWrapperConstructor: {type(backbone).__name__} has no '
                            'get_layer_depth(param_name, prefix); layer-wise decay needs one')
        prefix = 'backbone.' if backbone is not module else ''
        rate = self.paramwise_cfg.get('layer_decay_rate', 1.0)
        base_wd = self.base_wd or 0.
        groups: dict[str, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            no_decay = param.ndim == 1 or name.split('.')[-1] in self.NO_DECAY
            depth, num = backbone.get_layer_depth(name, prefix=prefix)
            key = f'layer_{depth}_{"no_decay" if no_decay else "decay"}'
            if key not in groups:
                scale = rate ** (num - 1 - depth)
                groups[key] = dict(params=[], lr=self.base_lr * scale, lr_scale=scale,
                                   weight_decay=0. if no_decay else base_wd)
            groups[key]['params'].append(param)
        print_log('LayerDecayOptimWrapperConstructor: ' + ', '.join(
            f'{k}: lr_scale {g["lr_scale"]:.3g}, {len(g["params"])} params' for k, g in groups.items()),
            logger='current')
        params.extend(groups.values())
