"""tools/benchmark.py and tools/benchmark_harness.py on tiny models and inputs.

Correctness only (the tool runs, measures every model, computes its ratios
from its own measurements, builds peers of the same architecture with the same
weights); no timing assertions: speed lives in the benchmark's output.
"""
import json
import re
from statistics import median

import pytest
import torch

from tests.helpers import run_main, run_tool
from benchmark_harness import (Benchmark, build_models, build_ours, build_peers, cpu_peak_memory, model_workload,
                                run_benchmark, synthetic_batch)
from densekit.config import load_config, task_of

TINY_SEG, TINY_DET = 'tests/data/tiny_upernet_swin.py', 'tests/data/tiny_mask-rcnn_swin.py'


def tiny_swin() -> dict:
    # a fresh dict each time: mmengine pops _delete_ while merging
    return {'model.backbone.arch': dict(_delete_=True, embed_dims=16, depths=[1, 2, 1, 1], num_heads=[1, 2, 2, 4])}


def tiny_vit() -> dict:
    return {'model.backbone.arch': dict(_delete_=True, embed_dims=32, depth=4, num_heads=2),
            'model.backbone.out_indices': (1, 3)}


@pytest.fixture(scope='module')
def swin_bench() -> Benchmark:
    return run_benchmark('configs/upernet_swin_ade20k.py', size=32, batch=2, reps=2, peers=['timm', 'mmseg'],
                         cfg_options=tiny_swin())


def test_reports_ours_and_each_peer_with_measurements(swin_bench):
    b = swin_bench
    assert [r.name for r in b.results] == ['densekit', 'timm', 'mmseg']
    assert b.shape == (2, 3, 32, 32) and b.family == 'SwinTransformer'
    for r in b.results:
        assert len(r.forward_s) == len(r.train_s) == 2 and min(r.forward_s + r.train_s) > 0
        assert r.forward_peak > 0 and r.train_peak > r.forward_peak  # training keeps activations and grads
    assert b.flops > 0 and b.matmul_peak > 0


def test_ratios_come_from_the_measured_medians(swin_bench):
    ours = swin_bench.ours
    for peer in swin_bench.results[1:]:
        q = swin_bench.ratios()[peer.name]
        # time ratios pair each repetition's runs, then take the median
        assert q['forward'] == pytest.approx(median(a / b for a, b in zip(ours.forward_s, peer.forward_s)))
        assert q['train'] == pytest.approx(median(a / b for a, b in zip(ours.train_s, peer.train_s)))
        assert q['train_mem'] == pytest.approx(ours.train_peak / peer.train_peak)
        assert f'| {peer.name} |' in swin_bench.table() and f'{q["train"]:.2f}' in swin_bench.table()
    fwd, train = swin_bench.gflops(ours)
    assert fwd == pytest.approx(2 * swin_bench.flops / ours.forward / 1e9)


