"""Tests for densekit.synthetic_coco (the synthetic COCO-layout detection demo dataset)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from tests.helpers import run_tool
from densekit import synthetic
from densekit.synthetic_coco import (CLASSES, MARKER, SPLITS, draw_sample, generate_coco_like,
                                     main, mask_to_polygons)

SIZE = (64, 64)
COUNTS = {'train2017': 6, 'val2017': 3}


def _gen(root: Path, **kw) -> dict:
    args = dict(num_train=COUNTS['train2017'], num_val=COUNTS['val2017'], size=SIZE, seed=0)
    args.update(kw)
    return generate_coco_like(root, **args)


def _coco(root: Path, split: str) -> COCO:
    return COCO(str(root / 'annotations' / f'instances_{split}.json'))


def _image(root: Path, split: str, info: dict) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(root / split / info['file_name'])), cv2.COLOR_BGR2RGB)


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob('*') if p.is_file()}


@pytest.fixture(scope='module')
def small(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp('coco') / 'synthetic_coco'
    return root, _gen(root)


def test_layout_and_summary(small):
    root, summary = small
    assert summary['counts'] == COUNTS and summary['generated'] is True
    assert summary['classes'] == list(CLASSES) and summary['size'] == list(SIZE)
    for split in SPLITS:
        coco = _coco(root, split)
        assert len(coco.getImgIds()) == COUNTS[split]
        assert len(coco.getAnnIds()) == summary['instances'][split] > 0
        assert sorted(p.name for p in (root / split).glob('*.jpg')) == \
            sorted(i['file_name'] for i in coco.loadImgs(coco.getImgIds()))
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert json.loads((root / MARKER).read_text())['instances'] == summary['instances']


def test_annotations_are_valid_coco_instances(small):
    root, _ = small
    for split in SPLITS:
        coco = _coco(root, split)
        for info in coco.loadImgs(coco.getImgIds()):
            assert (info['height'], info['width']) == SIZE
            assert _image(root, split, info).shape == (*SIZE, 3)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=info['id']))
            assert 1 <= len(anns) <= 4
            masks = [coco.annToMask(a).astype(bool) for a in anns]
            for a, m in zip(anns, masks):
                assert a['iscrowd'] == 0 and a['category_id'] in coco.getCatIds()
                assert all(len(p) >= 6 and len(p) % 2 == 0 for p in a['segmentation'])
                ys, xs = np.nonzero(m)  # bbox and area describe the polygon's pixels
                assert a['bbox'] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
                assert a['area'] == m.sum()
            # occlusion: each pixel belongs to at most one instance
            assert (np.sum(masks, axis=0) <= 1).all()
        ids = coco.getAnnIds()
        assert len(set(ids)) == len(ids)


def _hue_distance(hue: np.ndarray, ref: float) -> np.ndarray:
    d = np.abs(hue - ref) % 360
    return np.minimum(d, 360 - d)


def test_masks_cover_the_drawn_shapes(small):
    """Inside an instance's mask the image shows its class' hue (saturated);
    outside every mask it is the greyish background."""
    root, _ = small
    for split in SPLITS:
        coco = _coco(root, split)
        for info in coco.loadImgs(coco.getImgIds()):
            img = _image(root, split, info).astype(np.float32) / 255
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            # JPEG blurs the outline: judge pixels one step inside the mask / outside all masks
            kernel = np.ones((3, 3), np.uint8)
            covered = np.zeros(SIZE, np.uint8)
            for a in coco.loadAnns(coco.getAnnIds(imgIds=info['id'])):
                mask = coco.annToMask(a)
                covered |= mask
                inner = cv2.erode(mask, kernel).astype(bool)
                hue = synthetic.SHAPE_HUES[synthetic.CLASSES.index(CLASSES[a['category_id'] - 1]) - 1]
                close = _hue_distance(hsv[..., 0][inner], hue) < 25
                assert close.mean() > 0.9, (split, info['file_name'], a['id'])
                assert (hsv[..., 1][inner] > 0.35).mean() > 0.9
            outside = ~cv2.dilate(covered, kernel).astype(bool)
            assert (hsv[..., 1][outside] < 0.35).mean() > 0.95


def test_polygons_rasterise_to_the_drawn_masks():
    for seed in range(4):
        _, instances = draw_sample(np.random.default_rng(seed), 96, 80)
        assert instances
        for _, mask in instances:
            rle = mask_utils.merge(mask_utils.frPyObjects(mask_to_polygons(mask), 96, 80))
            assert np.array_equal(mask_utils.decode(rle).astype(bool), mask)


def test_validation_split_is_held_out(small):
    root, _ = small
    train = [_image(root, 'train2017', i) for i in _coco(root, 'train2017').dataset['images']]
    for info in _coco(root, 'val2017').dataset['images']:
        val = _image(root, 'val2017', info).astype(int)
        assert all(np.abs(val - t).mean() > 5 for t in train)


def test_deterministic_by_seed(small, tmp_path):
    root, _ = small
    again, other = tmp_path / 'again', tmp_path / 'other'
    _gen(again)
    _gen(other, seed=1)
    for split in SPLITS:
        ann = f'annotations/instances_{split}.json'
        assert (again / ann).read_bytes() == (root / ann).read_bytes()
        assert (other / ann).read_bytes() != (root / ann).read_bytes()
        for p in (root / split).glob('*.jpg'):
            assert (again / split / p.name).read_bytes() == p.read_bytes()


def test_same_parameters_reuse_the_dataset(small):
    root, _ = small
    before = _mtimes(root)
    summary = _gen(root)
    assert summary['generated'] is False and summary['counts'] == COUNTS
    assert _mtimes(root) == before


def test_other_contents_are_refused_unless_overwrite(tmp_path):
    root = tmp_path / 'data'
    _gen(root, num_train=2, num_val=1)
    with pytest.raises(FileExistsError, match='not empty'):
        _gen(root, num_train=3, num_val=1)
    summary = _gen(root, num_train=3, num_val=1, overwrite=True)
    assert summary['generated'] is True
    assert len(list((root / 'train2017').glob('*.jpg'))) == 3
    with pytest.raises(ValueError, match='size'):
        generate_coco_like(tmp_path / 'tiny', size=(16, 16))


def test_mmdet_coco_dataset_reads_it(small):
    """mmdet's CocoDataset + LoadAnnotations (what the demo config uses) yield the
    annotated boxes (as x1y1x2y2) and the polygon masks."""
    from mmdet.datasets import CocoDataset
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    root, _ = small
    ds = CocoDataset(data_root=str(root), ann_file='annotations/instances_val2017.json',
                     data_prefix=dict(img='val2017/'), metainfo=dict(classes=CLASSES), test_mode=True,
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='LoadAnnotations', with_bbox=True, with_mask=True)])
    coco = _coco(root, 'val2017')
    assert len(ds) == COUNTS['val2017']
    for i in range(len(ds)):
        out = ds[i]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=out['img_id']))
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)]
        assert out['gt_bboxes'].tensor.tolist() == boxes
        assert out['gt_bboxes_labels'].tolist() == [a['category_id'] - 1 for a in anns]
        assert np.array_equal(out['gt_masks'].masks, np.stack([coco.annToMask(a) for a in anns]))


def test_command_line(tmp_path, capsys):
    summary = main(['--out', str(tmp_path / 'cli'), '--num-train', '1', '--num-val', '1', '--size', '48', '48'])
    assert summary['counts'] == {'train2017': 1, 'val2017': 1}
    assert json.loads(capsys.readouterr().out)['size'] == [48, 48]


def test_detection_demo_end_to_end(tmp_path, monkeypatch):
    """tools/demo.py --task detection on its generated data, cut to one training
    iteration on 8 images and evaluation on 4: box and mask mAP and overlays."""
    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # tiny tensors: a second thread only adds contention
    data, work = tmp_path / 'synthetic_coco', tmp_path / 'work'
    proc = run_tool('demo', '--task', 'detection', '--data', str(data), '--work-dir', str(work),
                    '--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=8',
                    'test_dataloader.dataset.indices=4')
    assert json.loads((data / MARKER).read_text())['params']['num_val'] == 100  # the demo's held-out split
    metrics = json.loads((work / 'demo_metrics.json').read_text())
    assert 0 <= metrics['coco/bbox_mAP'] <= 1 and 0 <= metrics['coco/segm_mAP'] <= 1
    assert f"bbox mAP = {metrics['coco/bbox_mAP']:.3f}  segm mAP = {metrics['coco/segm_mAP']:.3f}" in proc.stdout
    assert len(list((work / 'overlays').glob('*.png'))) == 4
