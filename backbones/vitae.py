"""ViTAE (Xu, Zhang, Zhang, Tao, NeurIPS 2021) as a pyramid backbone.

ViTAE-T/S are three Reduction Cells (RC, downsampling 4, 2, 2) and an
isotropic stack of Normal Cells (NC) at stride 16. The structure, widths and
parameter names follow the official code (github.com/Annbless/ViTAE, moved to
ViTAE-Transformer/ViTAE-Transformer, ``Image-Classification/vitae/``), so its
ImageNet releases (``ViTAE-T.pth.tar``, ``ViTAE-S.pth.tar``, ...) load as they
are (:meth:`ViTAE.checkpoint_filter`). Official details the paper leaves out
are cited where they are used.

Pyramid levels: /4 after RC1, /8 after RC2, /16 after RC3 and the normal
cells, and /32 from a 2x2 max-pool of the /16 map (ViTDet's
SimpleFeaturePyramid makes its /32 level the same way): parameter-free, so a
classification checkpoint covers the whole backbone.

Any input size: each RC pads its input on the bottom/right up to a multiple of
its downsampling ratio, which both of its branches need to agree on the output
size (for sizes the official code supports, the padding is zero-sized and the
result is the same). Level ``i`` is ``ceil(H / stride_i) x ceil(W / stride_i)``.

Position embeddings: ViTAE-T/S have none. The official ``ViTAE_ViT_basic``
(``vitmodules.py``) adds no class token and no position embedding, and
classifies the mean token; only ViTAE-B/L/H (the ``'embedding'`` RC, plain ViT
patches) carry a learned one. Position comes from the zero-padded convolutions
of the PCMs, so there is nothing to interpolate at other input sizes.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from timm.layers import Attention, DropPath, Mlp
from torch import nn

from densekit.checkpoint import LoadReport, extract_state_dict, load_file, load_state
from densekit.registry import MODELS
from .base import PyramidBackbone
from .fast_paths import channels_last_grads, channels_last_input, channels_last_weights
from .layers import drop_path_rates, init_transformer_weights

# -- reduction cell --------------------------------------------------------------


class PRM(nn.Module):
    """Pyramid Reduction Module: parallel ``k x k`` convolutions with stride
    ``r``, one per dilation rate, each followed by GELU, concatenated on
    channels (dilation-major, the official order).

    Padding per dilation ``d`` is the official ``ceil(((k-1)d + 1 - r) / 2)``
    (``ReductionCell.py``, ``PRM.__init__``), which maps an ``H`` divisible by
    ``r`` to ``H / r`` for every rate.

    (B, C, H, W), H and W multiples of ``r`` -> (B, embed_dims * len(dilations), H/r, W/r).
    """

    def __init__(self, in_chans: int, embed_dims: int, kernel_size: int, stride: int,
                 dilations: Sequence[int]):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_chans, embed_dims, kernel_size, stride,
                                    padding=math.ceil(((kernel_size - 1) * d + 1 - stride) / 2), dilation=d),
                          nn.GELU())
            for d in dilations)
        self.out_chans = embed_dims * len(dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(x) for conv in self.convs], dim=1)


class TokenPerformer(nn.Module):
    """T2T-ViT's single-head Performer token attention + MLP, which the official
    RCs use (``token_performer.py``: ``Token_performer``; its parameter names
    ``kqv``, ``proj``, ``norm1``, ``norm2``, ``mlp``, ``w`` are kept).

    The attention maps ``dim`` input channels to ``out_dim`` and uses its value
    projection as the skip connection (``y = v + proj(attn)``); ``w`` holds the
    fixed orthogonal random features of the softmax kernel. It is a buffer here
    (a frozen ``nn.Parameter`` officially: same state-dict key), so DDP keeps
    it identical on every rank. Dropout 0.1 after ``proj`` and at the end of
    the MLP are the official defaults (``dp1``, ``dp2``; the RC never sets them).
    """

    def __init__(self, dim: int, out_dim: int, kernel_ratio: float = 0.5, drop: float = 0.1):
        super().__init__()
        self.emb = out_dim
        self.kqv = nn.Linear(dim, 3 * out_dim)
        self.dp = nn.Dropout(drop)
        self.proj = nn.Linear(out_dim, out_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(out_dim)
        self.mlp = nn.Sequential(nn.Linear(out_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim),
                                 nn.Dropout(drop))
        m = int(out_dim * kernel_ratio)
        self.register_buffer('w', nn.init.orthogonal_(torch.empty(m, out_dim)) * math.sqrt(m))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """Positive random features of exp(q.k): exp(w x - |x|^2 / 2) / sqrt(m)."""
        w = self.w.float()
        return torch.exp(x @ w.t() - x.square().sum(-1, keepdim=True) / 2) / math.sqrt(w.shape[0])

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, dim), already normalised -> (B, N, out_dim). Linear in N."""
        k, q, v = self.kqv(x).split(self.emb, dim=-1)  # official order: k, q, v
        # in fp32 like the official code (exp overflows in half precision)
        with torch.autocast(x.device.type, enabled=False):
            kp, qp = self._features(k.float()), self._features(q.float())  # (B, N, m)
            normaliser = qp @ kp.sum(1).unsqueeze(-1)  # (B, N, 1)
            y = (qp @ (kp.transpose(1, 2) @ v.float())) / (normaliser + 1e-8)  # (B, N, out_dim)
        return v + self.dp(self.proj(y.to(v.dtype)))


