"""Issue 21 item 5, "your own dataset": the example configs in configs/examples/
train through tools/train.py on data laid out as a user's would be (written
here with numpy + cv2: a folder of images + PNG masks with 3 classes, and a
COCO-format detection dataset), and a mask folder without the images' masks
is one line naming the folder."""
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import ROOT, run_main
from densekit.datasets import BaseSegDataset, DatasetError

SEG_EXAMPLE = ROOT / 'configs' / 'examples' / 'upernet_swin-t_160k_my-seg-dataset.py'
DET_EXAMPLE = ROOT / 'configs' / 'examples' / 'mask-rcnn_swin-t_fpn_1x_my-coco-dataset.py'
SIZE = 64

# What a user adds to the copied example for this test: a one-block Swin and
# 64x64 inputs; the dataset settings are the example's own.
TINY_SWIN = "arch=dict(_delete_=True, embed_dims=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2)), init_cfg=None"
SEG_CONFIG = f"""_base_ = [{str(SEG_EXAMPLE)!r}]
model = dict(data_preprocessor=dict(size=({SIZE}, {SIZE})), backbone=dict({TINY_SWIN}),
             decode_head=dict(in_channels=[16, 32, 64, 128], channels=16),
             auxiliary_head=dict(in_channels=64, channels=8))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
"""
DET_CONFIG = f"""_base_ = [{str(DET_EXAMPLE)!r}]
model = dict(
    backbone=dict({TINY_SWIN}),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=16), bbox_head=dict(in_channels=16, fc_out_channels=32),
                  mask_roi_extractor=dict(out_channels=16),
                  mask_head=dict(num_convs=1, in_channels=16, conv_out_channels=16)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=({SIZE}, {SIZE}), keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({SIZE}, {SIZE}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline, filter_cfg=dict(min_size=0)))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
"""


