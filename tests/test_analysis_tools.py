"""tools/analysis/flops_params.py and plot_curves.py.

FLOPs are multiply-adds (mmengine's convention, the papers'). Paper figures
are for the classification models at 224x224; our backbones drop the
classifier, whose parameters are added back below and whose FLOPs (< 0.002G)
are within the tolerance. The tolerance, 2%, covers the papers' rounding
(4.5G is 4.45..4.55: +-1.1%) and what mmengine counts beyond matrix products
(norms, upsampling: < 1% here); a missing or doubled block changes these
counts by far more (one Swin-T block: ~7%, one ViT-B block: 8%).
"""

import pytest
import torch
from PIL import Image

from tests.helpers import TINY_SEG, run_main
from densekit.analysis import count_complexity, find_scalars, read_scalars
from densekit.convert import build_backbone


def _linear(c_in, c_out=1000):
    return c_in * c_out + c_out


# family, arch, backbone args, classifier params, paper params (M), paper GFLOPs, source
PAPERS = [
    ('swin', 'tiny', {}, _linear(768), 28.3, 4.5, 'Swin, Table 1 (28.3M as released)'),
    ('vit', 'base', {}, _linear(768), 86.6, 17.6, 'ViT-B/16 as in DeiT, Table 1'),
    ('convmixer', '1536_20', {}, _linear(1536), 51.6, 48.7,
     'ConvMixer, Table 1 params; FLOPs from mmpretrain\'s metafile (48.71G)'),
    # LeViT's classifier reads level 4 (stride 64); two BN+linear heads (distillation)
    ('levit', '256', dict(out_indices=(0, 1, 2, 3, 4)), 2 * (2 * 512 + _linear(512)), 18.9, 1.12, 'LeViT, Table 3'),
    ('levit', '128s', dict(out_indices=(0, 1, 2, 3, 4)), 2 * (2 * 384 + _linear(384)), 7.8, 0.305, 'LeViT, Table 3'),
]


@pytest.mark.parametrize('family,arch,kwargs,head,params,gflops,source', PAPERS, ids=[f'{p[0]}-{p[1]}' for p in PAPERS])
def test_backbone_complexity_matches_paper(family, arch, kwargs, head, params, gflops, source):
    counted = count_complexity(build_backbone(family, arch, **kwargs), (1, 3, 224, 224))
    assert (counted.params[''] + head) / 1e6 == pytest.approx(params, rel=0.02), source
    assert counted.flops[''] / 1e9 == pytest.approx(gflops, rel=0.02), source


def test_coatnet_complexity_matches_timm():
    """CoAtNet-0: 25M parameters as in the paper (Table 3) but 4.58G FLOPs
    where the paper says 4.2G: timm's coatnet_0, the only PyTorch
    implementation and our parity reference, counts 4.58G too, so the gap is
    the architecture's (timm's reading of the paper), not the counting."""
    import timm
    ref = count_complexity(timm.create_model('coatnet_0_224'), (1, 3, 224, 224))
    ours = count_complexity(build_backbone('coatnet', '0', out_norm='none'), (1, 3, 224, 224))
    assert ours.flops[''] == pytest.approx(ref.flops[''], rel=0.01)
    assert ref.params[''] / 1e6 == pytest.approx(25, rel=0.02)
    assert ours.params[''] == ref.params[''] - ref.params['head']  # the same network, less the classifier


def test_attention_is_counted():
    """mmengine has no handle for F.scaled_dot_product_attention; ours adds
    q@k^T and attn@v: ViT-B/16 at 224 has 12 x 197^2 x 768 x 2 = 0.72G of them."""
    from densekit.analysis import sdpa_flop_jit
    from mmengine.analysis import FlopAnalyzer
    model = build_backbone('vit', 'base').eval()
    x = torch.zeros(1, 3, 224, 224)
    without = FlopAnalyzer(model, (x,)).unsupported_ops_warnings(False).total()
    with_attn = FlopAnalyzer(model, (x,)).set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    assert with_attn.unsupported_ops_warnings(False).total() - without == 12 * 197 ** 2 * 768 * 2


