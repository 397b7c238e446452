"""tools/gpu_check.sh without CUDA, as CI runs it: the CPU parts run on tiny
models, every CUDA-only row is reported SKIP, nothing FAILs; and the train
section's config and log reading, which run on the GPU only."""
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT
from tools import gpu_check

# (section, check) of every row a CPU run prints, and whether it runs there
CPU_ROWS = {('mmcv', 'ops build'): 'PASS', ('mmcv', 'nms CUDA vs CPU'): 'SKIP',
            ('mmcv', 'RoIAlign CUDA vs CPU'): 'SKIP',
            **{('amp', f'{f} {amp}'): 'PASS' for f in gpu_check.FAMILY_CONFIGS for amp in ('fp16', 'bf16')},
            ('attention', 'Swin shifted (tiny)'): 'PASS', ('attention', 'CoAtNet global (tiny)'): 'PASS',
            **{('train', n): 'SKIP' for n in ('seg --amp 30 it', 'det --amp 30 it', 'DDP NCCL 1 process',
                                               'FSDP 1 process')},
            **{('benchmark', f'{n} {h}x{w} b{b} fp16 vs {p}'): 'SKIP' for n, _, h, w, b, p in gpu_check.BENCHMARKS}}


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU mode is what CI runs')
def test_cpu_mode_runs_the_cpu_parts_and_skips_cuda(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_OUT=str(tmp_path), GPU_CHECK_WORK=str(tmp_path / 'w'),
               GPU_CHECK_RESULTS=str(tmp_path / 'results.md'))
    env.pop('OUT', None)
    proc = subprocess.run(['bash', str(ROOT / 'tools' / 'gpu_check.sh'), '--cpu'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f'{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}'
    rows = [json.loads(line) for line in (tmp_path / 'rows.jsonl').read_text().splitlines()]
    got = {(r['section'], r['check']): r['status'] for r in rows}
    assert got == CPU_ROWS, '\n'.join(f"{r['status']} {r['section']}/{r['check']}: {r['detail']}" for r in rows)
    assert all('no CUDA device' in r['detail'] for r in rows if r['status'] == 'SKIP')
    # the printed table: a line per row and the counts
    table = (tmp_path / 'table.md').read_text()
    assert table.count('\n| ') == len(rows) + 1  # + the header
    assert f"{list(CPU_ROWS.values()).count('PASS')} PASS, 0 FAIL, 0 MISS, " \
           f"{list(CPU_ROWS.values()).count('SKIP')} SKIP" in table


def test_derived_train_config_is_a_short_iteration_run(tmp_path):
    """Both demos (the detection one is epoch-based) become 30 iterations
    without warm-up, validation or an epoch-based logger."""
    from mmengine.config import Config
    for demo in gpu_check.DEMOS.values():
        cfg = Config.fromfile(gpu_check.derived_config(str(tmp_path), demo, 30, 5), import_custom_modules=False)
        assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=30, val_interval=31)
        assert cfg.param_scheduler == [] and cfg.val_dataloader is None and cfg.val_cfg is None
        assert cfg.log_processor.by_epoch is False and cfg.log_processor.window_size == 5
        assert cfg.default_hooks.checkpoint.by_epoch is False and cfg.default_hooks.logger.interval == 5


def test_loss_reading(tmp_path):
    run = tmp_path / '20260101_000000' / 'vis_data'
    run.mkdir(parents=True)
    lines = [dict(lr=1e-3, loss=x, iter=5 * (i + 1)) for i, x in enumerate([2.1, 1.7, 1.2])]
    (run / 'scalars.json').write_text(''.join(json.dumps(d) + '\n' for d in lines + [dict(mIoU=1.0, step=15)]))
    losses = gpu_check.logged_losses(str(tmp_path))
    assert losses == [2.1, 1.7, 1.2] and gpu_check.loss_fell(losses)[0]
    assert not gpu_check.loss_fell([1.2, 1.7])[0]  # rose
    assert not gpu_check.loss_fell([2.0, float('nan'), 1.0])[0]
    assert not gpu_check.loss_fell([2.0])[0]  # one window says nothing


def test_benchmark_row_reads_tools_benchmark_json(tmp_path):
    """The ratios of the JSON that tools/benchmark.py --json writes (the
    dataclasses themselves), and the goal: train-step time <= 0.83 of the peer's."""
    from dataclasses import asdict

    from densekit.benchmark import Benchmark, ModelResult
    ours = ModelResult('densekit', 10, 'ours', forward_s=[1., 2., 3.], train_s=[4., 4., 4.], forward_peak=50,
                       train_peak=80)
    for peer_train, status in ((5., 'PASS'), (4., 'MISS')):
        peer = ModelResult('mmseg', 10, 'copied (5/5)', forward_s=[2., 2., 2.], train_s=[peer_train] * 3,
                           forward_peak=100, train_peak=100)
        bench = Benchmark('c.py', 'SwinTransformer', (8, 3, 512, 512), 'cuda', 'fp16', 16, 1, 1., '', [ours, peer])
        path = tmp_path / 'bench.json'
        path.write_text(json.dumps([asdict(bench)]))
        got, detail = gpu_check.benchmark_row(str(path), 'mmseg')
        assert got == status
        assert f'train step {4 / peer_train:.2f}' in detail and 'forward 1.00' in detail  # medians of ratios
        assert 'memory train 0.80 forward 0.50' in detail and '2.0 train img/s' in detail and 'copied (5/5)' in detail
    with pytest.raises(RuntimeError, match='mmdet did not run'):
        gpu_check.benchmark_row(str(path), 'mmdet')
