"""tools/train.py and tools/test.py end to end on tiny synthetic data:
2 training iterations, evaluation, resume, and the bad-input errors."""
import shutil

import cv2
import pytest
import torch

from densekit.checkpoint import load_file
from tests.helpers import TINY_SEG, run_tool


@pytest.fixture(scope='module')
def trained(synthetic_ade, tmp_path_factory):
    work = tmp_path_factory.mktemp('work')
    proc = run_tool('train', str(TINY_SEG), '--work-dir', str(work), '--cfg-options', f'data_root={synthetic_ade}')
    return work, proc


def test_train_two_iterations_then_test(trained, synthetic_ade, tmp_path):
    work, proc = trained
    ckpt = work / 'iter_2.pth'
    assert ckpt.is_file()
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    assert state['meta']['iter'] == 2
    assert any(k.startswith('backbone.stages.3.') for k in state['state_dict'])

    show = tmp_path / 'vis'
    proc = run_tool('test', str(TINY_SEG), str(ckpt), '--work-dir', str(tmp_path / 'test'),
                    '--show-dir', str(show), '--out', str(tmp_path / 'metrics.json'),
                    '--cfg-options', f'data_root={synthetic_ade}')
    assert 'mIoU: ' in proc.stdout
    import json
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert 0 <= metrics['mIoU'] <= 100
    pngs = list(show.rglob('*.png'))
    assert len(pngs) == 4  # one overlay per validation image
    assert cv2.imread(str(pngs[0])).shape[2] == 3


def test_resume_continues_from_last_checkpoint(trained, synthetic_ade, tmp_path):
    """--resume loads mmengine's own checkpoint under torch's weights-only
    unpickling (message hub, numpy state) and continues the iteration count."""
    work, _ = trained
    resumed = tmp_path / 'resumed'
    shutil.copytree(work, resumed)
    proc = run_tool('train', str(TINY_SEG), '--work-dir', str(resumed), '--resume',
                    '--cfg-options', f'data_root={synthetic_ade}', 'train_cfg.max_iters=4',
                    'default_hooks.checkpoint.interval=4')
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'Iter(train) [3/4]' in log and 'Iter(train) [1/4]' not in log
    state = load_file(resumed / 'iter_4.pth')  # weights-only
    assert state['meta']['iter'] == 4


def test_missing_data_root_is_named(tmp_path):
    proc = run_tool('train', str(TINY_SEG), '--work-dir', str(tmp_path),
                    '--cfg-options', f'data_root={tmp_path}/nowhere', check=False)
    assert proc.returncode == 1
    assert f'{tmp_path}/nowhere/images/training' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_real_ade20k_config_explains_how_to_get_the_data(tmp_path):
    proc = run_tool('train', 'configs/upernet_swin_ade20k.py', '--work-dir', str(tmp_path),
                    '--cfg-options', 'model.backbone.init_cfg=None', f'data_root={tmp_path}/ade', check=False)
    assert proc.returncode == 1
    assert 'ADEChallengeData2016' in proc.stderr and 'images/training' in proc.stderr


def test_misspelt_option_is_refused(tmp_path):
    proc = run_tool('train', str(TINY_SEG), '--work-dir', str(tmp_path),
                    '--cfg-options', 'model.backbone.drop_path=0.2', check=False)
    assert proc.returncode == 1
    assert "Did you mean 'drop_path_rate'" in proc.stderr


def test_unknown_model_type_is_named(synthetic_ade, tmp_path):
    proc = run_tool('train', str(TINY_SEG), '--work-dir', str(tmp_path),
                    '--cfg-options', f'data_root={synthetic_ade}', 'model.backbone.type=densekit.SwinTransfomer',
                    check=False)
    assert proc.returncode == 1
    assert 'SwinTransfomer is not in the' in proc.stderr


def _copy_dataset(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_corrupt_image_is_named(synthetic_ade, tmp_path):
    root = _copy_dataset(synthetic_ade, tmp_path / 'data')
    bad = sorted((root / 'images' / 'training').glob('*.jpg'))[0]
    bad.write_bytes(b'not a jpeg')
    from mmengine.registry import init_default_scope
    from densekit.datasets import DatasetError, SyntheticADEDataset
    init_default_scope('mmseg')
    ds = SyntheticADEDataset(data_root=str(root), data_prefix=dict(img_path='images/training',
                       seg_map_path='annotations/training'),
                       pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                                 dict(type='PackSegInputs')])
    with pytest.raises(DatasetError, match=str(bad)):
        ds[0]


def test_label_out_of_range_is_named(synthetic_ade, tmp_path):
    root = _copy_dataset(synthetic_ade, tmp_path / 'data')
    bad = sorted((root / 'annotations' / 'validation').glob('*.png'))[1]
    label = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    label[:4, :4] = 200
    cv2.imwrite(str(bad), label)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from densekit.datasets import DatasetError, SyntheticADEDataset
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(TINY_SEG))
    ds_cfg = cfg.val_dataloader.dataset
    ds_cfg.pop('type')
    ds_cfg.data_root = str(root)
    ds = SyntheticADEDataset(**ds_cfg)
    with pytest.raises(DatasetError, match=rf'{bad}: label value\(s\) \[200\] out of range: 7 classes'):
        ds[1]
    ds[0]  # the others still load


def test_missing_checkpoint_is_named(tmp_path):
    proc = run_tool('test', str(TINY_SEG), str(tmp_path / 'missing.pth'), check=False)
    assert proc.returncode == 1
    assert f'checkpoint not found: {tmp_path}/missing.pth' in proc.stderr


def test_checkpoint_that_does_not_fit_is_named(trained, synthetic_ade, tmp_path):
    work, _ = trained
    state = torch.load(work / 'iter_2.pth', map_location='cpu', weights_only=False)
    del state['state_dict']['decode_head.conv_seg.weight']
    state['state_dict']['backbone.norm3.weight'] = torch.ones(7)
    bad = tmp_path / 'other_model.pth'
    torch.save({'state_dict': state['state_dict'], 'meta': {}}, bad)
    proc = run_tool('test', str(TINY_SEG), str(bad), '--work-dir', str(tmp_path),
                    '--cfg-options', f'data_root={synthetic_ade}', check=False)
    assert proc.returncode == 1
    assert 'other_model.pth does not fit the model' in proc.stderr
    assert 'decode_head.conv_seg.weight' in proc.stderr and 'backbone.norm3.weight' in proc.stderr
