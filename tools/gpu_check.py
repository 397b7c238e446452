#!/usr/bin/env python
"""DenseKit's CUDA paths checked in one run, printed as one summary table.

    bash tools/gpu_check.sh                        # on a GPU machine: wheels, mmcv build, then this
    python tools/gpu_check.py                      # the checks alone, in an environment that has mmcv
    python tools/gpu_check.py --only amp attention --rows rows.jsonl

Sections (``--only``):

* ``mmcv``: mmcv's compiled ops were built for this GPU's architecture only,
  and ``nms`` / ``RoIAlign`` (forward and backward) on CUDA agree with the CPU ops;
* ``amp``: every family's backbone, forward and backward under fp16 and bf16
  autocast against fp32 (bounds: :data:`OUT_ULPS`, :data:`GRAD_ULPS`), finite
  gradients, and a GradScaler that does not skip every fp16 step;
* ``attention``: the training attention (``layers.biased_attention`` with a
  ``TableBias``: our recomputing backward) against plain SDPA with the bias
  materialised under autograd, same results, time and peak memory;
* ``train``: ``tools/train.py --amp`` 30 iterations on the segmentation and
  detection demo configs (the loss falls), a 1-process NCCL DDP run and a
  1-process FSDP run;
* ``benchmark``: ``tools/benchmark.py --device cuda --amp fp16 --scope model``,
  UPerNet-Swin-T (512, batch 8) against mmseg's backbone and Mask R-CNN-Swin-T
  (800x1344, batch 2: a 1333x800 image padded to 32 as mmdet's data preprocessor
  does) against mmdet's, same weights; goal: train-step time ratio <= 0.83.

Without CUDA, the checks that can run do so on the CPU with tiny models and
inputs (``amp``, ``attention``; ``train`` with ``--cpu-train``), so their logic
is exercised; the CUDA-only rows are reported SKIP. Exit status 1 if a row FAILs.
"""
from __future__ import annotations

import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse
import glob
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('KINETO_LOG_LEVEL', '6')  # the profiler (CPU memory) prints USDT notes below 6

import torch

SECTIONS = ('mmcv', 'amp', 'attention', 'train', 'benchmark')

# Relative error bounds, ||low - fp32|| / ||fp32||, in units of the dtype's unit
# roundoff u (fp16: 2^-11, bf16: 2^-8). Autocast rounds the inputs and output of
# each matmul/conv to the low dtype (accumulating in fp32) and keeps norms and
# softmax in fp32: about u per rounding, adding up like a random walk, so about
# sqrt(n) u over n roundings on the path: ~10 per block, <= 24 blocks -> ~16 u.
# Gradients pass every rounding twice (forward and backward matmuls) and through
# the norms' Jacobians: 3x the outputs' bound.
OUT_ULPS, GRAD_ULPS = 20, 60
UNIT_ROUNDOFF = {'fp16': 2.0 ** -11, 'bf16': 2.0 ** -8, 'fp32': 2.0 ** -24}
DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16, 'fp32': torch.float32}

# the real variants (GPU) are the seg suite's backbones; tiny ones stand in on the CPU
FAMILY_CONFIGS = {
    'swin': 'configs/upernet_swin_ade20k.py',
    'vit': 'configs/vit/upernet_vit-b16_160k_ade20k.py',
    'mae': 'configs/mae/upernet_mae-vit-b16_100e_ade20k.py',
    'vitae': 'configs/vitae/upernet_vitae-s_160k_ade20k.py',
    'levit': 'configs/levit/upernet_levit-256_160k_ade20k.py',
    'coatnet': 'configs/coatnet/upernet_coatnet-0_160k_ade20k.py',
    'convmixer': 'configs/convmixer/upernet_convmixer-1536-20_160k_ade20k.py',
}
TINY = {
    'swin': dict(type='densekit.SwinTransformer', arch=dict(embed_dims=16, depths=(2, 1, 1, 1),
                                                            num_heads=(1, 2, 2, 4)), window_size=7),
    'vit': dict(type='densekit.VisionTransformer', arch=dict(embed_dims=32, depth=2, num_heads=2),
                out_indices=(0, 1), out_norm='last'),
    'mae': dict(type='densekit.MAEViT', arch=dict(embed_dims=32, depth=2, num_heads=2), out_indices=(0, 1)),
    'vitae': dict(type='densekit.ViTAE', arch=dict(embed_dims=(8, 8, 16), token_dims=(8, 16, 32), depth=1,
                                                   num_heads=2, mlp_ratio=2., group=4)),
    'levit': dict(type='densekit.LeViT', arch=dict(embed_dims=(32, 48, 64), key_dim=8, num_heads=(2, 3, 4),
                                                   depths=(1, 1, 1))),
    'coatnet': dict(type='densekit.CoAtNet', arch=dict(stem_width=16, embed_dims=(16, 32, 64, 128),
                                                       depths=(1, 1, 1, 1)), pretrain_img_size=32),
    'convmixer': dict(type='densekit.ConvMixer', arch=dict(dim=16, depth=3, kernel_size=5, patch_size=7,
                                                           act='gelu'), out_indices=(0, 2)),
}

