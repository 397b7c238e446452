"""CoAtNet (Dai et al., NeurIPS 2021) as a pyramid backbone, on timm's blocks.

C-C-T-T: S0 a two-conv stem (stride 2); S1, S2 MBConv blocks with
squeeze-excitation (strides 4, 8); S3, S4 pre-norm transformer blocks with a
2D relative-position bias per head (strides 16, 32). The pyramid is S1..S4.
The blocks are timm's (``timm.models.maxxvit``: ``Stem``, ``MbConvBlock``,
``TransformerBlock2d``, ``RelPosBias``) built from timm's own configs, so the
weights keep timm's names and :meth:`CoAtNet.checkpoint_filter` only renames
the relative-position table (``attn.rel_pos.`` -> ``rel_pos.``).

Two things timm fixes at construction are made to work for any input size:

* **Odd sizes.** A stride-2 block pools its shortcut with a 2x2 average pool
  (floor) while its strided 3x3 conv gives ceil(n/2), so timm fails on odd
  maps. Those 2x2 pools run with ``ceil_mode=True`` (the last row/column is
  averaged over the pixels that exist); every map is ceil(H/s) x ceil(W/s).
  On even sizes nothing changes.
* **Relative position bias at other map sizes.** CoAtNet's transformer stages
  attend over the whole stage map, and timm's ``RelPosBias`` holds one table
  of (2h-1)(2w-1) offsets for the map size of the pretraining resolution (14x14
  and 7x7 at 224). Here the table stays that size (``pretrain_img_size``) and
  each forward resamples it to the actual map, with timm's
  ``resize_rel_pos_bias_table`` -- what timm's ``checkpoint_filter_fn`` and
  ``set_input_size`` apply once when a model is built for another size: BEiT's
  geometric-progression spacing (near offsets keep their values, far ones are
  stretched; offsets beyond the table take the edge value), linearly
  interpolated -- not bicubic, unless ``TIMM_USE_SCIPY_INTERP=1``. The
  resampling is linear and separable, so it is applied as two per-axis
  matrices (computed once per size with timm's function, cached per device),
  which keeps it on the device and differentiable: the stored table is what
  trains, and outputs equal those of a timm model built for that size.
  Cost: one (heads, 2H-1, 2W-1) einsum per transformer block (negligible)
  plus the (heads, N, N) bias that global attention with a relative bias
  needs at any size, N = H*W of the stage map; attention itself is O(N^2).
  In inference the bias is kept per map size (rebuilt when weights change).
  At 512x512 input S3 has N=1024 (CoAtNet-0: 12 heads, a 50 MB fp32 bias per
  block); at 2048x1024 N=8192 (3.2 GB per block): use sliding-window
  inference for such inputs rather than whole-image.

Checkpoints: the official CoAtNet code is TensorFlow and there are no official
PyTorch weights, so timm's layout is the reference: timm ``coatnet_{0..3}_224``
(paper configs, no weights) and ``coatnet_{0..3}_rw_224`` (timm's variants,
with weights) load through :meth:`CoAtNet.checkpoint_filter`, as do timm
``features_only`` models, DenseKit's own checkpoints and mmseg/mmdet model
checkpoints (``prefix='backbone.'``).

MBConv stages use timm's ``BatchNormAct2d`` (BatchNorm + activation). mmengine's
``sync_bn`` conversion would replace it by a plain SyncBatchNorm and drop the
activation; convert with ``timm.layers.convert_sync_batchnorm`` instead.
"""
from __future__ import annotations

import dataclasses
import re
from functools import partial
from typing import Sequence

import torch
from timm.layers import RelPosBias, calculate_drop_path_rates, get_norm_layer, resize_rel_pos_bias_table
from timm.models.maxxvit import Attention2d, MaxxVitCfg, MbConvBlock, Stem, TransformerBlock2d, model_cfgs
from torch import nn

from densekit.registry import MODELS
from .base import PyramidBackbone
from .fast_paths import cached_for_inference, channels_last_grads, channels_last_input, channels_last_weights
from .layers import TableBias, biased_attention, pair_index, size_cache

# -- relative position bias for any map size -----------------------------------


