"""Speed and memory of a config's backbone, or of its whole model, beside the
peer implementations of the same backbone architecture (timm, mmseg, mmdet,
mmpretrain), for ``tools/benchmark.py``.

What is measured, per model, on one random batch:

* **forward**: ``model(x)`` without gradients (eval mode);
* **train step**: forward in train mode, a loss (the sum of the outputs'
  means), backward, a fused ``AdamW.step()`` and ``zero_grad``.

Scope ``model`` (:func:`build_models`) runs the config's whole model instead
(segmentor, detector or classifier, random weights), once with our backbone
and once per peer with only ``model.backbone`` swapped for the peer's, on a
seeded synthetic batch with valid targets (:func:`synthetic_batch`): forward
is the model's inference (:func:`model_workload`), the train step
``model.loss`` summed by ``parse_losses``, backward and the same AdamW step.

Fairness rules (the numbers are only ratios between models run alike):

* same architecture: each peer is built from *our* model's widths, depths and
  heads, and where our ``checkpoint_filter`` reads the peer's layout its
  weights are loaded into ours (``weights`` column: every tensor placed), so
  the two are the same network tensor for tensor; otherwise parameter counts
  are compared. Stochastic depth and dropout are off in both (random work).
* same parameter count: ``params`` counts, for every row, the parameters the
  train step's loss reaches (:func:`used_params`), so a peer's classifier
  head, final norm or stages past the last output level are not counted.
* same outputs: a multi-level config (segmentation) asks every model for the
  same levels as NCHW maps (timm: ``forward_intermediates``); a one-level one
  (classification) for the final features (timm: ``forward_features``).
* interleaved: after two warm-ups (and one memory-profiled run) per model,
  repetition ``i`` runs every model once (ours, peer 1, peer 2, ...) before
  repetition ``i + 1``, so load from other processes hits all alike; a time
  is the median over repetitions, a ratio the median of the per-repetition
  ratios.
* steady allocator: ``tools/benchmark.py`` has glibc keep freed memory
  mapped (:func:`retain_freed_memory`; ``--malloc default`` leaves it).
* peak memory: CUDA ``torch.cuda.max_memory_allocated``; CPU: the torch
  profiler's allocation events (``profile_memory=True``): the highest total of
  live tensor bytes allocated during the run, above what was live before it
  (weights, and AdamW state after the warm-up, are not counted; what our
  backbones keep between inference calls is released first, so it counts). That is what
  tensors need, not the process RSS (allocator caching is not included).

With ``onnxruntime=True`` a row ``densekit (onnxruntime)`` runs our model
exported to ONNX (:mod:`densekit.export`, the same weights and the same
forward: the backbone, or the whole model's ``mode='tensor'`` work) in an
onnxruntime CPU session with all graph optimisations, on the same input and
thread count, interleaved with the others. It has no train step, and its
memory is onnxruntime's own (not seen by the torch profiler): '-'.

Achieved GFLOP/s use our FLOP count (``densekit.analysis``: multiply-adds,
times 2 for FLOPs; a train step counted as 3 forwards) against the matrix-
multiply peak measured in the same run (a large GEMM in the same dtype).
"""
from __future__ import annotations

import copy
import logging
import math
import os
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Sequence

import torch
from torch import nn

from densekit.backbones.fast_paths import release_inference_caches

# The families and what each is compared with. Each builder gets our model and
# the input (H, W) and returns a module whose forward does the same work.
PeerBuilder = Callable[[nn.Module, tuple[int, int]], nn.Module]

# configs of the full table (``--suite``): task -> (config, input H=W, batch)
SUITE = {
    'seg': (('configs/upernet_swin_ade20k.py', 512, 1),
            ('configs/vit/upernet_vit-b16_160k_ade20k.py', 512, 1),
            ('configs/mae/upernet_mae-vit-b16_100e_ade20k.py', 512, 1),
            ('configs/vitae/upernet_vitae-s_160k_ade20k.py', 512, 1),
            ('configs/levit/upernet_levit-256_160k_ade20k.py', 512, 1),
            ('configs/coatnet/upernet_coatnet-0_160k_ade20k.py', 512, 1),
            ('configs/convmixer/upernet_convmixer-1536-20_160k_ade20k.py', 512, 1)),
    'cls': (('configs/swin/swin-t_300e_imagenet.py', 224, 1),
            ('configs/levit/levit-256_1000e_imagenet.py', 224, 1),
            ('configs/coatnet/coatnet-0_300e_imagenet.py', 224, 1),
            ('configs/vit/vit-b16_300e_imagenet.py', 224, 1),
            ('configs/vitae/vitae-s_300e_imagenet.py', 224, 1),
            ('configs/convmixer/convmixer-768-32_150e_imagenet.py', 224, 1)),
}


# -- peers ---------------------------------------------------------------------


class TimmFeatures(nn.Module):
    """A timm model called the way our backbone is: the NCHW maps of stages
    ``indices`` (``forward_intermediates``), or the final features
    (``forward_features``) when ``indices`` is None."""

    def __init__(self, model: nn.Module, indices: Sequence[int] | None = None, norm: bool = False):
        super().__init__()
        self.model = model
        self.indices = list(indices) if indices is not None else None
        self.norm = norm

    def forward(self, x: torch.Tensor):
        if self.indices is None:
            return self.model.forward_features(x)
        # a tuple, as our backbones return (mmpretrain's necks accept no list)
        return tuple(self.model.forward_intermediates(x, indices=self.indices, norm=self.norm, stop_early=True,
                                                      intermediates_only=True))


def _multi(ours: nn.Module) -> bool:
    return len(ours.out_indices) > 1