DEMOS = {'seg': 'configs/demo/upernet_swin-demo_synthetic-ade.py',
         'det': 'configs/demo/mask-rcnn_swin-demo_synthetic-coco.py'}
BENCHMARKS = (  # name, config, H, W, batch, peer
    ('UPerNet-Swin-T', 'configs/upernet_swin_ade20k.py', 512, 512, 8, 'mmseg'),
    ('Mask R-CNN-Swin-T', 'configs/swin/mask-rcnn_swin-t_fpn_1x_coco.py', 800, 1344, 2, 'mmdet'),
)
TRAIN_GOAL = 0.83  # ours / peer train-step time: 1.2x the peer's speed


# -- the table -----------------------------------------------------------------


@dataclass
class Row:
    section: str
    check: str
    status: str  # PASS | FAIL | SKIP | MISS (ran, a performance goal not met)
    detail: str
    seconds: float


class Report:
    """Rows as they complete: printed at once (a run cut short still shows
    what it did) and appended to ``rows_file`` (JSON lines) when given."""

    def __init__(self, rows_file: str | None, deadline: float | None = None):
        import threading
        self.rows_file = rows_file
        self.deadline = deadline
        self.rows: list[Row] = []
        self.lock = threading.Lock()

    def time_left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.time()

    def add(self, row: Row) -> None:
        with self.lock:
            self._add(row)

    def _add(self, row: Row) -> None:
        self.rows.append(row)
        print(f'[gpu_check] {row.status:4} {row.section}/{row.check}: {row.detail} ({row.seconds:.1f} s)',
              flush=True)
        if self.rows_file:
            with open(self.rows_file, 'a') as f:
                f.write(json.dumps(asdict(row)) + '\n')

    @contextmanager
    def check(self, section: str, name: str):
        """Run the body as one row: it sets ``r['status']``/``r['detail']``; an
        exception makes the row FAIL with its one-line message."""
        r = {'status': 'PASS', 'detail': ''}
        start = time.perf_counter()
        try:
            yield r
        except Exception as err:  # noqa: BLE001 -- every failure becomes a row, the run goes on
            where = traceback.extract_tb(err.__traceback__)[-1]
            r['status'] = 'FAIL'
            msg = ' '.join(str(err).split())[:300]
            r['detail'] = f'{type(err).__name__}: {msg} ({os.path.basename(where.filename)}:{where.lineno})'
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        self.add(Row(section, name, r['status'], r['detail'], time.perf_counter() - start))

    def skip(self, section: str, name: str, why: str) -> None:
        self.add(Row(section, name, 'SKIP', why, 0.0))

    def out_of_time(self, section: str, name: str, need: float) -> bool:
        """True (and a SKIP row) when less than ``need`` seconds are left before
        the deadline: the table must be printed before the run is stopped."""
        if self.time_left() >= need:
            return False
        self.skip(section, name, f'out of time: {max(self.time_left(), 0):.0f} s left of the run\'s budget, '
                                 f'about {need:.0f} s needed')
        return True


def all_rows(report: Report) -> list[Row]:
    """This run's rows, or every row of ``rows_file`` (earlier runs' too); of
    a check run twice (skipped for time, then run again), the last row."""
    if not report.rows_file or not os.path.exists(report.rows_file):
        return report.rows
    with open(report.rows_file) as f:
        rows = [Row(**json.loads(line)) for line in f if line.strip()]
    last = {(r.section, r.check): r for r in rows}
    return [r for r in rows if last[(r.section, r.check)] is r]


