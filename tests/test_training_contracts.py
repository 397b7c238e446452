"""Issue 18: contracts every family and every config keeps, by class.

1-2: frozen stages are frozen, and unused modules are gone, when the backbone
     is constructed (before a DDP wrapper sees it); a full checkpoint still loads.
5:   a BatchNorm fed one value per channel stops with its name and the fixes.
6:   datasets check their files when loaded, not when built for metainfo.
8:   training skips COCO images left without a usable box.
9:   every family returns ceil(H/s) x ceil(W/s) at every level.
10, 12: --cfg-options: num_workers=0 and the keys mmengine's Runner reads.
"""
import json
import sys

import pytest
import torch

from tests.helpers import ROOT, TINY_SEG, run_main

sys.path.insert(0, str(ROOT / 'tests' / 'data'))
from tiny_backbones import SUBSETS, TINY, tiny  # noqa: E402

from densekit.config import ConfigKeyError, load_config  # noqa: E402
from densekit.necks import SimpleFeaturePyramid  # noqa: E402


@pytest.mark.parametrize('family', TINY)
def test_frozen_and_pruned_at_construction(family):
    frozen = tiny(family, frozen_stages=1)
    expected = {id(p) for m in frozen.frozen_modules(1) for p in m.parameters()}
    # ViTs also freeze their class token and position embedding with the stem
    expected |= {id(getattr(frozen, n)) for n in ('cls_token', 'pos_embed') if hasattr(frozen, n)}
    assert expected
    for name, p in frozen.named_parameters():  # no init_weights() or train() yet
        assert p.requires_grad == (id(p) not in expected), name
    frozen.train()
    assert all(not m.training for m in frozen.frozen_modules(1))

    subset = tiny(family, **SUBSETS[family])
    full = tiny(family, **dict(SUBSETS[family], out_indices=range(subset.num_levels)))
    assert subset.pruned_modules or family == 'levit'  # LeViT builds only the stages its levels need
    with torch.no_grad():
        outs = subset(torch.randn(1, 3, 64, 64))
    assert len(outs) == len(subset.out_indices)
    # a checkpoint of the whole backbone loads: keys of modules not built are ignored, not errors
    report = subset.load_pretrained_state(full.state_dict(), strict=True)
    assert report.missing == [] and report.unexpected == []
    assert report.ignored and not set(report.ignored) & set(subset.state_dict())
    pruned = tuple(f'{n}.' for n in subset.pruned_modules)
    assert all(any(k.startswith(pruned) for k in report.ignored) for pruned in pruned)
    # the subset's outputs equal the full backbone's at the same levels
    full.eval(), subset.eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        want = full(x)
        got = subset(x)
    for level, out in zip(subset.out_indices, got):
        torch.testing.assert_close(out, want[list(full.out_indices).index(level)])