def _shapes(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Two objects per image: a 'circle' and a 'square' as (N, 2) polygons."""
    out = []
    for kind in ('circle', 'square'):
        cx, cy, r = *rng.integers(14, SIZE - 14, 2), int(rng.integers(6, 12))
        if kind == 'square':
            poly = np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]], float)
        else:
            t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
            poly = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
        out.append((kind, poly))
    return out


def write_seg_folder(root: Path, num_train: int = 4, num_val: int = 2) -> Path:
    """images/{train,val}/NAME.jpg and masks/{train,val}/NAME.png: 0 background,
    1 'building' (the squares), 2 'road' (the circles), a 255 (unlabelled) border."""
    rng = np.random.default_rng(0)
    for split, n in (('train', num_train), ('val', num_val)):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'masks' / split).mkdir(parents=True)
        for i in range(n):
            image = rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
            mask = np.zeros((SIZE, SIZE), np.uint8)
            for kind, poly in _shapes(rng):
                label, colour = (1, (40, 40, 200)) if kind == 'square' else (2, (200, 200, 40))
                cv2.fillPoly(image, [poly.round().astype(np.int32)], colour)
                cv2.fillPoly(mask, [poly.round().astype(np.int32)], label)
            mask[:2] = 255
            cv2.imwrite(str(root / 'images' / split / f'{split}_{i}.jpg'), image)
            cv2.imwrite(str(root / 'masks' / split / f'{split}_{i}.png'), mask)
    return root


def write_coco(root: Path, num_train: int = 4, num_val: int = 2) -> Path:
    """images/{train,val}/*.jpg and annotations/{train,val}.json (COCO
    instances format, polygon masks). The files also hold a 'triangle'
    category that the config leaves out."""
    rng = np.random.default_rng(1)
    categories = [dict(id=1, name='circle'), dict(id=2, name='square'), dict(id=3, name='triangle')]
    ann_id = 1
    (root / 'annotations').mkdir(parents=True)
    for split, n in (('train', num_train), ('val', num_val)):
        (root / 'images' / split).mkdir(parents=True)
        images, anns = [], []
        for img_id in range(1, n + 1):
            image = rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
            for kind, poly in _shapes(rng):
                colour = (40, 40, 200) if kind == 'square' else (200, 200, 40)
                cv2.fillPoly(image, [poly.round().astype(np.int32)], colour)
                (x1, y1), (x2, y2) = poly.min(0), poly.max(0)
                anns.append(dict(id=ann_id, image_id=img_id, category_id=1 if kind == 'circle' else 2,
                                 bbox=[x1, y1, x2 - x1, y2 - y1], iscrowd=0,
                                 area=float(cv2.contourArea(poly.astype(np.float32))),
                                 segmentation=[poly.ravel().tolist()]))
                ann_id += 1
            name = f'{split}_{img_id}.jpg'
            cv2.imwrite(str(root / 'images' / split / name), image)
            images.append(dict(id=img_id, file_name=name, width=SIZE, height=SIZE))
        (root / 'annotations' / f'{split}.json').write_text(
            json.dumps(dict(images=images, annotations=anns, categories=categories)))
    return root


def test_own_segmentation_folder_trains_and_evaluates(tmp_path, capsys):
    """The seg example's data settings on a folder of images + PNG masks: two
    training steps through tools/train.py, then mIoU over the config's 3 classes."""
    data = write_seg_folder(tmp_path / 'my-seg-dataset')
    config = tmp_path / 'my_seg_config.py'
    config.write_text(SEG_CONFIG)
    work = tmp_path / 'work'
    out, _ = run_main(capsys, 'train', str(config), '--work-dir', str(work), '--cfg-options', f'data_root={data}')
    assert (work / 'iter_2.pth').is_file()
    log = next(work.glob('*/*.log')).read_text()
    assert 'Iter(train) [2/2]' in log and 'decode.loss_ce' in log
    for name in ('background', 'building', 'road'):  # the per-class IoU table names the config's classes
        assert re.search(rf'\|\s+{name}\s+\|', log), name
    assert 'mIoU' in log


def test_own_coco_dataset_trains_and_evaluates(tmp_path, capsys):
    """The COCO example's data settings on a COCO-format dataset: two training
    steps (4 images, batch 2, one epoch) through tools/train.py, then box and
    mask mAP on the val file; the file's third category is left out."""
    data = write_coco(tmp_path / 'my-coco-dataset')
    config = tmp_path / 'my_coco_config.py'
    config.write_text(DET_CONFIG)
    work = tmp_path / 'work'
    run_main(capsys, 'train', str(config), '--work-dir', str(work), '--cfg-options', f'data_root={data}/')
    assert (work / 'epoch_1.pth').is_file()
    log = next(work.glob('*/*.log')).read_text()
    assert 'Epoch(train) [1][2/2]' in log
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log


# -- a folder without masks -----------------------------------------------------


def _dataset(root: Path, **prefix) -> BaseSegDataset:
    return BaseSegDataset(data_root=str(root), data_prefix=prefix or dict(img_path='images/train',
                                                                          seg_map_path='masks/train'),
                          metainfo=dict(classes=('background', 'building', 'road')), pipeline=[])


def test_mask_folder_without_masks_is_named(tmp_path):
    data = write_seg_folder(tmp_path / 'data', num_val=0)
    masks = data / 'masks' / 'train'
    assert len(_dataset(data)) == 4
    for png in masks.glob('*.png'):  # e.g. masks saved as .jpg, or not copied
        png.rename(png.with_suffix('.jpg'))
    with pytest.raises(DatasetError) as err:
        _dataset(data)
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith(f'BaseSegDataset: {masks} lacks the masks of 4 of the 4 images under '
                              f"{data / 'images' / 'train'} (first: {masks / 'train_0.png'})")
    assert 'seg_map_suffix' in message

    # a single missing mask: counted, the first one named
    for jpg in sorted(masks.glob('*.jpg'))[1:]:
        jpg.rename(jpg.with_suffix('.png'))
    with pytest.raises(DatasetError, match=rf"{masks} lacks the masks of 1 of the 4 images .*"
                                           rf"first: {masks / 'train_0.png'}"):
        _dataset(data)

    # no mask folder in the config at all
    with pytest.raises(DatasetError, match=r'no mask folder for the images under .*images/train: set '
                                           r'data_prefix=dict\(img_path=..., seg_map_path=...\)'):
        _dataset(data, img_path='images/train')


def test_mask_folder_without_masks_through_the_tool(tmp_path, capsys):
    """tools/train.py: one line naming the folder, no traceback."""
    data = write_seg_folder(tmp_path / 'my-seg-dataset')
    for png in (data / 'masks' / 'train').glob('*.png'):
        png.unlink()
    config = tmp_path / 'my_seg_config.py'
    config.write_text(SEG_CONFIG)
    with pytest.raises(SystemExit) as exit_:
        run_main(capsys, 'train', str(config), '--work-dir', str(tmp_path / 'work'),
                 '--cfg-options', f'data_root={data}')
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and 'Traceback' not in err
    assert f"{data / 'masks' / 'train'} lacks the masks of 4 of the 4 images" in err


# -- the new recipes under 2-process DDP ------------------------------------------


def test_cascade_recipe_on_own_coco_data_under_ddp(tmp_path):
    """tools/train.py under torchrun (2 processes, gloo) with the Swin-T Cascade
    Mask R-CNN recipe at test size on the COCO-format data: its SyncBN box heads
    run as per-process BN, every stage's losses are finite, both iterations train."""
    from densekit.config import load_config
    from tests.test_distributed import free_port, run
    data = write_coco(tmp_path / 'my-coco-dataset')
    cfg = load_config(str(ROOT / 'configs' / 'swin' / 'cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py'),
                      {'data_root': f'{data}/'})
    model = cfg.model
    model.backbone.update(arch=dict(embed_dims=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2)), init_cfg=None)
    model.neck.update(in_channels=[16, 32, 64, 128], out_channels=16)
    model.rpn_head.update(in_channels=16, feat_channels=16)
    model.roi_head.bbox_roi_extractor.out_channels = model.roi_head.mask_roi_extractor.out_channels = 16
    for head in model.roi_head.bbox_head:
        head.update(in_channels=16, conv_out_channels=16, fc_out_channels=32, num_classes=2)
    model.roi_head.mask_head.update(num_convs=1, in_channels=16, conv_out_channels=16, num_classes=2)
    model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    for stage in model.train_cfg.rcnn:
        stage.sampler.num = 64
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                dict(type='Resize', scale=(SIZE, SIZE), keep_ratio=True), dict(type='PackDetInputs')]
    for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'val')):
        cfg[loader].update(batch_size=1, num_workers=0, persistent_workers=False)
        cfg[loader].dataset.update(metainfo=dict(classes=('circle', 'square')), ann_file=f'annotations/{split}.json',
                                   data_prefix=dict(img=f'images/{split}/'), pipeline=pipeline)
    cfg.train_dataloader.dataset.filter_cfg.min_size = 0
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = f'{data}/annotations/val.json'
    cfg.train_cfg.update(max_epochs=1, val_interval=2)  # 4 images, 2 ranks x 1: two iterations, no evaluation
    cfg.default_hooks.logger.interval = 1
    cfg.env_cfg.dist_cfg.backend = 'gloo'  # CPU processes
    config = tmp_path / 'tiny_cascade.py'
    cfg.dump(str(config))
    work = tmp_path / 'work'
    proc = run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}',
                str(ROOT / 'tools' / 'train.py'), str(config), '--launcher', 'pytorch', '--work-dir', str(work)])
    log = proc.stdout + proc.stderr
    assert 'SyncBatchNorm layer(s)' in log and 'run as per-process BatchNorm' in log
    assert (work / 'epoch_1.pth').is_file()
    text = next(work.glob('*/*.log')).read_text()
    assert 'Epoch(train) [1][2/2]' in text
    last = [line for line in text.splitlines() if 'Epoch(train) [1][2/2]' in line][0]
    for key in ('loss_rpn_cls', 's0.loss_bbox', 's1.loss_bbox', 's2.loss_bbox', 's0.loss_mask', 's2.loss_mask'):
        value = float(re.search(rf'{re.escape(key)}: (\S+)', last).group(1))
        assert np.isfinite(value), key