def _swin_arch(ours) -> dict:
    return dict(embed_dims=ours.level_channels[0], depths=[len(s.blocks) for s in ours.stages],
                num_heads=[s.blocks[0].attn.num_heads for s in ours.stages],
                window_size=ours.stages[0].blocks[0].window)


def _swin_peers(ours, size) -> dict[str, PeerBuilder]:
    a = _swin_arch(ours)

    def timm_swin(ours, size):
        from timm.models.swin_transformer import SwinTransformer
        m = SwinTransformer(img_size=size, embed_dim=a['embed_dims'], depths=a['depths'], num_heads=a['num_heads'],
                            window_size=a['window_size'], num_classes=0, strict_img_size=False, drop_path_rate=0.)
        return TimmFeatures(m, list(ours.out_indices) if _multi(ours) else None)

    def mm_swin(module_path):
        def build(ours, size):
            import importlib
            cls = importlib.import_module(module_path).SwinTransformer
            return cls(pretrain_img_size=224, embed_dims=a['embed_dims'], depths=a['depths'],
                       num_heads=a['num_heads'], window_size=a['window_size'], out_indices=ours.out_indices,
                       drop_path_rate=0.)
        return build

    def mmpretrain_swin(ours, size):
        from mmpretrain.models.backbones import SwinTransformer
        return SwinTransformer(arch=dict(embed_dims=a['embed_dims'], depths=a['depths'], num_heads=a['num_heads']),
                               img_size=size, window_size=a['window_size'], out_indices=ours.out_indices,
                               pad_small_map=True, drop_path_rate=0.)

    return {'timm': timm_swin, 'mmseg': mm_swin('mmseg.models.backbones.swin'), 'mmpretrain': mmpretrain_swin,
            'mmdet': mm_swin('mmdet.models.backbones.swin')}


def _vit_peers(ours, size) -> dict[str, PeerBuilder]:
    C, depth = ours.level_channels[0], ours.num_levels
    heads, p = ours.blocks[0].attn.num_heads, ours.patch_size
    hidden = ours.blocks[0].mlp.fc1.out_features
    grid = tuple(g * p for g in ours.grid_size)
    multi = ours.out_type == 'featmap'
    final_norm = ours.out_norm is not None

    def timm_vit(ours, size):
        from timm.models.vision_transformer import VisionTransformer
        m = VisionTransformer(img_size=grid, patch_size=p, embed_dim=C, depth=depth, num_heads=heads,
                              mlp_ratio=hidden / C, num_classes=0, dynamic_img_size=True, drop_path_rate=0.)
        return TimmFeatures(m, list(ours.out_indices) if multi else None, norm=ours.out_norm == 'all')

    def mmseg_vit(ours, size):
        from mmseg.models.backbones import VisionTransformer
        return VisionTransformer(img_size=grid, patch_size=p, embed_dims=C, num_layers=depth, num_heads=heads,
                                 mlp_ratio=hidden // C, out_indices=ours.out_indices, patch_bias=True,
                                 final_norm=final_norm, output_cls_token=not multi, drop_path_rate=0.)

    def mmpretrain_vit(ours, size):
        from mmpretrain.models.backbones import VisionTransformer
        return VisionTransformer(arch=dict(embed_dims=C, num_layers=depth, num_heads=heads,
                                           feedforward_channels=hidden),
                                 img_size=grid, patch_size=p, out_indices=ours.out_indices, final_norm=final_norm,
                                 out_type='featmap' if multi else 'cls_token', drop_path_rate=0.)

    def timm_sam(ours, size):
        # the ViTDet design (windows, global blocks, decomposed relative positions) as SAM's image encoder
        from timm.models.vision_transformer_sam import VisionTransformerSAM
        m = VisionTransformerSAM(img_size=grid, patch_size=p, embed_dim=C, depth=depth, num_heads=heads,
                                 mlp_ratio=hidden / C, window_size=ours.window_size,
                                 global_attn_indexes=ours.global_attn_indexes, use_rel_pos=ours.use_rel_pos,
                                 norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0)
        return TimmFeatures(m, list(ours.out_indices))  # block outputs, before SAM's neck

    peers = {'timm': timm_vit, 'mmseg': mmseg_vit, 'mmpretrain': mmpretrain_vit}
    # a ViTDet-style ViT: SAM's encoder is the same network; the others are global-attention ViTs
    return {'timm (sam)': timm_sam, **peers} if ours.spatial else peers


def _levit_arch(ours) -> dict:
    stages = ours.stages
    return dict(embed_dims=[s.blocks[0].attn.qkv.linear.in_features for s in stages],
                key_dim=stages[0].blocks[0].attn.key_dim,
                num_heads=[s.blocks[0].attn.num_heads for s in stages],
                depths=[len(s.blocks) for s in stages])