@size_cache(64)
def _axis_resamplers(window: tuple[int, int], size: tuple[int, int],
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-axis matrices (2H-1, 2h-1) and (2W-1, 2w-1) of timm's table resampling
    from a ``window`` (h, w) table to a ``size`` (H, W) one.

    ``resize_rel_pos_bias_table`` interpolates each head separately and
    linearly along each axis, so resampling indicator "heads" (one per source
    row, one per source column) yields the two matrices exactly."""
    (h, w), (H, W) = window, size
    sh, sw, dh, dw = 2 * h - 1, 2 * w - 1, 2 * H - 1, 2 * W - 1
    # cached tensors are later saved for backward: never make them inference tensors
    with torch.inference_mode(False), torch.no_grad():
        rows = torch.eye(sh).repeat_interleave(sw, dim=0)  # (sh*sw, sh): 1 where row == i
        cols = torch.eye(sw).repeat(sh, 1)  # (sh*sw, sw): 1 where column == j
        out = resize_rel_pos_bias_table(torch.cat([rows, cols], 1), new_window_size=(H, W),
                                        new_bias_shape=(dh * dw, sh + sw), old_window_size=(h, w))
        out = out.view(dh, dw, sh + sw)
        return out[:, 0, :sh].contiguous().to(device), out[0, :, sh:].contiguous().to(device)


@size_cache(8)
def _offset_index(size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(N, N) index into a (2H-1) x (2W-1) offset table, flattened, of every
    (query, key) pair of an H x W map, N = H*W (8 MB at N = 1024, once per size)."""
    H, W = size
    with torch.inference_mode(False):
        ry, rx = torch.arange(H, device=device), torch.arange(W, device=device)
        dy = ry[:, None] - ry[None, :] + H - 1  # (Hq, Hk)
        dx = rx[:, None] - rx[None, :] + W - 1  # (Wq, Wk)
        return pair_index(dy, dx, 2 * W - 1)


class RelPosBias2d(RelPosBias):
    """timm's ``RelPosBias`` (table sized for ``window_size``, the stage map at
    the pretraining resolution) that also gives the bias for any map size."""

    def bias_for(self, size: tuple[int, int]) -> torch.Tensor:
        """(1, heads, H*W, H*W) additive attention bias for an H x W map; kept
        per size for inference (it depends only on the table)."""
        # the key as ints; the recipe gets the sizes as they are (traced ones while exporting to ONNX)
        return cached_for_inference(self, (int(size[0]), int(size[1])), self.relative_position_bias_table,
                                    lambda: self.bias_recipe(size).materialize())

    def bias_recipe(self, size: tuple[int, int]) -> TableBias:
        """The bias for an H x W map as a :class:`layers.TableBias`: the table
        resampled to the map's (2H-1) x (2W-1) offsets, per head, and the
        index of every (query, key) pair's offset: training rebuilds it from these."""
        h, w = self.window_size
        table = self.relative_position_bias_table.view(2 * h - 1, 2 * w - 1, -1)
        if tuple(size) == (h, w):
            table = table.permute(2, 0, 1)
        else:
            ry, rx = _axis_resamplers((h, w), tuple(size), table.device)
            table = torch.einsum('ys,xt,sth->hyx', ry.to(table.dtype), rx.to(table.dtype), table)
        return TableBias(table.reshape(table.shape[0], -1), _offset_index(tuple(size), table.device))


class BiasedAttention2d(Attention2d):
    """timm's ``Attention2d`` with the shared bias through :func:`layers.biased_attention`.

    Why: timm hands SDPA a bias that needs a gradient in training, which sends
    it to the CPU math fallback; that keeps the softmax output of every block
    (heads x N x N: 8 x 1024 x 1024 floats per stage-3 block at 512) and adds
    NaN guards over each map. Ours runs the fused kernel and recomputes the
    map in the backward, and in training takes the bias as its table and
    index (:class:`layers.TableBias`) so that the (heads, N, N) bias is not
    kept either (at batch 1 it is as large as the map). Same parameters, same
    outputs.
    """

    def forward(self, x: torch.Tensor, shared_rel_pos: torch.Tensor | TableBias | None = None) -> torch.Tensor:
        if shared_rel_pos is None or self.rel_pos is not None:  # not how CoAtTransformerBlock calls it
            return super().forward(x, shared_rel_pos)
        B, _, H, W = x.shape
        if self.head_first:
            q, k, v = self.qkv(x).view(B, self.num_heads, self.dim_head * 3, -1).chunk(3, dim=2)
        else:
            q, k, v = self.qkv(x).reshape(B, 3, self.num_heads, self.dim_head, -1).unbind(1)
        x = biased_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2), shared_rel_pos,
                             self.attn_drop.p if self.training else 0.)
        return self.proj_drop(self.proj(x.transpose(-1, -2).reshape(B, -1, H, W)))