def test_flops_params_cli_table(capsys):
    out, _ = run_main(capsys, 'analysis/flops_params', str(TINY_SEG), '--shape', '64', '96')
    assert 'input 3x64x96; FLOPs = multiply-adds' in out
    rows = {line.split('|')[1].strip(): line for line in out.splitlines() if line.startswith('| ')}
    assert {'model', 'backbone', 'decode_head', 'auxiliary_head'} <= set(rows)
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(str(TINY_SEG)).model)
    n = sum(p.numel() for p in model.backbone.parameters())
    assert f'| backbone | {n / 1e6:.2f} M |' in rows['backbone']
    assert 'not run at inference' in rows['auxiliary_head']


def _write_scalars(work_dir):
    """A scalars.json written by mmengine's LocalVisBackend, as training does."""
    from mmengine.visualization import LocalVisBackend
    backend = LocalVisBackend(save_dir=str(work_dir / '20260101_000000' / 'vis_data'))
    for step in range(1, 5):
        backend.add_scalars({'lr': 0.01 / step, 'base_lr': 0.01, 'loss': 2. / step, 'decode.loss_ce': 1. / step,
                             'time': 0.2, 'data_time': 0.01, 'iter': step}, step=step)
    backend.add_scalars({'mIoU': 41.5, 'aAcc': 80.0, 'time': 0.1, 'data_time': 0.01}, step=4)


def test_plot_curves_cli(tmp_path, capsys):
    _write_scalars(tmp_path)
    out, _ = run_main(capsys, 'analysis/plot_curves', str(tmp_path))
    assert 'loss loss: 4 points, last 0.5 at iteration 4' in out
    assert '  lr lr: 4 points, last 0.0025 at iteration 4' in out
    assert ' val mIoU: 1 points, last 41.5 at iteration 4' in out
    assert 'time' not in out  # bookkeeping is not plotted
    png = Image.open(tmp_path / 'curves.png')
    assert png.format == 'PNG' and png.width > 3 * png.height  # three panels side by side


def test_read_scalars_groups(tmp_path):
    _write_scalars(tmp_path)
    groups = read_scalars(find_scalars(tmp_path))
    assert set(groups['loss']) == {'loss', 'decode.loss_ce'} and set(groups['val']) == {'mIoU', 'aAcc'}
    assert groups['lr']['lr'][-1] == (4, 0.0025)


def test_missing_scalars_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match=f'{tmp_path}: no \\*/vis_data/scalars.json'):
        find_scalars(tmp_path)
    with pytest.raises(FileNotFoundError, match=f'work dir not found: {tmp_path}/nowhere'):
        find_scalars(tmp_path / 'nowhere')


def test_epoch_based_validation_is_placed_on_the_iteration_axis(tmp_path):
    """mmengine's epoch-based training lines carry no epoch (only iter/step) and its
    validation lines step by epoch: the run's text log gives the epoch's length."""
    run = tmp_path / '20261130_000000'
    (run / 'vis_data').mkdir(parents=True)
    (run / 'vis_data' / 'scalars.json').write_text(
        '{"lr": 0.003, "loss": 2.0, "iter": 25, "step": 25}\n'
        '{"lr": 0.003, "loss": 1.9, "iter": 50, "step": 50}\n'
        '{"accuracy/top1": 19.5, "step": 1}\n{"accuracy/top1": 40.0, "step": 2}\n')
    (run / f'{run.name}.log').write_text('... Epoch(train)  [1][25/25]  lr: 3.0000e-03  loss: 2.0\n')
    groups = read_scalars(find_scalars(tmp_path))
    assert groups['val']['accuracy/top1'] == [(25, 19.5), (50, 40.0)]
    assert groups['loss']['loss'] == [(25, 2.0), (50, 1.9)]