def _levit_peers(ours, size) -> dict[str, PeerBuilder]:
    # our levels 0/1 are stem maps, 2.. the stages: a peer runs the stem and
    # the same number of stages
    n_stages = len(ours.stages)
    full = n_stages == 3

    def timm_levit(conv: bool):
        def build(ours, size):
            from timm.models.levit import Levit
            arch = ours_arch = _levit_arch(ours)
            if not full:  # timm builds 3 stages; give the unused one a minimal depth, never run
                arch = dict(ours_arch, embed_dims=ours_arch['embed_dims'] + [ours_arch['embed_dims'][-1]],
                            num_heads=ours_arch['num_heads'] + [ours_arch['num_heads'][-1]],
                            depths=ours_arch['depths'] + [1])
            m = Levit(img_size=size, embed_dim=tuple(arch['embed_dims']), key_dim=arch['key_dim'],
                      num_heads=tuple(arch['num_heads']), depth=tuple(arch['depths']), num_classes=0,
                      use_conv=conv, drop_path_rate=0.)
            return TimmFeatures(m, None if full else list(range(n_stages)))
        return build

    def mmpretrain_levit(ours, size):
        from mmpretrain.models.backbones import LeViT
        arch = _levit_arch(ours)
        if not full:
            raise ValueError('mmpretrain LeViT always builds 3 stages')
        # a named arch only: mmpretrain 1.2's custom-dict path asserts 'embed_dim' then reads 'embed_dims'
        want = dict(embed_dims=arch['embed_dims'], num_heads=arch['num_heads'], depths=arch['depths'],
                    key_dims=[arch['key_dim']] * len(arch['depths']))
        names = [n for n, a in LeViT.arch_zoo.items() if all(list(a[k]) == v for k, v in want.items())]
        if not names:
            raise ValueError(f'mmpretrain LeViT has no named arch {want}')
        return LeViT(arch=names[0], img_size=size[0], out_indices=(2,), drop_path_rate=0.)  # square inputs

    peers = {'timm': timm_levit(False), 'timm (levit_conv)': timm_levit(True)}
    if full:
        peers['mmpretrain'] = mmpretrain_levit
    return peers


def _coatnet_peers(ours, size) -> dict[str, PeerBuilder]:
    def timm_coatnet(ours, size):
        from timm.models.maxxvit import MaxxVit
        m = MaxxVit(ours.cfg, img_size=size, num_classes=0, drop_path_rate=0.)
        # timm's feature indices: 0 the stem, 1..4 the stages
        return TimmFeatures(m, [i + 1 for i in ours.out_indices] if _multi(ours) else None)

    return {'timm': timm_coatnet}


def _convmixer_peers(ours, size) -> dict[str, PeerBuilder]:
    stem = ours.stem[0]
    dim, p = stem.out_channels, stem.kernel_size[0]
    k = ours.blocks[0][0].fn[0].kernel_size[0]
    act = type(ours.stem[1])
    # a peer runs as many blocks as our last output needs
    used = max(ours.out_indices) + 1

    def timm_convmixer(ours, size):
        from timm.models.convmixer import ConvMixer
        return TimmFeatures(ConvMixer(dim, used, kernel_size=k, patch_size=p, num_classes=0, act_layer=act))

    def mmpretrain_convmixer(ours, size):
        from mmpretrain.models.backbones import ConvMixer
        return ConvMixer(arch=dict(embed_dims=dim, depth=used, patch_size=p, kernel_size=k),
                         act_cfg=dict(type='GELU' if act is nn.GELU else 'ReLU'),
                         out_indices=list(ours.out_indices), frozen_stages=-1)

    peers = {'mmpretrain': mmpretrain_convmixer}
    if not _multi(ours):  # timm's ConvMixer has no forward_intermediates
        peers = {'timm': timm_convmixer, **peers}
    return peers


# family -> peer builders. ViTAE has no installable implementation to compare with.
PEERS: dict[str, Callable[[nn.Module, tuple[int, int]], dict[str, PeerBuilder]]] = {
    'SwinTransformer': _swin_peers,
    'VisionTransformer': _vit_peers,
    'MAEViT': _vit_peers,
    'LeViT': _levit_peers,
    'CoAtNet': _coatnet_peers,
    'ConvMixer': _convmixer_peers,
    'ViTAE': lambda ours, size: {},
}


# -- measuring -----------------------------------------------------------------


@dataclass
class ModelResult:
    """One model's numbers; times in seconds per batch, memory in bytes."""
    name: str
    params: int
    weights: str
    forward_s: list[float] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    forward_peak: int | None = 0  # None: not measured (onnxruntime's own memory)
    train_peak: int | None = 0

    @property
    def forward(self) -> float:
        return statistics.median(self.forward_s)

    @property
    def train(self) -> float:
        return statistics.median(self.train_s) if self.train_s else math.nan