class ReductionCell(nn.Module):
    """RC: PRM -> Performer attention, with the Parallel Convolutional Module
    (PCM) beside them on the cell's input, fused by addition, then the MLP.

    ``x = attn(norm1(PRM(x))) + PCM(x);  x = x + mlp(norm2(x))`` (official
    ``ReductionCell.forward``). The PCM is three 3x3 convolutions whose strides
    multiply to ``r`` (2, 2, 1 for r=4; 2, 1, 1 for r=2) with the official
    layout ``Conv, SiLU, Conv, BN, SiLU, Conv, SiLU`` (keys ``PCM.0/2/3/5``).
    ``with_attention=False`` is the official ``'performer_less'`` RC that
    ViTAE-T/S use last: the PRM alone, no PCM.

    (B, C, H, W), any H, W -> (B, ceil(H/r), ceil(W/r), token_dims).
    """

    def __init__(self, in_chans: int, embed_dims: int, token_dims: int, downsample: int,
                 kernel_size: int, dilations: Sequence[int], with_attention: bool = True, group: int = 1):
        super().__init__()
        if downsample not in (2, 4):
            raise ValueError(f'ReductionCell: downsample must be 2 or 4, got {downsample}')
        self.downsample = downsample
        self.PRM = PRM(in_chans, embed_dims, kernel_size, downsample, dilations)
        if with_attention:
            s = (2, 2, 1) if downsample == 4 else (2, 1, 1)
            self.PCM = nn.Sequential(
                nn.Conv2d(in_chans, embed_dims, 3, s[0], 1, groups=group), nn.SiLU(inplace=True),
                nn.Conv2d(embed_dims, embed_dims, 3, s[1], 1, groups=group), nn.BatchNorm2d(embed_dims),
                nn.SiLU(inplace=True),
                nn.Conv2d(embed_dims, token_dims, 3, s[2], 1, groups=group), nn.SiLU(inplace=True))
            self.attn = TokenPerformer(self.PRM.out_chans, token_dims)
        elif self.PRM.out_chans != token_dims:
            raise ValueError(f'ReductionCell without attention: PRM gives {self.PRM.out_chans} '
                             f'channels (embed_dims x dilations), token_dims is {token_dims}')
        else:
            self.PCM = self.attn = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.downsample
        pad_h, pad_w = -x.shape[2] % r, -x.shape[3] % r
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        tokens = self.PRM(x)
        B, _, H, W = tokens.shape
        if self.attn is None:
            return tokens.permute(0, 2, 3, 1)
        attn = self.attn
        y = attn.attention(attn.norm1(tokens.flatten(2).transpose(1, 2))) + self.PCM(x).flatten(2).transpose(1, 2)
        y = y + attn.mlp(attn.norm2(y))
        return y.reshape(B, H, W, -1)


# -- normal cell -----------------------------------------------------------------