def table(rows: list[Row]) -> str:
    lines = ['| section | check | status | detail | s |', '|---|---|---|---|---:|']
    lines += [f'| {r.section} | {r.check} | {r.status} | {r.detail.replace("|", "/")} | {r.seconds:.1f} |'
              for r in rows]
    counts = {s: sum(r.status == s for r in rows) for s in ('PASS', 'FAIL', 'MISS', 'SKIP')}
    lines.append('\n' + ', '.join(f'{n} {s}' for s, n in counts.items()) +
                 f'; {sum(r.seconds for r in rows):.0f} s in checks')
    return '\n'.join(lines)


def environment() -> str:
    from benchmark_harness import device_name
    gpu = torch.cuda.is_available()
    return (f'{device_name("cuda" if gpu else "cpu")}; torch {torch.__version__}, '
            f'{f"CUDA {torch.version.cuda}, " if gpu else ""}Python {platform.python_version()}, {os.cpu_count()} CPUs')


# -- helpers -------------------------------------------------------------------


def sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 (b the reference)."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def exact_fp32(device: str) -> None:
    """fp32 references in full fp32: cuDNN convolutions default to TF32 (as
    few mantissa bits as fp16), which would blur the comparison."""
    if device == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def outputs(out) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else [t for o in out for t in outputs(o)]


# -- mmcv ----------------------------------------------------------------------


def check_mmcv(report: Report, device: str) -> None:
    with report.check('mmcv', 'ops build') as r:
        import mmcv
        import mmcv._ext  # noqa: F401  (the compiled ops)
        from mmcv.ops import get_compiling_cuda_version
        ext = sys.modules['mmcv._ext']
        built = os.environ.get('GPU_CHECK_MMCV_KEY', 'not built by tools/gpu_check.sh')
        cuda_ops = get_compiling_cuda_version()
        r['detail'] = f'mmcv {mmcv.__version__}, ops compiled with CUDA {cuda_ops}; wheel {built}'
        if device == 'cuda':
            want = 'sm_{}{}'.format(*torch.cuda.get_device_capability())
            if cuda_ops == 'not available':
                raise RuntimeError(f'mmcv._ext has no CUDA ops ({ext.__file__}): rebuild with FORCE_CUDA=1')
            if shutil.which('cuobjdump'):
                listing = subprocess.run(['cuobjdump', '--list-elf', ext.__file__], capture_output=True,
                                         text=True).stdout
                archs = sorted(set(re.findall(r'sm_\d+a?', listing)))
                r['detail'] += f'; cubins for {",".join(archs) or "none"} (device {want})'
                if archs != [want]:
                    r['status'] = 'FAIL'
            else:
                r['detail'] += '; cuobjdump not found: architectures not listed'
    if device != 'cuda':
        report.skip('mmcv', 'nms CUDA vs CPU', 'no CUDA device')
        report.skip('mmcv', 'RoIAlign CUDA vs CPU', 'no CUDA device')
        return
    with report.check('mmcv', 'nms CUDA vs CPU') as r:
        from mmcv.ops import nms
        g = torch.Generator().manual_seed(0)
        xy = torch.rand(2000, 2, generator=g) * 400
        boxes = torch.cat([xy, xy + 10 + torch.rand(2000, 2, generator=g) * 100], 1)
        scores = torch.rand(2000, generator=g)
        _, keep_cpu = nms(boxes, scores, 0.5)
        _, keep_cuda = nms(boxes.cuda(), scores.cuda(), 0.5)
        same = keep_cpu.tolist() == keep_cuda.cpu().tolist()
        r['detail'] = f'2000 boxes, IoU 0.5: kept {len(keep_cpu)} (CPU) / {len(keep_cuda)} (CUDA), ' \
                      f'{"identical" if same else "DIFFERENT"} indices'
        r['status'] = 'PASS' if same else 'FAIL'
    with report.check('mmcv', 'RoIAlign CUDA vs CPU') as r:
        from mmcv.ops import roi_align
        g = torch.Generator().manual_seed(0)
        feats = torch.randn(2, 16, 50, 68, generator=g)
        xy = torch.rand(256, 2, generator=g) * 150
        rois = torch.cat([torch.randint(0, 2, (256, 1), generator=g).float(), xy,
                          xy + 8 + torch.rand(256, 2, generator=g) * 100], 1)
        grad = torch.randn(256, 16, 7, 7, generator=g)
        res = {}
        for dev in ('cpu', 'cuda'):
            f = feats.to(dev).requires_grad_()
            out = roi_align(f, rois.to(dev), (7, 7), 0.25, 2, 'avg', True)
            out.backward(grad.to(dev))
            res[dev] = (out.cpu(), f.grad.cpu())
        e_out, e_grad = rel_err(res['cuda'][0], res['cpu'][0]), rel_err(res['cuda'][1], res['cpu'][1])
        bound = 1e-5  # fp32 both; the CUDA backward sums with atomicAdd in another order
        r['detail'] = f'256 RoIs 7x7, fp32: rel. error forward {e_out:.1e}, backward {e_grad:.1e} (<= {bound:.0e})'
        r['status'] = 'PASS' if max(e_out, e_grad) <= bound else 'FAIL'


