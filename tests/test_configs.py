"""Every shipped config parses, inherits and builds its model."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from densekit.config import ConfigKeyError, check_options, load_config, task_of

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(ROOT / 'configs')))
def test_config_builds_model(path):
    cfg = Config.fromfile(str(path))
    task = task_of(cfg)
    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    cfg.model.backbone.init_cfg = None  # no pretrained files in CI
    model = MODELS.build(cfg.model)
    if task == 'classification':
        # the head reads the one map (or class token) the backbone returns
        assert len(model.backbone.out_indices) == 1
        assert cfg.model.head.in_channels == model.backbone.out_channels[-1]
        assert cfg.model.head.num_classes == cfg.model.data_preprocessor.num_classes
        return
    assert task == 'segmentation'
    # isotropic backbones get their pyramid from the adapter neck
    pyramid = model.neck if model.with_neck else model.backbone
    assert list(cfg.model.decode_head.in_channels) == list(pyramid.out_channels)
    assert tuple(pyramid.out_strides) == (4, 8, 16, 32)


def test_swin_variants_follow_the_paper():
    """Swin-T/S/B backbone sizes of the paper (Table 1, classifier excluded):
    28M/50M/88M with the 1000-class head."""
    from backbones import SwinTransformer
    for arch, params in (('tiny', 28.3), ('small', 49.6), ('base', 87.8)):
        m = SwinTransformer(arch, out_norm='last')
        head = m.level_channels[-1] * 1000 + 1000
        total = (sum(p.numel() for p in m.parameters()) + head) / 1e6
        assert abs(total - params) < 0.1, (arch, total)


def test_misspelt_cfg_option_is_refused_with_suggestion():
    cfg = Config.fromfile(str(ROOT / 'configs' / 'upernet_swin_ade20k.py'))
    with pytest.raises(ConfigKeyError, match="no key 'drop_path'.*Did you mean 'drop_path_rate'"):
        check_options(cfg, {'model.backbone.drop_path': 0.2})
    with pytest.raises(ConfigKeyError, match="no key 'train_dataloder'"):
        check_options(cfg, {'train_dataloder.batch_size': 4})
    check_options(cfg, {'model.backbone.drop_path_rate': 0.2, 'model.backbone.init_cfg.prefix': 'backbone.'})


def test_data_root_option_moves_every_dataloader(tmp_path):
    cfg = load_config(str(ROOT / 'configs' / 'upernet_swin_ade20k.py'), {'data_root': str(tmp_path)})
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[name].dataset.data_root == str(tmp_path)


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match='configs/nope.py'):
        load_config('configs/nope.py')


def _seg_batch(cfg: Config) -> dict:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    cfg.model.data_preprocessor.size = (64, 64)
    num_classes = cfg.model.decode_head.num_classes
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, 64, 64)))
        samples.append(s)
    return dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)


def _cls_batch(cfg: Config) -> dict:
    from mmpretrain.structures import DataSample
    num_classes = cfg.model.head.num_classes
    samples = [DataSample().set_gt_label(int(torch.randint(0, num_classes, ()))) for _ in range(2)]
    return dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(ROOT / 'configs')))
def test_config_two_training_steps(path):
    """Two optimizer steps of the full model (random init) on a 2-image
    64x64 batch (classification: with the config's mixup/cutmix): losses
    are finite and the backbone's weights move."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    batch = _cls_batch(cfg) if task_of(cfg) == 'classification' else _seg_batch(cfg)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model = revert_sync_batchnorm(model)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    model.train()
    for _ in range(2):
        losses = model.train_step(batch, optim)
        assert all(torch.isfinite(v).all() for v in losses.values())
    moved = sum(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))
    assert moved > 0.9 * len(before)