@dataclass
class Benchmark:
    """All models of one config at one input, and the context to read them in."""
    config: str
    family: str
    shape: tuple[int, int, int, int]
    device: str
    amp: str
    threads: int
    flops: int  # multiply-adds of one forward of the batch (ours)
    matmul_peak: float  # FLOP/s of a large GEMM in the compute dtype
    load: str
    results: list[ModelResult]
    skipped: dict[str, str] = field(default_factory=dict)  # peer -> why it could not run
    scope: str = 'backbone'  # 'backbone' | 'model' (the whole model, peers' backbones swapped in)
    flops_of: str = 'backbone only'  # what ``flops`` counts
    work: str = ''  # what forward and train step run

    @property
    def ours(self) -> ModelResult:
        return self.results[0]

    def ratios(self) -> dict[str, dict[str, float]]:
        """ours / peer for forward and train-step time and peak memory (below
        1: ours is faster / smaller). A time ratio is the median over
        repetitions of ours / peer within the repetition: the two ran moments
        apart, so a burst of load from elsewhere cancels out."""
        o = self.ours

        def paired(a: list[float], b: list[float]) -> float:
            return statistics.median(x / y for x, y in zip(a, b)) if a and b else math.nan

        def mem(a: int | None, b: int | None) -> float:
            return a / max(b, 1) if a is not None and b is not None else math.nan

        return {p.name: dict(forward=paired(o.forward_s, p.forward_s), train=paired(o.train_s, p.train_s),
                             forward_mem=mem(o.forward_peak, p.forward_peak),
                             train_mem=mem(o.train_peak, p.train_peak))
                for p in self.results[1:]}

    def gflops(self, r: ModelResult) -> tuple[float, float]:
        """Achieved GFLOP/s (forward, train step) from our FLOP count."""
        return 2 * self.flops / r.forward / 1e9, 6 * self.flops / r.train / 1e9

    def table(self) -> str:
        B, C, H, W = self.shape
        lines = [f'### {self.config} ({self.scope}): {self.family}, input {B}x{C}x{H}x{W}, {self.device}, '
                 f'{self.amp}, {self.threads} threads',
                 f'forward {self.flops / 1e9:.2f} GMACs (ours, {self.flops_of}); '
                 f'matmul peak {self.matmul_peak / 1e9:.1f} GFLOP/s; load {self.load}',
                 *([self.work] if self.work else []), '',
                 '| model | params used | weights | fwd img/s | train img/s | fwd GFLOP/s (% peak) | '
                 'fwd peak MB | train peak MB | fwd ratio | train ratio | fwd mem ratio | train mem ratio |',
                 '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
        ratios = self.ratios()
        for r in self.results:
            fg, _ = self.gflops(r)
            q = ratios.get(r.name)
            cells = (' | '.join(_num(q[k]) for k in ('forward', 'train', 'forward_mem', 'train_mem'))
                     if q else '- | - | - | -')
            lines.append(f'| {r.name} | {r.params / 1e6:.2f} M | {r.weights} | {B / r.forward:.2f} | '
                         f'{_num(B / r.train)} | {fg:.1f} ({100 * fg * 1e9 / self.matmul_peak:.0f}%) | '
                         f'{_mb(r.forward_peak)} | {_mb(r.train_peak)} | {cells} |')
        for name, why in self.skipped.items():
            lines.append(f'| {name} | | not run: {why} | | | | | | | | | |')
        lines.append('\nratio = ours / peer (time per batch, peak memory): below 1.00 ours is faster / smaller. '
                     'params used: those the train loss reaches, alike for every row (not a classifier head '
                     'or a stage the call never runs).')
        ort = next((r for r in self.results if r.name == ONNX_ROW), None)
        if ort is not None:
            def spread(r: ModelResult) -> str:
                q = [x / y for x, y in zip(ort.forward_s, r.forward_s)]
                return f'{statistics.median(q):.2f} (range {min(q):.2f}-{max(q):.2f})'
            lines.append('onnxruntime / eager forward time (median of per-repetition ratios): ' + '; '.join(
                f'/ {r.name}: {spread(r)}' for r in self.results if r is not ort))
        return '\n'.join(lines)


def _num(v: float) -> str:
    return '-' if math.isnan(v) else f'{v:.2f}'


def _mb(v: int | None) -> str:
    """Bytes as whole MB; under 1 MB (a tiny input) as '<1', not a misleading 0."""
    if v is None:
        return '-'
    return '<1' if 0 < v < 2**20 else f'{v / 2**20:.0f}'


def retain_freed_memory(limit: int = 1 << 30) -> bool:
    """Have glibc keep freed memory mapped (mmap and trim thresholds at
    ``limit``) so that a step's large buffers are not returned to the kernel
    and page-faulted in again on the next step, as with tcmalloc or jemalloc.
    It applies to every model alike: under glibc's defaults, steps of
    alternating models page-fault their buffers in again and vary more.
    Returns False where glibc is not the allocator."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, limit) and libc.mallopt(m_trim_threshold, limit))
    except (OSError, AttributeError):
        return False


def device_name(device: str = 'cpu') -> str:
    """The GPU's name (``torch.cuda.get_device_name``) or the CPU's model name."""
    if device.startswith('cuda') and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or 'CPU'


def write_results(path: str, benches: Sequence[Benchmark], command: str, device: str) -> None:
    """Append the tables of one benchmark run to the markdown results file
    ``path``, under a heading with the UTC date, the device and the software."""
    cuda = f', CUDA {torch.version.cuda}' if device.startswith('cuda') else ''
    head = (f'## {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}: {device_name(device)}; '
            f'torch {torch.__version__}{cuda}')
    body = '\n\n'.join(b.table() for b in benches)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'a') as f:
        f.write(f'\n{head}\n\n`{command}`\n\n{body}\n\n### Summary (ours / peer)\n\n{summary(benches)}\n')


def machine_load() -> str:
    """The 1/5/15-minute load averages (as ``uptime`` prints them) and the CPU count."""
    one, five, fifteen = os.getloadavg()
    return f'{one:.2f} {five:.2f} {fifteen:.2f} (uptime; {os.cpu_count()} CPUs)'


def autocast(device: str, amp: str):
    """The autocast context for ``amp`` ('fp32': none, 'bf16', 'fp16')."""
    if amp == 'fp32':
        return nullcontext()
    return torch.autocast(device, dtype={'bf16': torch.bfloat16, 'fp16': torch.float16}[amp])


def matmul_peak(device: str, amp: str, n: int = 2048, reps: int = 3) -> float:
    """FLOP/s of the best of ``reps`` n x n x n GEMMs (2 n^3 FLOPs) in the compute dtype."""
    dtype = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}[amp]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for _ in range(reps + 1):  # the first one warms up
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _outputs(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _outputs(o)]


@dataclass
class Workload:
    """What one forward and one training loss of a model are, on a fixed batch."""
    infer: Callable[[nn.Module], object]  # run in eval mode without gradients
    loss: Callable[[nn.Module], torch.Tensor]  # a scalar, run in train mode
    describe: str  # for the table header


def backbone_workload(x: torch.Tensor) -> Workload:
    """A backbone on ``x`` (B, C, H, W); the loss is the sum of its outputs' means."""
    return Workload(infer=lambda model: model(x),
                    loss=lambda model: sum(t.float().mean() for t in _outputs(model(x))),
                    describe='forward: backbone(x); train step: sum of the outputs\' means, backward, AdamW')


def model_workload(inputs: torch.Tensor, samples: list, task: str, seed: int = 0) -> Workload:
    """A whole mmseg/mmdet/mmpretrain model on ``inputs`` (B, C, H, W), already
    normalised (the data preprocessor is not run), with ``samples`` its targets.

    Forward: segmentation and classification run ``mode='tensor'`` (decode-head
    logits at 1/4 resolution / class scores; the remaining resize + argmax or
    softmax is the same for every backbone). Detection runs ``mode='predict'``:
    RPN proposals, RoI heads, NMS and mask pasting, the whole inference work
    (its ``tensor`` mode stops before the final NMS). Train step:
    ``model.loss(inputs, samples)`` summed by mmengine's ``parse_losses``.
    """
    mode = 'predict' if task == 'detection' else 'tensor'

    def infer(model: nn.Module):
        # fresh samples: predict writes its results into them, and kept results
        # would count as live memory of the next run
        metas = [type(s)(metainfo=s.metainfo) for s in samples]
        return model(inputs, metas, mode=mode)

    def loss(model: nn.Module) -> torch.Tensor:
        torch.manual_seed(seed)  # the same RoI sampling and head dropout for every model and repetition
        total, _ = model.parse_losses(model.loss(inputs, samples))
        return total

    return Workload(infer, loss, f"forward: model(inputs, mode='{mode}'); train step: model.loss + "
                                 'parse_losses, backward, AdamW; data preprocessor not run')


class Runner:
    """Forward and train step of one model on one workload, timed or memory-profiled."""

    trains = True  # has a train step

    def __init__(self, model: nn.Module, work: Workload, device: str, amp: str):
        self.model, self.work, self.device, self.amp = model, work, device, amp
        # fused AdamW (one kernel over all parameters, CPU and CUDA): the per-tensor
        # loop costs as much as a batch-1 backward on CPU and would dilute every ratio
        self.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6, fused=True)
        # fp16 needs loss scaling; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(device, enabled=amp == 'fp16')

    def forward(self) -> None:
        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.amp):
            self.work.infer(self.model)

    def train_step(self) -> None:
        self.model.train()
        with autocast(self.device, self.amp):
            loss = self.work.loss(self.model)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)

    def time(self, step: Callable[[], None]) -> float:
        _sync(self.device)
        t = time.perf_counter()
        step()
        _sync(self.device)
        return time.perf_counter() - t

    def peak_memory(self, step: Callable[[], None]) -> int:
        """Peak bytes of tensors allocated by ``step`` above those live before it."""
        return peak_memory(step, self.device)