# -- amp -----------------------------------------------------------------------


def build_backbone(family: str, device: str) -> torch.nn.Module:
    """The family's real variant (GPU: its seg config's backbone) or tiny one
    (CPU), weights randomised everywhere (a zero-initialised bias table would
    hide its error), no dropout or stochastic depth. Built in DenseKit's scope
    alone: this section runs while mmcv is still being built (no toolbox import)."""
    from mmengine.config import Config

    import densekit.backbones
    if device == 'cuda':
        cfg = Config.fromfile(os.path.join(ROOT, FAMILY_CONFIGS[family]), import_custom_modules=False)
        bcfg = dict(cfg.model.backbone, init_cfg=None)
    else:
        bcfg = dict(TINY[family])
    # the class itself: the registry's scope would import heads/, which imports mmpretrain and mmcv
    cls = getattr(densekit.backbones, bcfg.pop('type').split('.')[-1])
    torch.manual_seed(0)
    model = cls(**bcfg)
    model.reset_parameters()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.
        if hasattr(m, 'drop_prob'):  # timm's DropPath
            m.drop_prob = 0.
    return model.to(device).train()


def fwd_bwd(model: torch.nn.Module, x: torch.Tensor, weights: list[torch.Tensor] | None, amp: str, device: str
            ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Outputs, the fixed random weights ``w`` (drawn when None) and the loss
    sum over levels of mean(out * w): a loss of plain means has near-zero
    gradients behind a norm layer."""
    model.zero_grad(set_to_none=True)
    ctx = torch.autocast(device, dtype=DTYPES[amp]) if amp != 'fp32' else torch.autocast(device, enabled=False)
    with ctx:
        outs = outputs(model(x))
    if weights is None:
        g = torch.Generator(device=device).manual_seed(1)
        weights = [torch.randn(o.shape, device=device, generator=g) for o in outs]
    loss = sum((o.float() * w).mean() for o, w in zip(outs, weights))
    return outs, weights, loss


def param_grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in model.parameters() if p.grad is not None]


def check_amp(report: Report, device: str) -> None:
    exact_fp32(device)
    # GPU: the seg configs' crop; CPU: 64 keeps 2x2+ maps in the last stages (train-mode
    # BatchNorm over 2 values amplifies rounding: LeViT's fp16 gradients at 32 were off by 10x)
    size, batch = ((512, 512), 2) if device == 'cuda' else ((64, 64), 2)
    for family in FAMILY_CONFIGS:
        model = None
        for amp in ('fp16', 'bf16'):
            if report.out_of_time('amp', f'{family} {amp}', 30):
                continue
            with report.check('amp', f'{family} {amp}') as r:
                if model is None:
                    model = build_backbone(family, device)
                    x = torch.randn(batch, 3, *size, device=device, generator=torch.Generator(device=device)
                                    .manual_seed(0))
                    ref_outs, weights, loss = fwd_bwd(model, x, None, 'fp32', device)
                    loss.backward()
                    ref_grads = torch.cat([g.flatten() for g in param_grads(model)])
                    n_grads = len(param_grads(model))
                    ref_outs = [o.detach() for o in ref_outs]
                outs, _, loss = fwd_bwd(model, x, weights, amp, device)
                loss.backward()
                grads = param_grads(model)
                finite = all(bool(torch.isfinite(g).all()) for g in grads)
                u = UNIT_ROUNDOFF[amp]
                e_out = max(rel_err(o, ref) for o, ref in zip(outs, ref_outs))
                e_grad = rel_err(torch.cat([g.flatten() for g in grads]), ref_grads)
                ok = finite and e_out <= OUT_ULPS * u and e_grad <= GRAD_ULPS * u and len(grads) == n_grads
                dtypes = sorted({str(o.dtype).replace('torch.', '') for o in outs})
                r['detail'] = (f'{type(model).__name__} {tuple(x.shape)}: outputs {"/".join(dtypes)}, rel. error '
                               f'{e_out:.1e} (<= {OUT_ULPS * u:.1e}), grads {e_grad:.1e} (<= {GRAD_ULPS * u:.1e}), '
                               f'{"finite" if finite else "NOT FINITE"}')
                if amp == 'fp16':
                    taken, steps = scaler_steps(model, x, weights, device, steps=8 if device == 'cuda' else 2)
                    r['detail'] += f'; GradScaler took {taken}/{steps} steps'
                    ok = ok and taken > 0
                r['status'] = 'PASS' if ok else 'FAIL'
        del model


def scaler_steps(model: torch.nn.Module, x: torch.Tensor, weights, device: str, steps: int = 8
                 ) -> tuple[int, int]:
    """fp16 AdamW steps through a GradScaler from its default scale (2^16): how
    many were taken (a skipped step lowers the scale; its loss was not finite)."""
    import copy
    model = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device)
    taken = 0
    for _ in range(steps):
        _, _, loss = fwd_bwd(model, x, weights, 'fp16', device)
        scaler.scale(loss).backward()
        before = scaler.get_scale()
        scaler.step(opt)
        scaler.update()
        taken += scaler.get_scale() >= before
        opt.zero_grad(set_to_none=True)
    return taken, steps


# -- attention -----------------------------------------------------------------


def attention_cases(device: str) -> list[tuple[str, dict]]:
    """Shapes of the training attention where a TableBias is used: Swin-T's
    stage-1 shifted windows and CoAtNet-0's stage-3 global attention at 512,
    batch 8 (GPU); small versions of both on the CPU."""
    if device == 'cuda':
        return [('Swin-T stage 1 shifted, 512 b8', dict(windows=361, batch=8, heads=3, n=49, dim=32, mask=True,
                                                        table=169)),
                ('CoAtNet-0 stage 3, 512 b8', dict(windows=1, batch=8, heads=8, n=1024, dim=32, mask=False,
                                                   table=63 * 63))]
    return [('Swin shifted (tiny)', dict(windows=4, batch=2, heads=2, n=49, dim=16, mask=True, table=169)),
            ('CoAtNet global (tiny)', dict(windows=1, batch=2, heads=2, n=64, dim=16, mask=False, table=15 * 15))]


def check_attention(report: Report, device: str) -> None:
    from densekit.backbones.layers import TableBias, _attend, biased_attention
    from benchmark_harness import peak_memory
    amp = 'fp16' if device == 'cuda' else 'fp32'  # CPU: fp32, the dtype CPU training runs in
    dtype = DTYPES[amp]
    for name, c in attention_cases(device):
        if report.out_of_time('attention', name, 20):
            continue
        with report.check('attention', name) as r:
            g = torch.Generator(device=device).manual_seed(0)
            B, G, h, N, d = c['batch'] * c['windows'], c['windows'], c['heads'], c['n'], c['dim']
            q, k, v = (torch.randn(B, h, N, d, device=device, dtype=dtype, generator=g) for _ in range(3))
            table = torch.randn(h, c['table'], device=device, generator=g) * 0.5
            index = torch.randint(0, c['table'], (N, N), device=device, generator=g)
            mask = None
            if c['mask']:  # Swin's shift mask: 0 within a region, -100 across
                region = torch.randint(0, 4, (G, N), device=device, generator=g)
                mask = ((region[:, :, None] != region[:, None, :]).float() * -100.).unsqueeze(1)
            grad_out = torch.randn(B, h, N, d, device=device, dtype=dtype, generator=g)
            leaves = [t.requires_grad_() for t in (q, k, v, table)]

            def ours():
                return biased_attention(q, k, v, TableBias(table, index, mask))

            def plain():  # autograd through the gathered bias, SDPA with a gradient for its mask
                bias = TableBias(table.to(dtype), index, None if mask is None else mask.to(dtype)).materialize()
                return _attend(q, k, v, bias, d ** -0.5)

            def step(fn):
                for t in leaves:
                    t.grad = None
                fn().backward(grad_out)

            res = {}
            for label, fn in (('ours', ours), ('plain', plain)):  # a warm-up, the results, the peak memory
                step(fn)
                res[label] = [fn().detach()] + [t.grad.clone() for t in leaves]
                res[label + '_mem'] = peak_memory(lambda: step(fn), device)
            times = {'ours': [], 'plain': []}
            for _ in range(10 if device == 'cuda' else 3):  # interleaved
                for label, fn in (('ours', ours), ('plain', plain)):
                    sync(device)
                    t0 = time.perf_counter()
                    step(fn)
                    sync(device)
                    times[label].append(time.perf_counter() - t0)
            errs = [rel_err(a, b) for a, b in zip(res['ours'][:5], res['plain'][:5])]
            bound = OUT_ULPS * UNIT_ROUNDOFF[amp] if amp != 'fp32' else 1e-4
            t_o, t_p = statistics.median(times['ours']), statistics.median(times['plain'])
            faster = 'ours (recompute)' if t_o <= t_p else 'plain SDPA'
            r['detail'] = (f'{amp} q/k/v {tuple(q.shape)}: fwd+bwd ours {1e3 * t_o:.2f} ms / plain {1e3 * t_p:.2f} '
                           f'ms = {t_o / t_p:.2f}, peak ours {res["ours_mem"] / 2**20:.0f} MB / plain '
                           f'{res["plain_mem"] / 2**20:.0f} MB; faster: {faster}; out/dq/dk/dv/dtable rel. '
                           f'diff max {max(errs):.1e} (<= {bound:.0e})')
            r['status'] = 'PASS' if max(errs) <= bound else 'FAIL'


# -- train ---------------------------------------------------------------------


def derived_config(work: str, base: str, iters: int, interval: int) -> str:
    """A config that inherits ``base`` and only shortens it: ``iters``
    iterations at the base's learning rate (no warm-up), the loss logged every
    ``interval`` as the mean of those iterations, no validation."""
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, f'{os.path.splitext(os.path.basename(base))[0]}_{iters}it.py')
    with open(path, 'w') as f:
        f.write(f"""_base_ = [{os.path.join(ROOT, base)!r}]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters}, val_interval={iters + 1})