@pytest.mark.parametrize('family', TINY)
def test_every_level_is_ceil_of_the_image_over_its_stride(family):
    """9: 256x320 (before: ConvMixer, patch 7, gave 65x81 at stride 4) and 72x56."""
    model = tiny(family).eval()
    neck = None
    if len(set(model.level_strides)) == 1:  # isotropic: the pyramid comes from the adapter
        model = tiny(family, out_indices=(model.num_levels - 1,)).eval()
        neck = SimpleFeaturePyramid(model.out_channels[0], 8, in_stride=model.level_strides[0]).eval()
    for H, W in ((256, 320), (72, 56)):
        with torch.no_grad():
            outs = model(torch.randn(1, 3, H, W))
            if neck is not None:
                outs = neck(outs)
        strides = neck.out_strides if neck is not None else model.out_strides
        assert len(outs) == len(strides)
        for out, s in zip(outs, strides):
            assert tuple(out.shape[-2:]) == (-(-H // s), -(-W // s)), (family, H, W, s)


def test_one_value_per_channel_names_the_layer(synthetic_ade, capsys, tmp_path):
    """5: batch 1 with UPerHead's pool-scale-1 BatchNorm (before: torch's
    "Expected more than 1 value per channel when training" from inside mmseg)."""
    with pytest.raises(SystemExit):
        run_main(capsys, 'train', str(TINY_SEG), '--work-dir', str(tmp_path),
                 '--cfg-options', f'data_root={synthetic_ade}', 'train_dataloader.batch_size=1')
    err = capsys.readouterr().err
    assert 'BatchNorm layer decode_head.psp_modules.0.' in err
    assert 'train_dataloader.batch_size=1 per process' in err and "type='GN'" in err


def test_datasets_check_files_when_loaded_not_when_built(tmp_path):
    """6: built with lazy_init=True for their metainfo (as mmdet's init_detector
    does) the datasets need no files; loading names what is missing."""
    from densekit.cls_datasets import ImageNet
    from densekit.datasets import ADE20KDataset
    from densekit.det_datasets import CocoDataset
    absent = str(tmp_path / 'absent')
    made = [
        CocoDataset(data_root=absent, ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/'),
                    lazy_init=True, pipeline=[]),
        ADE20KDataset(data_root=absent, data_prefix=dict(img_path='images/validation',
                                                         seg_map_path='annotations/validation'),
                      lazy_init=True, pipeline=[]),
        ImageNet(data_root=absent, split='val', lazy_init=True, pipeline=[]),
    ]
    for dataset in made:
        assert dataset.metainfo['classes']
        with pytest.raises(FileNotFoundError, match=absent):
            dataset.full_init()


def test_training_skips_images_without_a_usable_box(tmp_path):
    """8: an image with only a crowd box, or only a box that is skipped (zero
    area, wholly outside), has no ground truth: training skips it, as
    configs/_base_/datasets/coco_instance.py says; evaluation keeps it."""
    from densekit.det_datasets import CocoDataset
    (tmp_path / 'img').mkdir()
    images = [dict(id=i, file_name=f'{i}.jpg', width=64, height=64) for i in (1, 2, 3, 4)]
    box = dict(category_id=1, iscrowd=0, segmentation=[[0, 0, 10, 0, 10, 10]])
    annotations = [dict(box, id=1, image_id=1, bbox=[0, 0, 10, 10], area=100),
                   dict(box, id=2, image_id=2, bbox=[0, 0, 10, 10], area=100, iscrowd=1),
                   dict(box, id=3, image_id=3, bbox=[5, 5, 0, 10], area=0),
                   dict(box, id=4, image_id=4, bbox=[100, 100, 10, 10], area=100)]
    (tmp_path / 'ann.json').write_text(json.dumps(dict(images=images, annotations=annotations,
                                                       categories=[dict(id=1, name='thing')])))
    common = dict(data_root=str(tmp_path), ann_file='ann.json', data_prefix=dict(img='img/'),
                  metainfo=dict(classes=('thing',)), filter_cfg=dict(filter_empty_gt=True, min_size=0), pipeline=[])
    assert [d['img_id'] for d in CocoDataset(**common)] == [1]
    assert len(CocoDataset(**common, test_mode=True)) == 4


def test_cfg_options_num_workers_0():
    """10: the base's persistent_workers=True no longer stops num_workers=0."""
    cfg = load_config('configs/upernet_swin_ade20k.py', {'train_dataloader.num_workers': 0})
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.val_dataloader.persistent_workers is True  # num_workers left at 4


def test_cfg_options_accept_runner_keys_and_refuse_typos():
    """12: keys mmengine's Runner reads with a default are accepted although
    the config lacks them; misspellings are still refused."""
    cfg = load_config('configs/upernet_swin_ade20k.py', {
        'model_wrapper_cfg.find_unused_parameters': True, 'auto_scale_lr.base_batch_size': 16,
        'compile': True, 'custom_hooks': [], 'find_unused_parameters': True})
    assert cfg.model_wrapper_cfg.find_unused_parameters is True and cfg.compile is True
    with pytest.raises(ConfigKeyError, match=r"model_wraper_cfg.*Did you mean 'model_wrapper_cfg'"):
        load_config('configs/upernet_swin_ade20k.py', {'model_wraper_cfg.find_unused_parameters': True})
    with pytest.raises(ConfigKeyError, match="'model.backbone' has no key 'drop_path'"):
        load_config('configs/upernet_swin_ade20k.py', {'model.backbone.drop_path': 0.2})