ONNX_ROW = 'densekit (onnxruntime)'


class OnnxRunner:
    """The forward of an exported model in an onnxruntime CPU session, fed
    the workload's input; no train step."""

    trains = False
    device = 'cpu'

    def __init__(self, path: str, inputs: torch.Tensor, threads: int):
        from densekit.export import session
        self.session = session(path, threads)
        self.feed = {self.session.get_inputs()[0].name: inputs.detach().cpu().numpy()}
        self.model = nn.Module()  # nothing of torch's to release or profile

    def forward(self) -> None:
        self.session.run(None, self.feed)

    def time(self, step: Callable[[], None]) -> float:
        t = time.perf_counter()
        step()
        return time.perf_counter() - t


class TensorForward(nn.Module):
    """A whole model's ``mode='tensor'`` forward on normalised inputs, as
    :func:`model_workload` runs it, as a one-input module to export."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        return self.model(inputs, mode='tensor')


def export_for_onnxruntime(model: nn.Module, inputs: torch.Tensor, path: str) -> None:
    """``model`` (a backbone, or a :class:`TensorForward`) traced on ``inputs``
    to ONNX at ``path`` (fixed shape: the benchmark's input)."""
    from densekit.export import OPSET, exportable, register_symbolics
    register_symbolics()
    model = exportable(model).eval()
    with torch.no_grad():
        torch.onnx.export(model, (inputs,), path, dynamo=False, opset_version=OPSET, input_names=['inputs'])


def peak_memory(step: Callable[[], None], device: str) -> int:
    """Peak bytes of tensors allocated by ``step`` above those live before it
    (CUDA's allocator statistics, or :func:`cpu_peak_memory`)."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    return cpu_peak_memory(step)


def cpu_peak_memory(step: Callable[[], None]) -> int:
    """Peak live bytes of CPU tensors allocated while ``step`` runs, from the
    torch profiler's memory records: each op's own (self) allocations minus
    frees, and the frees outside any op (``[memory]``), summed in time order."""
    from torch.profiler import ProfilerActivity, profile
    # c10 prints this from C++ (no Python warning to filter): a tensor made before the profiler
    # started, freed inside it; its free is rightly outside what the step allocated
    with _drop_stderr_lines('was allocated before the profiling started'):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events()
                     if e.self_cpu_memory_usage)
    live = peak = 0
    for _, delta in changes:
        live += delta
        peak = max(peak, live)
    return peak


@contextmanager
def _drop_stderr_lines(text: str):
    """Inside, what is written to file descriptor 2 (C++ code included)
    passes through afterwards, less the lines containing ``text``."""
    import sys
    import tempfile
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode='w+b') as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode(errors='replace').splitlines(keepends=True)
                    if text not in line]
            if kept:
                sys.stderr.write(''.join(kept))
                sys.stderr.flush()


def interleaved(runners: Sequence[Runner], results: Sequence[ModelResult], reps: int, train: bool = True) -> None:
    """Warm up and profile memory once per model (then one more untimed run
    of each), then ``reps`` rounds of ours, peer 1, peer 2, ... for forward,
    then ``reps`` such rounds of train steps (``train=False``: none; a
    runner without a train step sits them out)."""
    for run, res in zip(runners, results):
        run.forward()
        if not run.trains:
            res.forward_peak = res.train_peak = None
            run.forward()
            continue
        # what our backbones keep between inference calls (attention biases,
        # backbones.fast_paths) is made again inside the measured forward: it counts
        release_inference_caches(run.model)
        res.forward_peak = run.peak_memory(run.forward)
        if not train:
            res.train_peak = None
            run.forward()
            continue
        run.train_step()  # AdamW state exists from here on
        res.train_peak = run.peak_memory(run.train_step)
        # one more of each outside the profiler: the first train step after profiling is slow
        run.forward()
        run.train_step()
    # all forward rounds, then all train-step rounds: an inference workload is many
    # forwards in a row (a train step frees what our backbones keep for inference)
    for _ in range(reps):
        for run, res in zip(runners, results):
            res.forward_s.append(run.time(run.forward))
    for _ in range(reps if train else 0):
        for run, res in zip(runners, results):
            if run.trains:
                res.train_s.append(run.time(run.train_step))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def used_params(run: 'Runner') -> int:
    """Parameters the workload's loss reaches: one untimed forward in eval
    mode (BatchNorm's running statistics stay as they are, and a batch of one
    works) and a backward (no optimizer step), with every parameter's
    ``requires_grad`` on meanwhile so frozen ones (MAE's fixed position
    embedding) count too. What a peer builds but the benchmarked call never
    runs (timm's classifier head or final norm, a stage past the last
    output) is left out, as it is for ours."""
    params = list(run.model.parameters())
    frozen = [p for p in params if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    try:
        run.model.eval()
        with autocast(run.device, run.amp):
            loss = run.work.loss(run.model)
        loss.backward()
        return sum(p.numel() for p in params if p.grad is not None)
    finally:
        run.model.zero_grad(set_to_none=True)
        for p in frozen:
            p.requires_grad_(False)


def _backbone_cfg(cfg) -> dict:
    """``cfg.model.backbone`` without pretrained weights, stochastic depth or dropout."""
    from mmengine.registry import init_default_scope

    from densekit.config import task_of
    task_of(cfg)
    init_default_scope(cfg.default_scope)
    bcfg = cfg.model.get('backbone')
    if not isinstance(bcfg, dict):
        raise KeyError(f'{cfg.filename}: model.backbone is missing; the benchmark compares backbones')
    bcfg = dict(bcfg, init_cfg=None)
    for key in ('drop_path_rate', 'drop_rate', 'attn_drop_rate'):
        if key in bcfg:
            bcfg[key] = 0.
    return bcfg


def build_ours(cfg) -> nn.Module:
    """The config's backbone, random weights, stochastic depth and dropout off."""
    from mmengine.registry import MODELS
    model = MODELS.build(_backbone_cfg(cfg))
    model.reset_parameters()  # the family's random init, without mmengine's per-tensor log
    return model


def family_of(model: nn.Module) -> str:
    name = type(model).__name__
    if name not in PEERS:
        raise KeyError(f'benchmark: no peer mapping for backbone {name}; known: {sorted(PEERS)}')
    return name


def build_peers(ours: nn.Module, size: tuple[int, int], only: Sequence[str] | None = None
                ) -> tuple[list[tuple[str, nn.Module, str]], dict[str, str]]:
    """The peers of ``ours`` as (name, model, weights note), and those that
    could not be built with the reason. Each convertible peer's weights are
    loaded into ``ours`` through its ``checkpoint_filter``: all of ours placed
    means the same architecture, tensor for tensor."""
    builders = PEERS[family_of(ours)](ours, size)
    if only is None:  # mmdet's Swin is a copy of mmseg's: only on request
        only = [name for name in builders if name != 'mmdet']
    unknown = set(only) - set(builders)
    if unknown:
        raise KeyError(f'benchmark: unknown peer(s) {sorted(unknown)} for {type(ours).__name__}; '
                       f'available: {sorted(builders)}')
    builders = {k: v for k, v in builders.items() if k in only}
    peers, skipped = [], {}
    for name, build in builders.items():
        try:
            peer = build(ours, size)
        except (ImportError, ValueError, TypeError, AssertionError) as err:
            skipped[name] = f'{type(err).__name__}: {err}'
            continue
        peers.append((name, peer, weights_note(ours, peer)))
    return peers, skipped


def weights_note(ours: nn.Module, peer: nn.Module) -> str:
    """'copied (n/n)' when the peer's weights fill every one of our tensors, else
    the parameter counts (a layout our converter does not read)."""
    inner = peer.model if isinstance(peer, TimmFeatures) else peer
    try:
        report = ours.load_pretrained_state(inner.state_dict())
    except (ValueError, KeyError, RuntimeError) as err:
        return f'not convertible ({type(err).__name__}); params {count_params(inner) / 1e6:.2f} M'
    total = len(ours.state_dict())
    if not report.missing and not report.unexpected:
        return f'copied ({report.loaded}/{total})'
    extra = count_params(ours) - count_params(inner)
    return (f'partly copied ({report.loaded}/{total}, {len(report.missing)} missing); '
            + (f'ours has {extra:+d} params' if extra else 'params equal'))


# -- whole models --------------------------------------------------------------


def build_model(cfg) -> nn.Module:
    """The config's whole model (mmseg segmentor, mmdet detector, mmpretrain
    classifier) built through the registry as ``tools/train.py`` builds it,
    with random weights and the backbone of :func:`build_ours` (no pretrained
    file, no stochastic depth or dropout; the heads keep their dropout, seeded
    alike in every train step). SyncBN becomes BN, as mmengine's Runner does
    without a process group."""
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS
    model = MODELS.build(dict(cfg.model, backbone=_backbone_cfg(cfg)))
    # init_weights logs a line per tensor at INFO without a log file: not in a benchmark's output
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return revert_sync_batchnorm(model)


def synthetic_batch(model: nn.Module, task: str, batch: int, size: tuple[int, int], in_channels: int = 3,
                    seed: int = 0) -> tuple[torch.Tensor, list]:
    """A random input (B, C, H, W) and valid targets, seeded so that every
    model sees the same: segmentation labels in [0, num_classes) per pixel;
    a class per image; for detection three boxes per image inside it, with
    classes and, for instance segmentation, the boxes' filled bitmap masks.
    The metas are those the data preprocessor would add for an unpadded,
    unscaled image."""
    g = torch.Generator().manual_seed(seed)
    H, W = size
    inputs = torch.randn(batch, in_channels, H, W, generator=g)
    meta = dict(img_shape=size, ori_shape=size, pad_shape=size, batch_input_shape=size, scale_factor=(1., 1.))
    if task == 'segmentation':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        n = model.decode_head.num_classes
        return inputs, [SegDataSample(metainfo=meta, gt_sem_seg=PixelData(
            data=torch.randint(0, n, (1, H, W), generator=g))) for _ in range(batch)]
    if task == 'classification':
        from mmpretrain.structures import DataSample
        # our TokenNormClsHead keeps only its fc
        n = getattr(model.head, 'num_classes', None) or model.head.fc.out_features
        return inputs, [DataSample(metainfo=meta).set_gt_label(int(torch.randint(0, n, (), generator=g)))
                        for _ in range(batch)]
    return inputs, [_detection_sample(model, meta, g) for _ in range(batch)]


def _detection_sample(model: nn.Module, meta: dict, g: torch.Generator, objects: int = 3):
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    H, W = meta['img_shape']
    roi_head = getattr(model, 'roi_head', None)
    n = (roi_head.bbox_head if roi_head is not None else model.bbox_head).num_classes
    scale = torch.tensor([W, H], dtype=torch.float32)
    corner = torch.rand(objects, 2, generator=g) * scale / 2  # top-left in the upper-left quarter
    extent = (0.2 + 0.3 * torch.rand(objects, 2, generator=g)) * scale  # 20-50% of the side: inside
    boxes = torch.cat([corner, corner + extent], 1)
    gt = InstanceData(bboxes=boxes, labels=torch.randint(0, n, (objects,), generator=g))
    if roi_head is not None and roi_head.with_mask:
        masks = np.zeros((objects, H, W), np.uint8)
        for m, (x1, y1, x2, y2) in zip(masks, boxes.round().int().tolist()):
            m[y1:y2, x1:x2] = 1
        gt.masks = BitmapMasks(masks, H, W)
    return DetDataSample(metainfo=meta, gt_instances=gt)


def _level_mismatch(ours: nn.Module, peer: nn.Module, x: torch.Tensor) -> str | None:
    """Why ``peer`` cannot stand in for ``ours`` inside the model (the shapes
    of the maps each returns on ``x``), or None when it can."""
    shapes = []
    for m in (ours, peer):
        m.eval()  # mmseg's Swin returns None from train()/eval()
        with torch.no_grad():
            shapes.append([tuple(t.shape) for t in _outputs(m(x))])
    if shapes[0] == shapes[1]:
        return None
    return f'its outputs {shapes[1]} are not ours {shapes[0]}: it cannot feed our neck/head'


def build_models(cfg, size: tuple[int, int], peers: Sequence[str] | None = None, scope: str = 'backbone'
                 ) -> tuple[list[tuple[str, nn.Module, str]], dict[str, str]]:
    """Ours and each peer as (name, model, weights note), and the peers that
    could not be built with the reason. ``scope='backbone'``: the backbones;
    ``'model'``: the config's whole model, once with our backbone and once per
    peer with ``model.backbone`` replaced by the peer's, every other module a
    copy of ours: the rows differ only in the backbone implementation."""
    if scope == 'backbone':
        ours = build_ours(cfg)
        built, skipped = build_peers(ours, size, peers)
        return [('densekit', ours, 'ours')] + built, skipped
    model = build_model(cfg)
    built, skipped = build_peers(model.backbone, size, peers)
    models = [('densekit', model, 'ours')]
    x = torch.randn(1, cfg.model.backbone.get('in_channels', 3), *size)
    for name, peer, note in built:
        why = _level_mismatch(model.backbone, peer, x)
        if why:
            skipped[name] = why
            continue
        # deepcopy's memo maps our backbone to the peer's: everything else is copied
        models.append((name, copy.deepcopy(model, {id(model.backbone): peer}), note))
    return models, skipped


def run_benchmark(config: str, size: int | tuple[int, int] | None = None, batch: int | None = None,
                  device: str = 'cpu',
                  amp: str = 'fp32', reps: int = 3, peers: Sequence[str] | None = None, threads: int | None = None,
                  cfg_options: dict | None = None, scope: str = 'backbone', compile_backend: str | None = None,
                  onnxruntime: bool = False, train: bool = True) -> Benchmark:
    """Measure ``config``'s backbone (``scope='backbone'``) or whole model
    (``'model'``) and its peers on a random (batch, C, H, W) input, ``size``
    being H = W or (H, W) (default: the config's crop_size, else 224).
    ``batch`` defaults to 1, and to 2 for a whole model: a BatchNorm in train
    mode needs two values per channel (UPerNet's 1x1 pooling branch).
    ``compile_backend``: a ``torch.compile`` backend (e.g. 'inductor') applied in place
    to every row's backbone, ours and the peers' alike (in a whole model the
    heads stay eager: their ``loss`` bypasses a compiled ``forward``); the
    compilation happens in the warm-up runs, which are not timed.
    ``onnxruntime``: add the ``densekit (onnxruntime)`` row (CPU only; not for
    a detector, whose timed forward is its NMS-including ``predict``).
    ``train=False``: forward only (a whole model at batch 1: BatchNorm in
    train mode needs two values per channel)."""
    from densekit.analysis import count_complexity
    from densekit.config import load_config, task_of

    if amp not in ('fp32', 'bf16', 'fp16'):
        raise ValueError(f"benchmark: amp must be 'fp32', 'bf16' or 'fp16', got {amp!r}")
    if scope not in ('backbone', 'model'):
        raise ValueError(f"benchmark: scope must be 'backbone' or 'model', got {scope!r}")
    if compile_backend is not None and compile_backend not in torch._dynamo.list_backends(exclude_tags=()):
        raise ValueError(f'benchmark: unknown torch.compile backend {compile_backend!r}; '
                         f'available: {torch._dynamo.list_backends(exclude_tags=())}')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f'benchmark: device {device!r} requested but CUDA is not available')
    batch = batch or (2 if scope == 'model' else 1)
    if onnxruntime and not device.startswith('cpu'):
        raise ValueError(f'benchmark: --onnxruntime runs on the CPU; got device {device!r}')
    if reps < 1 or batch < 1:
        raise ValueError(f'benchmark: reps and batch must be >= 1, got reps={reps}, batch={batch}')
    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(config, cfg_options)
    if size is None:
        crop = cfg.get('crop_size') or (224, 224)
        size = crop[0]
    hw = (size, size) if isinstance(size, int) else tuple(size)
    in_ch = cfg.model.backbone.get('in_channels', 3)
    torch.manual_seed(0)
    models, skipped = build_models(cfg, hw, peers, scope)
    ours = models[0][1]
    backbone = ours.backbone if scope == 'model' else ours
    task = task_of(cfg)
    # FLOPs of the timed forward where the analyzer can trace it
    if scope == 'model' and task != 'detection':
        flops_of = "whole model (its mode='tensor' forward)"
        flops = count_complexity(ours, (1, in_ch, *hw)).flops['']
    else:
        flops_of = 'backbone only' + (": a detector's predict (NMS, RoI heads) is data-dependent, not counted"
                                      if scope == 'model' else '')
        flops = count_complexity(backbone, (1, in_ch, *hw)).flops['']
    if onnxruntime and scope == 'model' and task == 'detection':
        raise ValueError("benchmark: --onnxruntime with --scope model times a detector's predict (NMS, RoI heads), "
                         'which is not exported; use --scope backbone')
    if scope == 'model':
        inputs, samples = synthetic_batch(ours, task, batch, hw, in_ch)
        work = model_workload(inputs.to(device), [s.to(device) for s in samples], task)
    else:
        inputs = torch.randn(batch, in_ch, *hw, device=device)
        work = backbone_workload(inputs)
    results, runners = [], []
    for name, model, note in models:
        model.to(device)
        if compile_backend:
            (model.backbone if scope == 'model' else model).compile(backend=compile_backend)
        runners.append(Runner(model, work, device, amp))
        results.append(ModelResult(name, used_params(runners[-1]), note))
    if onnxruntime:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'model.onnx')
            export_for_onnxruntime(TensorForward(ours) if scope == 'model' else ours, inputs, path)
            runners.insert(1, OnnxRunner(path, inputs, torch.get_num_threads()))
        results.insert(1, ModelResult(ONNX_ROW, results[0].params, 'ours, exported'))
    # the best GEMM before and after the runs: other processes' load varies
    peak = matmul_peak(device, amp)
    interleaved(runners, results, reps, train)
    peak = max(peak, matmul_peak(device, amp))
    return Benchmark(config, family_of(backbone), (batch, in_ch, *hw), device, amp, torch.get_num_threads(),
                     flops * batch, peak, machine_load(), results, skipped, scope=scope, flops_of=flops_of,
                     work=work.describe + (f'; backbones torch.compile(backend={compile_backend!r}), compiled '
                                           'in the untimed warm-up' if compile_backend else ''))


def summary(benches: Sequence[Benchmark]) -> str:
    """One line per config: ours / fastest peer and ours / each mm* peer."""
    lines = ['| config | family | input | peer | fwd ratio | train ratio | fwd mem ratio | train mem ratio | '
             'ours fwd img/s | ours train img/s | ours fwd % peak |',
             '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for b in benches:
        B, _, H, W = b.shape
        o = b.ours
        fg, _ = b.gflops(o)
        own = f'{B / o.forward:.2f} | {_num(B / o.train)} | {100 * fg * 1e9 / b.matmul_peak:.0f}%'
        name = os.path.basename(b.config)
        rows = b.ratios() or {'(no peer)': None}
        for peer, q in rows.items():
            cells = (' | '.join(_num(q[k]) for k in ('forward', 'train', 'forward_mem', 'train_mem'))
                     if q else '- | - | - | -')
            lines.append(f'| {name} | {b.family} | {B}x{H}x{W} | {peer} | {cells} | {own} |')
    return '\n'.join(lines)


if __name__ == '__main__':
    raise SystemExit('tools/benchmark_harness.py: not a command: the measurements of tools/benchmark.py, '
                     'which runs them (tools/benchmark.py --help)')