val_cfg = val_dataloader = val_evaluator = None
test_cfg = test_dataloader = test_evaluator = None
param_scheduler = []
log_processor = dict(by_epoch=False, window_size={interval})
default_hooks = dict(logger=dict(interval={interval}),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval={iters}))
""")
    return path


def logged_losses(work_dir: str) -> list[float]:
    """The 'loss' values mmengine's LocalVisBackend wrote (vis_data/scalars.json)."""
    files = sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(f'no vis_data/scalars.json under {work_dir}')
    with open(files[-1]) as f:
        return [json.loads(line)['loss'] for line in f if '"loss"' in line]


def loss_fell(losses: list[float]) -> tuple[bool, str]:
    """Finite, and the last logged window's mean below the first's."""
    if len(losses) < 2:
        return False, f'{len(losses)} logged loss value(s): need 2'
    ok = all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    return ok, f'loss {losses[0]:.3f} -> {losses[-1]:.3f} ({len(losses)} windows)'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_train(config: str, work_dir: str, data_root: str, extra: list[str], nproc: int = 0,
              log_file: str | None = None, options: list[str] = (), timeout: int = 300) -> None:
    """tools/train.py in a fresh process (through torchrun when ``nproc``)."""
    launch = ([sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}',
               f'--master_port={free_port()}'] if nproc else [sys.executable])
    cmd = [*launch, os.path.join(ROOT, 'tools', 'train.py'), config, '--work-dir', work_dir, *extra,
           '--cfg-options', f'data_root={data_root}', *options]
    # tests/data: the CPU runs' config imports its hooks from there
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, 'tests', 'data'), ROOT,
                                                       os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if log_file:
        with open(log_file, 'a') as f:
            f.write(f'$ {" ".join(cmd)}\n{proc.stdout}\n{proc.stderr}\n')
    if proc.returncode:
        last = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()][-1:] or ['?']
        raise RuntimeError(f'tools/train.py exited {proc.returncode}: {last[0][:250]}')


