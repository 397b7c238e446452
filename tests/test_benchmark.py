"""tools/benchmark.py and densekit/benchmark.py on tiny models and inputs.

Correctness only (the tool runs, measures every model, computes its ratios
from its own measurements, builds peers of the same architecture with the same
weights); no timing assertions: speed lives in the benchmark's output.
"""
import json
from statistics import median

import pytest
import torch

from conftest import run_tool
from densekit.benchmark import Benchmark, build_ours, build_peers, cpu_peak_memory, run_benchmark
from densekit.config import load_config



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
    cfg = load_config('configs/upernet_vit-b16_ade20k.py', tiny_vit())
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


def test_cli_prints_tables_and_writes_json(tmp_path):
    out = tmp_path / 'bench.json'
    proc = run_tool('benchmark', 'configs/levit-128s_imagenet.py', '--size', '64', '--batch', '2', '--reps', '1',
                    '--peers', 'timm', '--json', str(out))
    assert '| densekit |' in proc.stdout and '| timm |' in proc.stdout and '## Summary' in proc.stdout
    (bench,) = json.loads(out.read_text())
    assert [r['name'] for r in bench['results']] == ['densekit', 'timm']
    assert bench['results'][1]['weights'].startswith('copied')
    bad = run_tool('benchmark', 'configs/no_such.py', check=False)
    assert bad.returncode == 1 and 'config file not found: configs/no_such.py' in bad.stderr


def test_levit_inference_bias_cache_follows_the_weights():
    """The attention biases kept for inference (backbones.layers.cached_for_inference)
    are rebuilt when weights are loaded, and training never uses them."""
    from backbones.levit import AttentionBias, LeViT
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