class CoAtTransformerBlock(TransformerBlock2d):
    """timm's ``TransformerBlock2d`` (pre-norm, pooled shortcut when strided)
    with global attention over a map of any size: the bias for the map's size
    enters through timm's ``shared_rel_pos`` argument."""

    def __init__(self, dim: int, dim_out: int, stride: int, window: tuple[int, int], cfg, drop_path: float):
        super().__init__(dim, dim_out, stride=stride, rel_pos_cls=None, cfg=cfg, drop_path=drop_path)
        self.stride = stride
        self.rel_pos = RelPosBias2d(window_size=window, num_heads=self.attn.num_heads)
        self.attn.__class__ = BiasedAttention2d  # built by timm's __init__; only forward differs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if self.stride == 2:  # attention runs after norm1's 2x pooling (ceil)
            H, W = (H + 1) // 2, (W + 1) // 2
        # in training the attention rebuilds the (heads, N, N) bias in its backward
        bias = self.rel_pos.bias_recipe((H, W)) if torch.is_grad_enabled() else self.rel_pos.bias_for((H, W))
        return super().forward(x, shared_rel_pos=bias)


class CoAtStage(nn.Module):
    """One stage: ``blocks``, the first of which halves the map."""

    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


def _ceil_mode_pools(module: nn.Module) -> None:
    """2x2/stride-2 pools (timm's 'avg2'/'max2' shortcuts and downsamplers)
    round up, like the strided convs beside them, so odd maps keep both paths
    the same size. 3x3/stride-2/pad-1 pools already give ceil(n/2)."""
    for m in module.modules():
        if type(m) in (nn.AvgPool2d, nn.MaxPool2d) and m.kernel_size in (2, (2, 2)) \
                and m.stride in (2, (2, 2)) and m.padding in (0, (0, 0)):
            m.ceil_mode = True


# -- model ---------------------------------------------------------------------