def check_train(report: Report, device: str, work: str, cpu_train: bool) -> None:
    """The four runs at once on a GPU (they are not timed; one after the
    other they would take most of the run's budget), one by one on the CPU."""
    from concurrent.futures import ThreadPoolExecutor
    names = ['seg --amp 30 it', 'det --amp 30 it', 'DDP NCCL 1 process', 'FSDP 1 process']
    if device != 'cuda' and not cpu_train:
        for n in names:
            report.skip('train', n, 'no CUDA device (--amp and NCCL need one; --cpu-train runs them on CPU)')
        return
    if device == 'cuda' and report.out_of_time('train', ', '.join(names), 150):
        return
    from synthetic_ade import generate_ade_like
    from synthetic_coco import generate_coco_like
    cuda = device == 'cuda'
    if cuda:  # the demos' data at the demos' image size, fewer images (30 x 8 are drawn)
        ade = generate_ade_like(os.path.join(work, 'synthetic_ade'), num_train=96, num_val=8)['root']
        coco = generate_coco_like(os.path.join(work, 'synthetic_coco'), num_train=96, num_val=8)['root']
        configs = {k: (v, ade if k == 'seg' else coco) for k, v in DEMOS.items()}
        iters, interval, amp, backend = 30, 5, ['--amp'], 'nccl'
    else:  # the tests' tiny UPerNet (GroupNorm: SyncBN needs CUDA), gloo, fp32: the commands and log reading
        ade = generate_ade_like(os.path.join(work, 'synthetic_ade'), num_train=8, num_val=2, size=(64, 64))['root']
        configs = {'seg': ('tests/data/tiny_ddp.py', ade)}
        iters, interval, amp, backend = 6, 3, [], 'gloo'
        report.skip('train', names[1], 'no CUDA device: the detection demo runs here with CUDA only')

    def single(key: str, name: str) -> None:
        with report.check('train', name if cuda else f'{key} fp32 {iters} it (CPU)') as r:
            base, data = configs[key]
            wd = os.path.join(work, f'train_{key}')
            run_train(derived_config(work, base, iters, interval), wd, data, amp, log_file=wd + '.log')
            ok, r['detail'] = loss_fell(logged_losses(wd))
            if cuda:
                dumped = open(glob.glob(os.path.join(wd, '*.py'))[0]).read()
                amp_on = 'AmpOptimWrapper' in dumped
                r['detail'] += f'; optim wrapper {"AmpOptimWrapper" if amp_on else "NOT AmpOptimWrapper"}'
                ok = ok and amp_on
            r['status'] = 'PASS' if ok else 'FAIL'

    def distributed(name: str, extra: list[str]) -> None:
        label = name if cuda else name.replace('NCCL', 'gloo') + ' (CPU)'
        with report.check('train', label) as r:
            base, data = configs['seg']
            wd = os.path.join(work, 'train_' + name.split()[0].lower())
            short = derived_config(wd + '_cfg', base, 10 if cuda else 2, 2 if cuda else 1)
            run_train(short, wd, data, ['--launcher', 'pytorch', *extra], nproc=1, log_file=wd + '.log',
                      options=[f'env_cfg.dist_cfg.backend={backend}'])
            losses = logged_losses(wd)
            logs = ''.join(open(p).read() for p in glob.glob(os.path.join(wd, '*', '*.log')))
            dist_on = 'Distributed training: True' in logs
            finite = bool(losses) and all(math.isfinite(x) for x in losses)
            r['detail'] = (f'{len(losses)} logged losses, last {losses[-1]:.3f}, ' if losses else 'no loss logged, ') \
                + f'distributed: {dist_on}, backend {backend}' + (', fp32' if 'fsdp' in extra else '')
            r['status'] = 'PASS' if finite and dist_on else 'FAIL'

    jobs = [(single, key, name) for key, name in (('seg', names[0]), ('det', names[1])) if key in configs]
    jobs += [(distributed, names[2], amp), (distributed, names[3], ['--strategy', 'fsdp'])]
    with ThreadPoolExecutor(max_workers=len(jobs) if cuda else 1) as pool:
        for future in [pool.submit(*job) for job in jobs]:
            future.result()
    with open(os.path.join(work, 'train.log'), 'w') as out:  # one log of all runs, in order
        for log in sorted(glob.glob(os.path.join(work, 'train_*.log'))):
            out.write(open(log).read())