# -- a class list that the heads do not fit -----------------------------------------

@pytest.mark.parametrize('config, option, message', [
    (SEG_EXAMPLE, {'model.auxiliary_head.num_classes': 150},
     'model.auxiliary_head.num_classes=150 but train_dataloader.dataset.metainfo.classes has 3 classes: '
     'set model.auxiliary_head.num_classes=3'),
    (DET_EXAMPLE, {'model.roi_head.mask_head.num_classes': 80},
     'model.roi_head.mask_head.num_classes=80 but train_dataloader.dataset.metainfo.classes has 2 classes: '
     'set model.roi_head.mask_head.num_classes=2'),
    (ROOT / 'configs' / 'upernet_swin_ade20k.py', {'model.decode_head.num_classes': 3},
     "model.decode_head.num_classes=3 but train_dataloader.dataset.metainfo.classes (unset: "
     "densekit.ADE20KDataset's own) has 150 classes: set model.decode_head.num_classes=150"),
])
def test_class_list_that_differs_from_num_classes_is_refused(config, option, message):
    from densekit.config import check_num_classes, load_config
    check_num_classes(load_config(str(config)))  # the example as shipped fits
    with pytest.raises(ValueError) as err:
        check_num_classes(load_config(str(config), option))
    assert str(err.value).startswith(message) and '\n' not in str(err.value)