class NormalCell(nn.Module):
    """NC: multi-head self-attention with a PCM in parallel, fused by
    addition, then the FFN (official ``NormalCell.forward``)::

        x = x + drop_path(MHSA(norm1(x))) + drop_path(PCM(x))
        x = x + drop_path(MLP(norm2(x)))

    The PCM sees the un-normalised tokens as a map: grouped 3x3 convolutions
    ``dim -> dim*mlp_ratio -> dim -> dim`` with the official layout
    ``Conv, BN, SiLU, Conv, BN, SiLU, Conv, SiLU`` (keys ``PCM.0/1/3/4/6``).

    (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, group: int, qkv_bias: bool = True,
                 drop: float = 0., attn_drop: float = 0., drop_path: float = 0.):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)  # official norm_layer: LayerNorm(eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden, drop=drop)
        self.PCM = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, 1, 1, groups=group), nn.BatchNorm2d(hidden), nn.SiLU(inplace=True),
            nn.Conv2d(hidden, dim, 3, 1, 1, groups=group), nn.BatchNorm2d(dim), nn.SiLU(inplace=True),
            nn.Conv2d(dim, dim, 3, 1, 1, groups=group), nn.SiLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        # two independent drop-path draws, the PCM's first, as officially
        conv = self.drop_path(self.PCM(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        x = x + self.drop_path(self.attn(self.norm1(x).reshape(B, H * W, C)).view(B, H, W, C)) + conv
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViTAELayer(nn.Module):
    """One official ``BasicLayer``: a reduction cell, then ``depth`` normal cells."""

    def __init__(self, RC: ReductionCell, NC: Sequence[NormalCell]):
        super().__init__()
        self.RC = RC
        self.NC = nn.ModuleList(NC)


# -- model -----------------------------------------------------------------------


@MODELS.register_module()
class ViTAE(PyramidBackbone):
    """ViTAE backbone returning NCHW maps at strides 4/8/16/32.

    Args:
        arch: 'tiny' | 'small' (the paper's ViTAE-T/S), '6m' (the official
            ViTAE-6M release), or a dict with the keys of :attr:`arch_settings`.
        out_indices: levels to return: 0 (/4, RC1), 1 (/8, RC2),
            2 (/16, RC3 + normal cells), 3 (/32, max-pooled level 2).
        drop_rate, attn_drop_rate: dropout in the normal cells.
        drop_path_rate: stochastic depth over the normal cells, rising linearly.
        frozen_stages: -1 freezes nothing; k >= 0 keeps the layers producing
            levels 0..k in eval mode without gradients (0: RC1).
        with_cp: gradient checkpointing of every cell. BatchNorm statistics in
            the PCMs are updated once more by the recomputation (as in any
            checkpointed CNN); gradients are unchanged.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='ViTAE-S.pth.tar')``.
    """

    # Official ViTAE.py (ViTAE-Transformer/ViTAE-Transformer,
    # Image-Classification/vitae/ViTAE.py: ViTAE_basic_Tiny/_6M/_Small).
    # Shared by all (ViTAE_ViT_basic defaults and the constructors):
    # downsampling (4, 2, 2), PRM kernels (7, 3, 3), dilations ([1,2,3,4],
    # [1,2,3], [1,2]), RC tokens types ['performer', 'performer',
    # 'performer_less'], one RC head, RC groups 1, no normal cells before RC3.
    arch_settings = {
        'tiny': dict(embed_dims=(64, 64, 128), token_dims=(64, 64, 256), depth=7, num_heads=4,
                     mlp_ratio=2., group=64),
        '6m': dict(embed_dims=(64, 64, 128), token_dims=(64, 64, 256), depth=10, num_heads=4,
                   mlp_ratio=2., group=64),
        'small': dict(embed_dims=(64, 64, 192), token_dims=(96, 192, 384), depth=14, num_heads=6,
                      mlp_ratio=3., group=96),
    }
    downsample_ratios = (4, 2, 2)
    kernel_sizes = (7, 3, 3)
    dilations = ((1, 2, 3, 4), (1, 2, 3), (1, 2))

    def __init__(self, arch: str | dict = 'small', in_channels: int = 3, qkv_bias: bool = True,
                 drop_rate: float = 0., attn_drop_rate: float = 0., drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 with_cp: bool = False, init_cfg: dict | None = None):
        super().__init__(out_indices, frozen_stages, with_cp, init_cfg)
        if isinstance(arch, str):
            if arch not in self.arch_settings:
                raise KeyError(f"ViTAE: unknown arch '{arch}', expected one of "
                               f'{sorted(self.arch_settings)} or a dict')
            arch = self.arch_settings[arch]
        embed, tokens = tuple(arch['embed_dims']), tuple(arch['token_dims'])
        self.num_levels = 4
        self.level_channels = (*tokens, tokens[-1])
        self.level_strides = (4, 8, 16, 32)
        self._check_levels()

        in_chans = (in_channels, *tokens[:-1])
        dpr = drop_path_rates(drop_path_rate, [arch['depth']])[0]
        self.layers = nn.ModuleList()
        for i in range(3):
            rc = ReductionCell(in_chans[i], embed[i], tokens[i], self.downsample_ratios[i],
                               self.kernel_sizes[i], self.dilations[i], with_attention=i < 2)
            ncs = [NormalCell(tokens[i], arch['num_heads'], arch['mlp_ratio'], arch['group'], qkv_bias,
                              drop_rate, attn_drop_rate, dpr[j]) for j in range(arch['depth'])] if i == 2 else []
            self.layers.append(ViTAELayer(rc, ncs))
        self.downsample = nn.MaxPool2d(2, 2, ceil_mode=True)  # level 3 (/32)
        # channels-last also makes the cells' moves between token maps (B, H, W, C)
        # and conv maps (B, C, H, W) free permutes
        channels_last_weights(self)

    def reset_parameters(self) -> None:
        # official ViTAE_ViT_basic._init_weights; convolutions keep PyTorch's default
        init_transformer_weights(self)

    def unused_modules(self) -> list[str]:
        # level i < 3 is layer i's output; level 3 pools layer 2's
        return [f'layers.{i}' for i in range(max(self.out_indices) + 1, len(self.layers))]

    def frozen_modules(self, upto: int) -> list[nn.Module]:
        return list(self.layers[:upto + 1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: (B, in_channels, H, W), any H, W. Returns one
        (B, C_i, ceil(H/s_i), ceil(W/s_i)) map per ``out_indices`` entry,
        s_i in 4/8/16/32."""
        outs, last = [], max(self.out_indices)
        x = channels_last_input(x)
        for i, layer in enumerate(self.layers):
            x = self.run_block(layer.RC, x)  # B, H, W, C
            for cell in layer.NC:
                x = self.run_block(cell, x)
            x = x.permute(0, 3, 1, 2)  # NCHW, channels-last memory: the next RC's input, or an output
            if i in self.out_indices:
                outs.append(x)
            if i == last:
                return channels_last_grads(tuple(outs))
        outs.append(self.downsample(x))
        return channels_last_grads(tuple(outs))

    # -- checkpoints ---------------------------------------------------------
    @staticmethod
    def checkpoint_filter(state_dict: dict, model: 'ViTAE') -> dict:
        """Official release / DenseKit ViTAE weights -> our keys.

        The module names are the official ones (``layers.i.RC.{PRM,PCM,attn}``,
        ``layers.2.NC.j.*``), so only the classifier (``head.*``) is set aside
        and a DDP ``module.`` prefix removed.
        """
        out: dict = {}
        for k, v in state_dict.items():
            k = k.removeprefix('module.')
            out[k] = None if k.startswith('head.') else v
        return out

    def load_pretrained(self, path: str, prefix: str | None = None, strict: bool = False) -> LoadReport:
        """Load ``path``; from a timm training checkpoint (the official
        ``*.pth.tar``) the EMA weights ``state_dict_ema`` are taken when
        present, as the official ``validate.py`` does (timm
        ``load_checkpoint(model, path, use_ema=args.model_ema)``, default on),
        else ``state_dict``."""
        obj = load_file(path)
        if isinstance(obj, dict) and isinstance(obj.get('state_dict_ema'), dict):
            obj = obj['state_dict_ema']
        state = extract_state_dict(obj, prefix)
        if not state:
            raise ValueError(f'{path}: no weights found' + (f" under prefix '{prefix}'" if prefix else ''))
        return load_state(self, state, self.checkpoint_filter, str(path), strict)