# -- benchmark -----------------------------------------------------------------


def check_benchmark(report: Report, device: str, work: str, results: str | None) -> None:
    for name, config, H, W, batch, peer in BENCHMARKS:
        label = f'{name} {H}x{W} b{batch} fp16 vs {peer}'
        if device != 'cuda':
            report.skip('benchmark', label, 'no CUDA device')
            continue
        if report.out_of_time('benchmark', label, 90):
            continue
        with report.check('benchmark', label) as r:
            out = os.path.join(work, f'bench_{peer}.json')
            cmd = [sys.executable, os.path.join(ROOT, 'tools', 'benchmark.py'), config, '--scope', 'model',
                   '--size', str(H), str(W), '--batch', str(batch), '--device', 'cuda', '--amp', 'fp16',
                   '--peers', peer, '--reps', '5', '--json', out] + (['--results', results] if results else [])
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  timeout=min(420, max(report.time_left() - 15, 30)))
            with open(os.path.join(work, 'benchmark.log'), 'a') as f:
                f.write(f'$ {" ".join(cmd)}\n{proc.stdout}\n{proc.stderr}\n')
            if proc.returncode:
                raise RuntimeError(f'tools/benchmark.py exited {proc.returncode}: '
                                   f'{(proc.stderr.strip().splitlines() or ["?"])[-1][:250]}')
            r['status'], r['detail'] = benchmark_row(out, peer)


