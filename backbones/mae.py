"""MAE-pretrained ViT (He et al., CVPR 2022): the encoder, its pretraining, and
layer-wise lr decay fine-tuning.

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

:class:`MAEPretrainViT` is the same encoder in MAE pretraining: it masks
patches at random and encodes only the visible ones, with the interface of
mmpretrain's ``MAEViT`` (``backbone(inputs) -> (latent, mask, ids_restore)``),
so mmpretrain's ``MAE`` model, ``MAEPretrainDecoder`` and ``MAEPretrainHead``
train it, and its weights are those :class:`MAEViT` loads for segmentation and
detection (configs/mae/mae_vit-b16_400e_imagenet.py).
"""
from __future__ import annotations

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from timm.layers import resample_abs_pos_embed
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


# -- pretraining ---------------------------------------------------------------
def random_masking(tokens: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking (``random_masking`` of the release and
    of mmpretrain's ``MAEViT``): keep the ``int(L * (1 - mask_ratio))`` tokens
    of lowest ``noise``.

    Args:
        tokens: (B, L, C).
        mask_ratio: fraction of the L tokens to mask.
        noise: (B, L); None draws ``torch.rand(B, L)`` as the references do.

    Returns:
        visible (B, L_keep, C), in ascending noise order; mask (B, L), 1 for a
        masked token and 0 for a visible one, in the original order;
        ids_restore (B, L), the argsort that undoes the shuffle.
    """
    B, L, C = tokens.shape
    keep = int(L * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(B, L, device=tokens.device)
    ids_shuffle = noise.argsort(dim=1)  # ascending: the lowest noise is kept
    ids_restore = ids_shuffle.argsort(dim=1)
    visible = tokens.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, C))
    mask = torch.ones(B, L, device=tokens.device)
    mask[:, :keep] = 0
    return visible, mask.gather(1, ids_restore), ids_restore


@MODELS.register_module()
class MAEPretrainViT(MAEViT):
    """The MAE encoder in pretraining: :class:`MAEViT` (every block, the final
    norm) encoding only the patches left visible by random masking.

    The state dict is the encoder's as :class:`MAEViT` and the segmentation and
    detection recipes load it; nothing is added. The fixed 2-D sin-cos position
    embedding is not trained here (as in MAE), and drop path defaults to 0.

    Args:
        arch, img_size: as :class:`~backbones.vit.VisionTransformer`;
            ``img_size`` must be the size the decoder's ``num_patches`` is for.
        mask_ratio: fraction of patches masked, in (0, 1); MAE uses 0.75.
        **kwargs: as :class:`~backbones.vit.VisionTransformer`, except
            ``out_indices`` and ``out_norm`` (the last block, normed).

    Raises:
        ValueError: ``mask_ratio`` outside (0, 1), or so high that no patch of
            the ``img_size`` grid stays visible.
    """

    def __init__(self, arch: str | dict = 'base', img_size: int | tuple[int, int] = 224,
                 mask_ratio: float = 0.75, drop_path_rate: float = 0., **kwargs):
        if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0 < mask_ratio < 1:
            raise ValueError(f'model.backbone.mask_ratio={mask_ratio!r} must lie in (0, 1): the fraction of '
                             'patches masked in pretraining (MAE uses 0.75)')
        depth = self.resolve_arch(arch)['depth']
        super().__init__(arch, img_size=img_size, drop_path_rate=drop_path_rate, out_indices=(depth - 1,),
                         out_norm='last', **kwargs)
        patches = self.grid_size[0] * self.grid_size[1]
        if int(patches * (1 - mask_ratio)) < 1:
            raise ValueError(f'model.backbone.mask_ratio={mask_ratio} leaves no visible patch of the '
                             f'{patches} at img_size={img_size}: lower it (MAE uses 0.75)')
        self.mask_ratio = mask_ratio
        self.pos_embed.requires_grad = False  # MAE's fixed sin-cos embedding

    def forward(self, x: torch.Tensor, mask: bool | None = True, noise: torch.Tensor | None = None):
        """x: (B, 3, H, W).

        With ``mask`` (pretraining): returns latent (B, 1 + L_keep, C), the
        class token and the visible patches after the final norm; mask (B, L),
        1 where a patch was masked; ids_restore (B, L) (:func:`random_masking`,
        given ``noise`` (B, L) or drawing it). L = (H/p)(W/p).
        With ``mask=None`` or False: the (B, C, H/p, W/p) map of the last
        block after the final norm, as :class:`MAEViT`.
        """
        if mask is None or mask is False:
            return super().forward(x)
        x = self.patch_embed(x)  # B, h, w, C
        B, h, w, C = x.shape
        pos = resample_abs_pos_embed(self.pos_embed, new_size=(h, w), old_size=self.grid_size,
                                     num_prefix_tokens=1, antialias=self.pos_antialias)
        x, mask, ids_restore = random_masking(x.reshape(B, h * w, C) + pos[:, 1:], self.mask_ratio, noise)
        x = torch.cat([(self.cls_token + pos[:, :1]).expand(B, -1, -1), x], dim=1)
        x = self.pos_drop(x)
        for block in self.blocks:
            x = self.run_block(block, x)
        return self.norm(x), mask, ids_restore