def test_mm_peer_is_the_same_network_with_the_same_weights():
    cfg = load_config('configs/upernet_swin_ade20k.py', tiny_swin())
    torch.manual_seed(0)
    ours = build_ours(cfg)
    (name, peer, note), = build_peers(ours, (64, 64), ['mmseg'])[0]
    n = len(ours.state_dict())
    assert note == f'copied ({n}/{n})'
    assert sum(p.numel() for p in peer.parameters()) == sum(p.numel() for p in ours.parameters())
    x = torch.randn(1, 3, 64, 64)
    ours.eval()
    peer.eval()  # mmseg's train() returns None
    with torch.no_grad():
        for a, b in zip(ours(x), peer(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_timm_peer_returns_the_same_levels_with_the_same_weights():
    cfg = load_config('configs/vit/upernet_vit-b16_160k_ade20k.py', tiny_vit())
    ours = build_ours(cfg)
    peers, skipped = build_peers(ours, (64, 64))
    assert not skipped and [p[0] for p in peers] == ['timm', 'mmseg', 'mmpretrain']
    timm_peer = peers[0][1]
    ours.load_pretrained_state(timm_peer.model.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    ours.eval()
    timm_peer.eval()
    with torch.no_grad():
        outs = ours(x), timm_peer(x)
    assert len(outs[0]) == len(outs[1]) == 2
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_cpu_peak_memory_sees_torch_allocations():
    def step():
        a = torch.ones(1 << 18)  # 1 MiB, freed before b
        del a
        b = torch.ones(1 << 19)  # 2 MiB
        return b.sum()
    peak = cpu_peak_memory(step)
    assert 2 * 2**20 <= peak < 3 * 2**20


def test_bad_arguments_are_named():
    with pytest.raises(KeyError, match='unknown peer'):
        run_benchmark('configs/upernet_swin_ade20k.py', size=32, peers=['nope'], cfg_options=tiny_swin())
    with pytest.raises(ValueError, match='amp'):
        run_benchmark('configs/upernet_swin_ade20k.py', amp='int8')
    with pytest.raises(ValueError, match="scope must be 'backbone' or 'model', got 'head'"):
        run_benchmark('configs/upernet_swin_ade20k.py', scope='head')
    with pytest.raises(ValueError, match="unknown torch.compile backend 'inductr'"):
        run_benchmark('configs/upernet_swin_ade20k.py', compile_backend='inductr')


def test_cli_prints_tables_and_writes_json(tmp_path):
    out = tmp_path / 'bench.json'
    proc = run_tool('benchmark', 'configs/levit/levit-128s_1000e_imagenet.py', '--size', '64', '--batch', '2',
                    '--reps', '1',
                    '--peers', 'timm', '--json', str(out))
    assert '| densekit |' in proc.stdout and '| timm |' in proc.stdout and '## Summary' in proc.stdout
    assert 'USDT' not in proc.stderr  # the CPU profiler's profiler_start/stop notes
    assert 'malloc: freed memory stays mapped between steps' in proc.stdout  # says what and why
    (bench,) = json.loads(out.read_text())
    assert [r['name'] for r in bench['results']] == ['densekit', 'timm']
    assert bench['results'][1]['weights'].startswith('copied')
    bad = run_tool('benchmark', 'configs/no_such.py', check=False)
    assert bad.returncode == 1 and 'config file not found: configs/no_such.py' in bad.stderr


def test_levit_inference_bias_cache_follows_the_weights():
    """The attention biases kept for inference (backbones.fast_paths.cached_for_inference)
    are rebuilt when weights are loaded, and training never uses them."""
    from densekit.backbones.levit import AttentionBias, LeViT
    torch.manual_seed(0)
    model = LeViT('128s', img_size=64, out_indices=(2, 3)).eval()
    other = LeViT('128s', img_size=64, out_indices=(2, 3)).eval()
    for m in other.modules():
        if isinstance(m, AttentionBias):
            torch.nn.init.normal_(m.attention_biases)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model(x)  # fills the cache
        model.load_state_dict(other.state_dict())
        for a, b in zip(model(x), other(x)):
            torch.testing.assert_close(a, b)
    model.train()
    bias = next(m for m in model.modules() if isinstance(m, AttentionBias)).attention_bias((4, 4), (4, 4), 1)
    assert bias.requires_grad


# -- whole-model scope ---------------------------------------------------------


def test_model_scope_on_a_detector_times_predict_and_training():
    b = run_benchmark(TINY_DET, size=(64, 96), batch=1, reps=1, peers=['mmdet'], scope='model')  # H, W
    assert b.scope == 'model' and [r.name for r in b.results] == ['densekit', 'mmdet']
    assert b.shape == (1, 3, 64, 96)
    for r in b.results:
        assert min(r.forward_s + r.train_s) > 0 and r.forward_peak > 0 and r.train_peak > 0
    assert b.ours.params == b.results[1].params
    # predict (NMS, mask pasting) cannot be traced: the header says what is counted
    assert "mode='predict'" in b.work and b.flops_of.startswith('backbone only')
    assert f'{TINY_DET} (model)' in b.table() and b.flops_of in b.table()


def test_cli_model_scope_on_a_segmentor(capsys, tmp_path):
    from densekit.analysis import count_complexity
    out, _ = run_main(capsys, 'benchmark', TINY_SEG, '--scope', 'model', '--size', '64', '--reps', '1',
                      '--peers', 'mmseg', '--json', str(tmp_path / 'bench.json'),
                      '--results', str(tmp_path / 'results' / 'benchmark.md'))
    assert f'### {TINY_SEG} (model)' in out and '| mmseg |' in out and "mode='tensor'" in out
    # the results file: a dated heading with the device, the command, the tables
    results = (tmp_path / 'results' / 'benchmark.md').read_text()
    assert re.search(r'^## \d{4}-\d\d-\d\d \d\d:\d\d UTC: .+; torch ', results, re.M)
    assert f'`tools/benchmark.py {TINY_SEG} --scope model' in results
    assert f'### {TINY_SEG} (model)' in results and '| mmseg |' in results and 'Summary (ours / peer)' in results
    (bench,) = json.loads((tmp_path / 'bench.json').read_text())
    assert bench['scope'] == 'model' and [r['name'] for r in bench['results']] == ['densekit', 'mmseg']
    assert bench['shape'][0] == 2  # a whole model's default batch: BN trains on more than one value
    for r in bench['results']:
        assert min(r['forward_s'] + r['train_s']) > 0 and r['forward_peak'] > 0 and r['train_peak'] > 0
    backbone = build_ours(load_config(TINY_SEG))
    assert bench['results'][0]['params'] > sum(p.numel() for p in backbone.parameters())
    # the FLOPs are the whole model's: the heads' work is counted
    assert bench['flops_of'].startswith('whole model')
    assert bench['flops'] > 2 * count_complexity(backbone, (1, 3, 64, 64)).flops['']


def _model_losses(model, inputs, samples) -> dict:
    model.train()
    torch.manual_seed(0)  # RoI sampling, head dropout
    return model.parse_losses(model.loss(inputs, samples))[1]


@pytest.mark.parametrize('config,options,peer', [
    (TINY_SEG, None, 'mmseg'), (TINY_DET, None, 'mmdet'),
    ('configs/swin/swin-t_300e_imagenet.py', {**tiny_swin(), 'model.head.in_channels': 128}, 'mmpretrain')])
def test_model_peer_differs_only_in_the_backbone_and_gives_our_losses(config, options, peer):
    cfg = load_config(config, options)
    torch.manual_seed(0)
    (_, ours, _), (name, other, note) = build_models(cfg, (64, 64), [peer], 'model')[0]
    assert name == peer and note.startswith('copied') and type(ours.backbone) is not type(other.backbone)
    rest = [{k: v for k, v in m.state_dict().items() if not k.startswith('backbone.')} for m in (ours, other)]
    assert rest[0].keys() == rest[1].keys() and len(rest[0]) > 0
    assert all(torch.equal(rest[0][k], rest[1][k]) for k in rest[0])
    own = dict(ours.named_parameters())  # the peer's heads are copies, not shared with ours
    assert all(p.data_ptr() != own[k].data_ptr() for k, p in other.named_parameters() if not k.startswith('backbone.'))
    task = task_of(cfg)
    inputs, samples = synthetic_batch(ours, task, 2, (64, 64))
    losses = [_model_losses(m, inputs, samples) for m in (ours, other)]
    assert losses[0].keys() == losses[1].keys()
    if task == 'detection':  # boxes and masks reached both stages
        assert {'loss_rpn_cls', 'loss_bbox', 'loss_mask'} <= set(losses[0])
    for key in losses[0]:
        torch.testing.assert_close(losses[0][key], losses[1][key], atol=1e-4, rtol=1e-4, msg=key)
    # the workload's loss is parse_losses' total, seeded alike for every model
    work = model_workload(inputs, samples, task)
    torch.testing.assert_close(work.loss(ours), work.loss(other), atol=1e-4, rtol=1e-4)


def test_synthetic_detection_targets_are_valid_and_seeded():
    cfg = load_config(TINY_DET)
    model = build_models(cfg, (64, 64), [], 'model')[0][0][1]
    (x1, s1), (x2, s2) = (synthetic_batch(model, 'detection', 2, (48, 64)) for _ in range(2))
    assert x1.shape == (2, 3, 48, 64) and torch.equal(x1, x2)
    for a, b in zip(s1, s2):
        gt = a.gt_instances
        assert torch.equal(gt.bboxes, b.gt_instances.bboxes) and torch.equal(gt.labels, b.gt_instances.labels)
        boxes = gt.bboxes
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 48).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all() and (gt.labels < cfg.model.roi_head.bbox_head.num_classes).all()
        assert gt.masks.masks.shape == (3, 48, 64) and (gt.masks.areas > 0).all()
        assert a.batch_input_shape == a.img_shape == (48, 64)


def test_model_scope_skips_a_peer_whose_maps_do_not_fit_our_head():
    """timm's Swin gives its last features channels-last: it cannot feed the classifier's neck."""
    cfg = load_config('configs/swin/swin-t_300e_imagenet.py', {**tiny_swin(), 'model.head.in_channels': 128})
    models, skipped = build_models(cfg, (64, 64), ['timm'], 'model')
    assert len(models) == 1 and 'are not ours' in skipped['timm']


def test_compile_wraps_ours_and_the_peer_alike():
    """The wiring only, on a two-block ConvMixer: the 'eager' backend traces
    with dynamo without inductor's minutes of C++ compilation on a CPU
    (inductor on the tiny Swin, ours and mmseg's, was checked by hand)."""
    from torch._dynamo.utils import counters
    counters.clear()
    tiny_convmixer = {'model.backbone.arch': dict(_delete_=True, dim=16, depth=2, kernel_size=3, patch_size=4)}
    b = run_benchmark('configs/convmixer/convmixer-768-32_150e_imagenet.py', size=32, batch=1, reps=1, peers=['timm'],
                      cfg_options=tiny_convmixer, compile_backend='eager')
    assert [r.name for r in b.results] == ['densekit', 'timm'] and min(b.ours.train_s) > 0
    assert "torch.compile(backend='eager')" in b.table()
    # both backbones went through dynamo (each at least one graph)
    assert counters['stats']['unique_graphs'] >= 2


def test_onnxruntime_row_times_our_exported_model_forward_only(capsys, tmp_path):
    """--onnxruntime --forward-only on a whole segmentor at batch 1: a row that
    ran our model exported to ONNX, forward only, beside ours and mmseg's;
    the onnxruntime / eager ratios are printed and the tables appended to --results."""
    pytest.importorskip('onnxruntime')
    results = tmp_path / 'results.md'
    out, _ = run_main(capsys, 'benchmark', TINY_SEG, '--scope', 'model', '--size', '64', '--batch', '1', '--reps', '2',
                      '--peers', 'mmseg', '--onnxruntime', '--forward-only', '--json', str(tmp_path / 'bench.json'),
                      '--results', str(results))
    (bench,) = json.loads((tmp_path / 'bench.json').read_text())
    names = [r['name'] for r in bench['results']]
    assert names == ['densekit', 'densekit (onnxruntime)', 'mmseg']
    for r in bench['results']:
        assert len(r['forward_s']) == 2 and min(r['forward_s']) > 0 and r['train_s'] == []
    assert bench['results'][1]['forward_peak'] is None
    assert 'onnxruntime / eager forward time' in out and '/ mmseg: ' in out
    assert '| densekit (onnxruntime) |' in results.read_text() and '`tools/benchmark.py' in results.read_text()


def test_harness_and_demo_data_are_not_in_the_library():
    """The benchmark harness and the demo-data generators live in tools/, not in
    the installed ``densekit`` package (which keeps the dataset classes and checks)."""
    import importlib.util

    from tests.helpers import ROOT
    # the checkout's files: an editable install of another checkout can still resolve densekit.<name>
    for name in ('benchmark', 'synthetic', 'synthetic_cls', 'synthetic_coco'):
        assert not (ROOT / 'densekit' / f'{name}.py').exists(), name
    assert importlib.util.find_spec('benchmark_harness').origin == str(ROOT / 'tools' / 'benchmark_harness.py')


# -- what the table says -----------------------------------------------------------

def test_memory_under_one_mb_is_not_printed_as_zero():
    from benchmark_harness import _mb
    assert [_mb(300_000), _mb(0), _mb(5 * 2**20), _mb(None)] == ['<1', '0', '5', '-']


def test_params_count_what_the_benchmarked_call_uses_for_every_row():
    """A multi-level LeViT-256: timm's Levit also builds the third stage (and
    a head), which the call never runs; 'params used' counts neither side's unused parts."""
    from benchmark_harness import Runner, TimmFeatures, backbone_workload, count_params, used_params
    cfg = load_config('configs/levit/upernet_levit-256_160k_ade20k.py')
    (_, ours, _), (_, timm, note) = build_models(cfg, (64, 64), ['timm'])[0]
    assert note.startswith('copied')
    work = backbone_workload(torch.randn(1, 3, 64, 64))
    ours_used, timm_used = (used_params(Runner(m, work, 'cpu', 'fp32')) for m in (ours, timm))
    assert ours_used == count_params(ours)
    assert count_params(timm.model) > timm_used  # the unused stage
    assert abs(ours_used - timm_used) < 0.01 * ours_used  # the same network, counted alike
    assert all(p.grad is None for p in timm.parameters())  # the count leaves no gradients behind


def test_profiler_note_on_an_earlier_tensor_stays_off_stderr(capfd):
    """c10's "Memory block of unknown size was allocated before the profiling
    started" (printed from C++) for a tensor made before and freed inside."""
    kept = [torch.ones(1 << 16)]

    def step():
        kept.pop()  # freed inside the profiled step
        return torch.ones(4).sum()
    cpu_peak_memory(step)
    import sys
    print('other stderr text', file=sys.stderr)
    err = capfd.readouterr().err
    assert 'before the profiling started' not in err and 'other stderr text' in err