@MODELS.register_module()
class CoAtNet(PyramidBackbone):
    """CoAtNet backbone returning NCHW maps of S1..S4 at strides 4/8/16/32.

    Args:
        arch: '0' | '1' | '2' | '3' (the paper's CoAtNet-0..3, timm
            ``coatnet_N_224``), '0-rw' | '1-rw' | '2-rw' | '3-rw' (timm's
            ``coatnet_N_rw_224``, which have released weights), a timm config
            name (``'coatnet_0_rw_224'``), a ``timm.models.maxxvit.MaxxVitCfg``,
            or a dict with ``embed_dims`` (S1..S4), ``depths``, ``stem_width``
            and optional ``base`` (an arch name, default '0') and
            ``conv_*``/``transformer_*`` overrides of timm's block configs.
        in_channels: input channels.
        pretrain_img_size: input size the relative-position tables are sized
            for (224 for timm's weights); other sizes resample them per forward.
        drop_path_rate: stochastic depth, rising linearly over all blocks.
        attn_drop_rate: attention dropout of the transformer blocks.
        out_indices: levels to return, 0..3 for S1..S4.
        out_norm: 'none' returns the stages' outputs as they are; 'last' adds
            the pretrained final norm to S4 (timm's ``norm``, present in the
            ``-rw`` variants; the paper configs keep theirs in the classifier
            head); 'all' adds a norm to every returned level (new, except S4's).
        frozen_stages: -1 none; 0 the stem (S0); i > 0 also S1..Si.
        with_cp: gradient checkpointing of each block.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='model.safetensors')``;
            timm, DenseKit and mmseg/mmdet (``prefix='backbone.'``) layouts load.
    """

    arch_settings = {
        '0': 'coatnet_0', '1': 'coatnet_1', '2': 'coatnet_2', '3': 'coatnet_3',
        '0-rw': 'coatnet_0_rw', '1-rw': 'coatnet_1_rw', '2-rw': 'coatnet_2_rw', '3-rw': 'coatnet_3_rw',
    }

    def __init__(self, arch: str | dict | MaxxVitCfg = '0', in_channels: int = 3,
                 pretrain_img_size: int | Sequence[int] = 224, drop_path_rate: float = 0.1,
                 attn_drop_rate: float = 0., out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm: str = 'all', frozen_stages: int = -1, with_cp: bool = False,
                 init_cfg: dict | None = None):
        super().__init__(out_indices, frozen_stages, with_cp, init_cfg)
        cfg = self.resolve_arch(arch)
        if out_norm not in ('none', 'last', 'all'):
            raise ValueError(f"CoAtNet: out_norm must be 'none', 'last' or 'all', got {out_norm!r}")
        if attn_drop_rate:
            cfg = dataclasses.replace(cfg, transformer_cfg=dataclasses.replace(
                cfg.transformer_cfg, attn_drop=attn_drop_rate))
        self.cfg = cfg
        self.num_levels = 4
        self.level_channels = tuple(cfg.embed_dim)
        self.level_strides = (4, 8, 16, 32)
        self._check_levels()

        conv = cfg.conv_cfg
        self.stem = Stem(in_channels, cfg.stem_width, padding=conv.padding, bias=cfg.stem_bias,
                         act_layer=conv.act_layer, norm_layer=conv.norm_layer, norm_eps=conv.norm_eps)
        # stage map sizes at the pretraining resolution, as timm computes them
        size = pretrain_img_size if isinstance(pretrain_img_size, Sequence) else (pretrain_img_size,) * 2
        feat = tuple(int(s) // 2 for s in size)
        dpr = calculate_drop_path_rates(drop_path_rate, list(cfg.depths), stagewise=True)  # linear over all blocks
        stages, in_chs = [], self.stem.out_chs
        for i, (kind, depth, out_chs) in enumerate(zip(cfg.block_type, cfg.depths, cfg.embed_dim)):
            feat = tuple((r - 1) // 2 + 1 for r in feat)
            blocks = []
            for j in range(depth):
                dim, stride = (in_chs, 2) if j == 0 else (out_chs, 1)
                if kind == 'C':
                    blocks.append(MbConvBlock(dim, out_chs, stride=stride, cfg=conv, drop_path=dpr[i][j]))
                else:
                    blocks.append(CoAtTransformerBlock(dim, out_chs, stride, feat, cfg.transformer_cfg, dpr[i][j]))
            stages.append(CoAtStage(blocks))
            in_chs = out_chs
        self.stages = nn.ModuleList(stages)
        _ceil_mode_pools(self)

        tcfg = cfg.transformer_cfg
        norm_layer = partial(get_norm_layer(tcfg.norm_layer), eps=tcfg.norm_eps)
        normed = self.out_indices if out_norm == 'all' else [self.num_levels - 1] if out_norm == 'last' else []
        for i in normed:
            self.add_module(f'norm{i}', norm_layer(self.level_channels[i]))
        channels_last_weights(self)

    @classmethod
    def resolve_arch(cls, arch: str | dict | MaxxVitCfg) -> MaxxVitCfg:
        """The timm ``MaxxVitCfg`` that ``arch`` names, checked to be a C-C-T-T CoAtNet."""
        if isinstance(arch, int) and not isinstance(arch, bool):
            arch = str(arch)  # --cfg-options model.backbone.arch=1 arrives as an int
        if isinstance(arch, MaxxVitCfg):
            cfg = arch
        elif isinstance(arch, str):
            name = cls.arch_settings.get(arch, re.sub(r'_\d+$', '', arch))
            if name not in model_cfgs or not name.startswith('coatnet_'):
                raise KeyError(f"CoAtNet: unknown arch '{arch}', expected one of {sorted(cls.arch_settings)}, "
                               f'a timm coatnet config name, a MaxxVitCfg or a dict')
            cfg = model_cfgs[name]
        elif isinstance(arch, dict):
            arch = dict(arch)
            cfg = cls.resolve_arch(arch.pop('base', '0'))
            fields = {'embed_dims': 'embed_dim', 'depths': 'depths', 'stem_width': 'stem_width'}
            base = {fields[k]: tuple(v) if isinstance(v, (list, tuple)) else v
                    for k, v in arch.items() if k in fields}
            conv = {k[len('conv_'):]: v for k, v in arch.items() if k.startswith('conv_')}
            trans = {k[len('transformer_'):]: v for k, v in arch.items() if k.startswith('transformer_')}
            unknown = set(arch) - set(fields) - {f'conv_{k}' for k in conv} - {f'transformer_{k}' for k in trans}
            if unknown:
                raise KeyError(f'CoAtNet: unknown arch keys {sorted(unknown)}; expected {sorted(fields)}, '
                               f"'base', 'conv_*' or 'transformer_*'")
            cfg = dataclasses.replace(cfg, **base, conv_cfg=dataclasses.replace(cfg.conv_cfg, **conv),
                                      transformer_cfg=dataclasses.replace(cfg.transformer_cfg, **trans))
        else:
            raise TypeError(f'CoAtNet: arch must be a str, dict or MaxxVitCfg, got {type(arch).__name__}')
        problems = []
        if tuple(cfg.block_type) != ('C', 'C', 'T', 'T'):
            problems.append(f"block_type {cfg.block_type} (only ('C', 'C', 'T', 'T'))")
        if len(cfg.depths) != 4 or len(cfg.embed_dim) != 4:
            problems.append('4 stages needed')
        if cfg.conv_cfg.block_type != 'mbconv':
            problems.append(f"conv block_type '{cfg.conv_cfg.block_type}' (only 'mbconv')")
        if cfg.transformer_cfg.rel_pos_type != 'bias':
            problems.append(f"rel_pos_type '{cfg.transformer_cfg.rel_pos_type}' (only 'bias')")
        if problems:
            raise ValueError('CoAtNet: unsupported config: ' + '; '.join(problems))
        return cfg

    def reset_parameters(self) -> None:
        """timm's initialisation of these blocks (``MaxxVit`` with the config's
        ``weight_init``), then fresh relative-position tables and output norms."""
        scheme = self.cfg.weight_init
        for m in self.modules():
            if isinstance(m, (Stem, MbConvBlock, TransformerBlock2d)):
                m.init_weights(scheme=scheme)
            elif isinstance(m, RelPosBias2d):
                m.reset_parameters()
        for i in range(self.num_levels):
            norm = getattr(self, f'norm{i}', None)
            if norm is not None:
                norm.reset_parameters()

    def unused_modules(self) -> list[str]:
        return super().unused_modules() + [f'stages.{i}' for i in range(max(self.out_indices) + 1, self.num_levels)]

    def frozen_modules(self, upto: int) -> list[nn.Module]:
        return self.stem_and_stages(self.stem, self.stages, upto)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: (B, C, H, W), any H, W. Returns one (B, C_i, ceil(H/s_i), ceil(W/s_i))
        map per ``out_indices`` entry, s_i in 4/8/16/32."""
        x = self.stem(channels_last_input(x))
        outs = []
        last = max(self.out_indices)
        for i, stage in enumerate(self.stages):
            for block in stage.blocks:
                x = self.run_block(block, x)
            if i in self.out_indices:
                norm = getattr(self, f'norm{i}', None)
                outs.append(norm(x) if norm is not None else x)
            if i == last:
                break
        return channels_last_grads(tuple(outs))

    # -- checkpoints ---------------------------------------------------------
    @staticmethod
    def checkpoint_filter(state_dict: dict, model: 'CoAtNet') -> dict:
        """timm (``MaxxVit``, ``features_only``) / DenseKit CoAtNet weights -> our keys.

        Same names as timm but for the bias table (``attn.rel_pos.`` ->
        ``rel_pos.``); timm's final ``norm`` becomes S4's output norm (ignored
        with ``out_norm='none'``); the classifier (``head.``) is ignored.
        Tables sized for another resolution are resized as timm's own
        ``checkpoint_filter_fn`` does, and 1x1 conv / linear weights of
        older timm checkpoints are reshaped as it does.
        """
        own = model.state_dict()
        last = f'norm{model.num_levels - 1}'
        out: dict = {}
        for k, v in state_dict.items():
            if k.endswith('relative_position_index'):
                continue  # derived buffer
            if k.startswith('head.'):
                out[k] = None  # classifier
                continue
            k = re.sub(r'^stages_(\d+)\.', r'stages.\1.', k)  # timm features_only
            k = k.replace('.attn.rel_pos.', '.rel_pos.')
            if k.startswith('norm.'):
                if not hasattr(model, last):
                    out[k] = None  # final norm not used with out_norm='none'
                    continue
                k = last + k[len('norm'):]
            if k in own:
                if k.endswith('relative_position_bias_table') and v.shape != own[k].shape:
                    rel_pos = model.get_submodule(k[:-len('.relative_position_bias_table')])
                    v = resize_rel_pos_bias_table(v, new_window_size=rel_pos.window_size,
                                                  new_bias_shape=tuple(own[k].shape))
                elif v.ndim != own[k].ndim and v.numel() == own[k].numel():
                    v = v.reshape(own[k].shape)
            out[k] = v
        return out


__all__ = ['CoAtNet', 'RelPosBias2d', 'CoAtTransformerBlock']
