"""densekit.inference and tools/infer.py: segmentation overlays, detection
boxes/masks, classification top-k, on tiny models saved untrained."""
import json

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import TINY_SEG, run_tool
from densekit.config import load_config
from densekit.datasets import SYNTHETIC_ADE_CLASSES as CLASSES
from densekit.datasets import SYNTHETIC_ADE_PALETTE as PALETTE
from densekit.inference import inference, init_model

# A tiny Mask R-CNN on a 4-level Swin: no detection config ships yet.
TINY_DET = """
default_scope = 'mmdet'
custom_imports = dict(imports=['densekit.runtime', 'densekit.backbones', 'densekit.necks', 'densekit.heads'], allow_failed_imports=False)
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
model = dict(
    backbone=dict(_delete_=True, type='densekit.SwinTransformer',
                  arch=dict(embed_dims=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2))),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=16),
                  bbox_head=dict(in_channels=16, fc_out_channels=32, num_classes=3),
                  mask_roi_extractor=dict(out_channels=16),
                  mask_head=dict(in_channels=16, conv_out_channels=16, num_classes=3)),
    test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img=5)))
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 64), keep_ratio=True),
                 dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                                       'scale_factor'))]
test_dataloader = dict(dataset=dict(type='CocoDataset', metainfo=dict(classes=('a', 'b', 'c')),
                                    pipeline=test_pipeline))
"""


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Three 64x48 images (not square: outputs must come back at the image size)."""
    root = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(root / f'img{i}.jpg'), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return root


def _save_untrained(tmp_path, build, config, dataset_meta=None):
    model = build(load_config(str(config)))
    path = tmp_path / 'model.pth'
    meta = {'dataset_meta': dataset_meta} if dataset_meta else {}
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, path)
    return model, path


@pytest.fixture(scope='module')
def seg_checkpoint(tmp_path_factory):
    from mmseg.apis import init_model as init_segmentor
    return _save_untrained(tmp_path_factory.mktemp('seg'), lambda cfg: init_segmentor(cfg, device='cpu'), TINY_SEG,
                           dict(classes=CLASSES, palette=PALETTE))


def test_segmentation_api_predicts_and_draws(seg_checkpoint, images, tmp_path):
    model, ckpt = seg_checkpoint
    results = inference(str(TINY_SEG), str(ckpt), [images], out_dir=tmp_path, progress=False)
    assert len(results) == 3
    # the prediction is the loaded model's: same logits as the model we saved
    image = cv2.imread(str(images / 'img0.jpg'))
    from mmseg.apis import inference_model
    model.cfg = load_config(str(TINY_SEG))
    expected = inference_model(model.eval(), image)
    assert torch.equal(results[0].pred_sem_seg.data, expected.pred_sem_seg.data)
    assert results[0].pred_sem_seg.shape == (48, 64)
    for i in range(3):
        overlay = cv2.imread(str(tmp_path / f'img{i}.png'))
        assert overlay.shape == (48, 64, 3)
        assert not np.array_equal(overlay, cv2.imread(str(images / f'img{i}.jpg')))  # something was drawn


def test_classes_come_from_the_config_when_the_checkpoint_has_none(tmp_path):
    from mmseg.apis import init_model as init_segmentor
    _, ckpt = _save_untrained(tmp_path, lambda cfg: init_segmentor(cfg, device='cpu'), TINY_SEG)
    assert init_model(str(TINY_SEG), str(ckpt)).model.dataset_meta['classes'] == CLASSES


def test_cli_writes_overlays_with_progress(seg_checkpoint, images, tmp_path):
    _, ckpt = seg_checkpoint
    proc = run_tool('infer', str(TINY_SEG), str(ckpt), str(images / 'img0.jpg'), str(images / 'img1.jpg'),
                    '--out', str(tmp_path / 'out'))
    assert '2 image(s) ->' in proc.stdout and '2/2' in proc.stderr
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['img0.png', 'img1.png']


def test_bad_inputs_are_named(seg_checkpoint, images, tmp_path):
    _, ckpt = seg_checkpoint
    with pytest.raises(FileNotFoundError, match=f'image not found: {tmp_path}/nope.jpg'):
        inference(str(TINY_SEG), str(ckpt), [images / 'img0.jpg', tmp_path / 'nope.jpg'], progress=False)
    state = torch.load(ckpt, weights_only=True)
    del state['state_dict']['decode_head.conv_seg.weight']
    torch.save(state, tmp_path / 'partial.pth')
    with pytest.raises(ValueError, match=r'partial.pth does not fit the model .*'
                                         r'1 missing \(e.g. decode_head.conv_seg.weight\)'):
        init_model(str(TINY_SEG), str(tmp_path / 'partial.pth'))


def test_classification_topk_json(images, tmp_path):
    from mmpretrain.apis import get_model
    config = 'configs/levit/levit-128s_1000e_imagenet.py'
    _, ckpt = _save_untrained(tmp_path, get_model, config)
    results = inference(config, str(ckpt), [images / 'img0.jpg', images / 'img1.jpg'], out_dir=tmp_path / 'out',
                        topk=3, progress=False)
    written = json.loads((tmp_path / 'out' / 'topk.json').read_text())
    assert written == results and len(written) == 2
    top = written[0]['topk']
    assert len(top) == 3 and top[0]['score'] >= top[1]['score'] >= top[2]['score']
    assert isinstance(top[0]['class'], str) and 0 <= top[0]['label'] < 1000
    assert top[0]['class'] != str(top[0]['label'])  # ImageNet names, from the dataset's metainfo


def test_classifier_names_the_classes_of_its_own_data(images, tmp_path):
    """A classifier of other data in ImageNet's layout (the synthetic demo)
    reports that data's classes: the checkpoint's dataset_meta first, else
    the config dataset's meta/classes.txt; ImageNet's names never stand in
    for another head size (label numbers, and a warning, instead)."""
    from mmpretrain.apis import get_model
    config = 'configs/demo/convmixer-demo_synthetic-cls.py'
    names = [f'shape{i}' for i in range(8)]
    _, ckpt = _save_untrained(tmp_path, get_model, config, dict(classes=names))
    written = inference(config, str(ckpt), [images / 'img0.jpg'], out_dir=tmp_path / 'out', topk=8,
                        progress=False)
    top = json.loads((tmp_path / 'out' / 'topk.json').read_text())[0]['topk']
    assert top == written[0]['topk'] and [t['class'] for t in top] == [names[t['label']] for t in top]

    bare = tmp_path / 'bare'
    bare.mkdir()
    _, ckpt = _save_untrained(bare, get_model, config)
    root = tmp_path / 'data'
    (root / 'meta').mkdir(parents=True)
    (root / 'meta' / 'classes.txt').write_text('\n'.join(reversed(names)) + '\n')
    top = init_model(config, str(ckpt), cfg_options={'test_dataloader.dataset.data_root': str(root)}).predict(
        str(images / 'img0.jpg'), topk=8)['topk']
    assert [t['class'] for t in top] == [names[7 - t['label']] for t in top]

    with pytest.warns(UserWarning, match='names 1000 classes but the head predicts 8'):
        predictor = init_model(config, str(ckpt), cfg_options={'test_dataloader.dataset.data_root': str(bare)})
    top = predictor.predict(str(images / 'img0.jpg'), topk=8)['topk']
    assert [t['class'] for t in top] == [str(t['label']) for t in top]


def test_detection_boxes_and_masks(images, tmp_path):
    from mmdet.apis import init_detector
    config = tmp_path / 'tiny_det.py'
    config.write_text(TINY_DET)
    _, ckpt = _save_untrained(tmp_path, lambda cfg: init_detector(cfg, device='cpu'), config,
                              dict(classes=('a', 'b', 'c'), palette=[(255, 0, 0), (0, 255, 0), (0, 0, 255)]))
    results = inference(str(config), str(ckpt), [images / 'img0.jpg'], out_dir=tmp_path / 'out', score_thr=0.,
                        progress=False)
    pred = results[0].pred_instances
    assert pred.bboxes.shape == (5, 4) and pred.masks.shape == (5, 48, 64)
    drawn = cv2.imread(str(tmp_path / 'out' / 'img0.png'))
    assert drawn.shape == (48, 64, 3) and not np.array_equal(drawn, cv2.imread(str(images / 'img0.jpg')))