def benchmark_row(path: str, peer: str) -> tuple[str, str]:
    """Status (PASS: the train-step goal met, else MISS) and detail of the
    first benchmark in ``path`` (tools/benchmark.py --json), ours against ``peer``."""
    from benchmark_harness import Benchmark, ModelResult
    with open(path) as f:
        d = json.load(f)[0]
    bench = Benchmark(**{**d, 'shape': tuple(d['shape']), 'results': [ModelResult(**r) for r in d['results']]})
    q = bench.ratios().get(peer)
    if q is None:
        raise RuntimeError(f'{peer} did not run: {bench.skipped.get(peer, "not in the results")}')
    weights = next(r.weights for r in bench.results if r.name == peer)
    return ('PASS' if q['train'] <= TRAIN_GOAL else 'MISS',
            f'ours/{peer}: train step {q["train"]:.2f} (goal <= {TRAIN_GOAL}), forward {q["forward"]:.2f}, peak '
            f'memory train {q["train_mem"]:.2f} forward {q["forward_mem"]:.2f}; ours '
            f'{bench.shape[0] / bench.ours.train:.1f} train img/s; weights {weights}')


# -- main ----------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', nargs='+', choices=SECTIONS, default=list(SECTIONS), help='sections to run')
    parser.add_argument('--device', choices=['auto', 'cuda', 'cpu'], default='auto',
                        help="'auto': cuda when available")
    parser.add_argument('--work-dir', help='scratch files and logs (default: a temporary directory)')
    parser.add_argument('--rows', help='append each row to this JSON-lines file; the table printed at the end '
                        'holds every row in it (several runs, one table)')
    parser.add_argument('--results', help='append the table, dated, with the device, to this results file '
                        '(the benchmark section writes its tables there too)')
    parser.add_argument('--cpu-train', action='store_true', help='without CUDA, run the train section on the CPU '
                        '(tiny config, fp32, gloo): its commands and log reading')
    parser.add_argument('--no-table', action='store_true', help='rows only (a later run prints the table)')
    args = parser.parse_args(argv)
    if os.environ.get('GPU_CHECK_ONLY'):  # tools/gpu_check.sh: a second run of some sections
        args.only = [s for s in args.only if s in os.environ['GPU_CHECK_ONLY'].split()]
    device = ('cuda' if torch.cuda.is_available() else 'cpu') if args.device == 'auto' else args.device
    if device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: torch sees no CUDA device')
    work = args.work_dir or tempfile.mkdtemp(prefix='gpu_check_')
    os.makedirs(work, exist_ok=True)
    deadline = os.environ.get('GPU_CHECK_DEADLINE')  # seconds since the epoch (tools/gpu_check.sh)
    report = Report(args.rows, float(deadline) if deadline else None)
    print(f'[gpu_check] {environment()}; sections {" ".join(args.only)}; work dir {work}', flush=True)
    import densekit  # noqa: F401  (registries)
    for section in SECTIONS:
        if section not in args.only:
            continue
        if section == 'mmcv':
            check_mmcv(report, device)
        elif section == 'amp':
            check_amp(report, device)
        elif section == 'attention':
            check_attention(report, device)
        elif section == 'train':
            check_train(report, device, work, args.cpu_train)
        else:
            check_benchmark(report, device, work, args.results)
    rows = all_rows(report)
    if not args.no_table:
        text = table(rows)
        print(f'\n## GPU check: {environment()}\n\n{text}', flush=True)
        if args.results:
            os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
            with open(args.results, 'a') as f:
                f.write(f'\n## GPU check, {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}: '
                        f'{environment()}\n\n`bash tools/gpu_check.sh` (tools/gpu_check.py)\n\n{text}\n')
    return 1 if any(r.status == 'FAIL' for r in rows) else 0


if __name__ == '__main__':
    sys.exit(main())