def test_classifier_num_classes_is_checked_against_the_class_file(tmp_path):
    from densekit.config import check_num_classes, load_config
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'classes.txt').write_text('a\nb\nc\n')  # DenseKit's ImageNet reads it
    config = str(ROOT / 'configs' / 'demo' / 'convmixer-demo_synthetic-cls.py')
    with pytest.raises(ValueError, match=r"model\.data_preprocessor\.num_classes=8 but train_dataloader\.dataset"
                       r"\.classes \(.*meta/classes\.txt\) has 3 classes: .*also model\.head"):
        check_num_classes(load_config(config, {'data_root': str(tmp_path)}))


def test_every_shipped_config_fits_its_classes():
    from densekit.config import check_num_classes, load_config
    for path in sorted((ROOT / 'configs').rglob('*.py')):
        if '_base_' not in path.parts:
            check_num_classes(load_config(str(path)))


def test_class_mismatch_stops_the_tool_before_the_work_dir(tmp_path, capsys):
    """tools/train.py: one line, before the Runner makes the work dir."""
    data = write_seg_folder(tmp_path / 'my-seg-dataset', num_train=1, num_val=1)
    config = tmp_path / 'my_seg_config.py'
    config.write_text(SEG_CONFIG)
    work = tmp_path / 'work'
    with pytest.raises(SystemExit):
        run_main(capsys, 'train', str(config), '--work-dir', str(work), '--cfg-options', f'data_root={data}',
                 'model.decode_head.num_classes=4')
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ('train: error: ValueError: model.decode_head.num_classes=4 but train_dataloader.dataset.'
                      'metainfo.classes has 3 classes: set model.decode_head.num_classes=3, or list your 4 class '
                      'names there')
    assert not work.exists()


@pytest.mark.parametrize('example, missing', [
    (SEG_EXAMPLE, 'BaseSegDataset: data folder(s) not found: data/my-seg-dataset/images/train, '
                  'data/my-seg-dataset/masks/train. Put your images and label maps there'),
    (DET_EXAMPLE, 'CocoDataset: data root data/my-coco-dataset/ not found. This config reads your own dataset '
                  '(annotations data/my-coco-dataset/annotations/train.json (COCO "instances" format), images '
                  'in data/my-coco-dataset/images/train/): put it there'),
])
def test_own_dataset_missing_names_the_path_and_data_root(example, missing, tmp_path, monkeypatch, capsys):
    """Not "download COCO / ADE20K": the example's own path, and data_root to point at the user's data."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        run_main(capsys, 'train', str(example), '--cfg-options', 'model.backbone.init_cfg=None')
    err = capsys.readouterr().err.splitlines()[0]
    assert err.startswith(f'train: error: FileNotFoundError: train_dataloader.dataset: {missing}')
    assert 'point data_root at' in err and '--cfg-options data_root=PATH' in err
    assert 'download' not in err.lower() and 'cocodataset.org' not in err
