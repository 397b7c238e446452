"""COCO detection and instance segmentation: the checked dataset, a 2-iteration
train + evaluation per backbone family, and tools/train.py + tools/test.py end
to end on a tiny COCO-layout dataset written here."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from tests.helpers import ROOT, run_main
from densekit.config import load_config
from densekit.datasets import DatasetError
from densekit.det_datasets import CocoDataset

TINY_DET = ROOT / 'tests' / 'data' / 'tiny_mask-rcnn_swin.py'
CLASSES = ('circle', 'square')
CATEGORIES = [dict(id=1, name='circle'), dict(id=3, name='square')]  # COCO's ids have gaps too
SIZE = 64


def _polygon(kind: str, cx: int, cy: int, r: int) -> np.ndarray:
    """(N, 2) float vertices of a circle (16-gon) or an axis-aligned square."""
    if kind == 'square':
        return np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]], float)
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def write_tiny_coco(root: Path, split: str, objects: list[list[tuple]], ann_id: int = 1) -> Path:
    """Write ``{root}/{split}/`` images and ``{root}/annotations/instances_{split}.json``.

    ``objects[i]`` lists image i's objects as (kind, cx, cy, r); an empty list
    makes an image without annotations. Returns the annotation file.
    """
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / 'annotations').mkdir(exist_ok=True)
    images, anns = [], []
    for img_id, objs in enumerate(objects, 1):
        img = np.full((SIZE, SIZE, 3), 40, np.uint8)
        for kind, cx, cy, r in objs:
            poly = _polygon(kind, cx, cy, r)
            cv2.fillPoly(img, [poly.round().astype(np.int32)], (0, 200, 0) if kind == 'circle' else (200, 0, 0))
            x1, y1 = poly.min(0)
            x2, y2 = poly.max(0)
            anns.append(dict(id=ann_id, image_id=img_id, category_id=1 if kind == 'circle' else 3,
                             bbox=[x1, y1, x2 - x1, y2 - y1], area=float(cv2.contourArea(poly.astype(np.float32))),
                             segmentation=[poly.ravel().tolist()], iscrowd=0))
            ann_id += 1
        name = f'{img_id:012d}.jpg'
        cv2.imwrite(str(root / split / name), img)
        images.append(dict(id=img_id, file_name=name, width=SIZE, height=SIZE))
    path = root / 'annotations' / f'instances_{split}.json'
    path.write_text(json.dumps(dict(images=images, annotations=anns, categories=CATEGORIES)))
    return path


TRAIN = [[('circle', 20, 20, 10), ('square', 44, 40, 10)], [('square', 30, 30, 14)],
         [('circle', 40, 24, 12)], [], [('circle', 16, 44, 9), ('square', 46, 16, 8)]]
VAL = [[('circle', 24, 30, 12), ('square', 46, 44, 9)], []]


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory) -> Path:
    """COCO's layout: 5 train images (one without objects), 2 val (one without)."""
    root = tmp_path_factory.mktemp('coco')
    write_tiny_coco(root, 'train2017', TRAIN)
    write_tiny_coco(root, 'val2017', VAL, ann_id=100)
    return root


def data_options(root: Path) -> dict:
    """The data root (it moves the evaluators' annotation file too)."""
    return {'data_root': str(root)}


def build(root: Path, split: str = 'train2017', test_mode: bool = False, **kwargs) -> CocoDataset:
    return CocoDataset(data_root=str(root), ann_file=f'annotations/instances_{split}.json',
                       data_prefix=dict(img=f'{split}/'), metainfo=dict(classes=CLASSES), pipeline=[],
                       filter_cfg=dict(filter_empty_gt=True), test_mode=test_mode, **kwargs)


def edit_file(src: Path, dst: Path, edit) -> Path:
    """Copy a dataset root with ``edit(annotations_dict)`` applied to its train file."""
    shutil.copytree(src, dst)
    path = dst / 'annotations' / 'instances_train2017.json'
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return dst


# -- the dataset's checks -------------------------------------------------------


def test_empty_images_are_dropped_in_training_and_kept_in_evaluation(tiny_coco):
    train, val = build(tiny_coco), build(tiny_coco, 'val2017', test_mode=True)
    assert len(train) == 4 and all(d['instances'] for d in train)
    assert len(val) == 2 and [len(d['instances']) for d in val] == [2, 0]
    # category ids 1 and 3 become labels 0 and 1
    assert sorted({i['bbox_label'] for d in train for i in d['instances']}) == [0, 1]


def test_box_partly_outside_is_clipped_and_reported(tiny_coco, tmp_path, monkeypatch):
    def move_out(data):
        data['annotations'][0]['bbox'] = [-6., 50., 20., 20.]  # 64x64 image
        data['annotations'][1]['bbox'] = [70., 70., 5., 5.]  # wholly outside
    root = edit_file(tiny_coco, tmp_path / 'coco', move_out)
    logged = []
    monkeypatch.setattr('densekit.det_datasets.print_log', lambda msg, **kw: logged.append(msg))
    boxes = [i['bbox'] for i in build(root)[0]['instances']]
    assert boxes == [[0., 50., 14., 64.]]  # clipped (x1, y1, x2, y2); the outside one skipped
    assert len(logged) == 2
    assert 'instances_train2017.json: 1 of 6 boxes partly outside their image: clipped to it' in logged[0]
    assert 'annotation id 1, 000000000001.jpg (64x64): bbox [-6.0, 50.0, 20.0, 20.0]' in logged[0]
    assert '1 of 6 boxes wholly outside' in logged[1] and 'annotation id 2' in logged[1]


def test_no_usable_box_is_an_error(tiny_coco, tmp_path):
    def normalise(data):  # a converter that wrote [0, 1] coordinates
        for ann in data['annotations']:
            ann['bbox'] = [v / SIZE for v in ann['bbox']]
    root = edit_file(tiny_coco, tmp_path / 'coco', normalise)
    with pytest.raises(DatasetError, match=r'none of its 6 boxes is usable .*\[x, y, width, height\] in pixels'):
        build(root)


def test_unknown_category_id_names_annotation_and_file(tiny_coco, tmp_path):
    root = edit_file(tiny_coco, tmp_path / 'coco', lambda d: d['annotations'][2].update(category_id=7))
    with pytest.raises(DatasetError, match=r"instances_train2017.json: annotation id 3 \(image_id 2\): "
                                           r"unknown category_id 7; the file's categories are \[1, 3\]"):
        build(root)


def test_classes_missing_from_the_file_are_an_error(tiny_coco):
    with pytest.raises(DatasetError, match=r"class\(es\) \['person'\] of the config .* not among the file's "
                                           r"categories \['circle', 'square'\]"):
        CocoDataset(data_root=str(tiny_coco), ann_file='annotations/instances_train2017.json',
                    data_prefix=dict(img='train2017/'), metainfo=dict(classes=('circle', 'person')))


def test_malformed_json_names_file_and_position(tiny_coco, tmp_path):
    root = edit_file(tiny_coco, tmp_path / 'coco', lambda d: None)
    path = root / 'annotations' / 'instances_train2017.json'
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DatasetError, match=rf'{path}: not valid JSON: .* at line 2, column 12 \(character 24\)'):
        build(root)


def test_missing_key_names_file_entry_and_key(tiny_coco, tmp_path):
    root = edit_file(tiny_coco, tmp_path / 'coco', lambda d: d['images'][1].pop('height'))
    with pytest.raises(DatasetError, match=r"instances_train2017.json: images\[1\] \(id 2\) lacks required "
                                           r"key\(s\) \['height'\]"):
        build(root)
    root = edit_file(tiny_coco, tmp_path / 'coco2', lambda d: d.pop('categories'))
    with pytest.raises(DatasetError, match=r"instances_train2017.json: no 'categories' key at the top level"):
        build(root)


def test_unreadable_image_names_image_and_annotation_file(tiny_coco, tmp_path):
    root = edit_file(tiny_coco, tmp_path / 'coco', lambda d: None)
    (root / 'train2017' / '000000000002.jpg').unlink()
    dataset = CocoDataset(data_root=str(root), ann_file='annotations/instances_train2017.json',
                          data_prefix=dict(img='train2017/'), metainfo=dict(classes=CLASSES),
                          pipeline=[dict(type='LoadImageFromFile')])
    with pytest.raises(DatasetError, match=r'cannot load sample 1 \(.*train2017/000000000002.jpg, annotations '
                                           r'from .*instances_train2017.json\): FileNotFoundError'):
        dataset[1]


def test_missing_data_says_where_coco_is_expected(tmp_path, capsys):
    # classes of its own: the user's data in COCO's format, not COCO to download
    with pytest.raises(FileNotFoundError, match=rf'data root {tmp_path}/coco not found. This config reads your own '
                       r'dataset .*point data_root at it'):
        build(tmp_path / 'coco')
    (tmp_path / 'coco').mkdir()
    with pytest.raises(FileNotFoundError, match=r'annotation file .*instances_train2017.json not found'):
        build(tmp_path / 'coco')
    # through the tool: one line naming the folder and the fix, no traceback
    with pytest.raises(SystemExit) as exit_:
        run_main(capsys, 'train', str(ROOT / 'configs' / 'swin/mask-rcnn_swin-t_fpn_1x_coco.py'),
                 '--work-dir', str(tmp_path / 'work'), '--cfg-options', f'data_root={tmp_path}/none/', 'model.backbone.init_cfg=None')
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and 'Traceback' not in err
    assert f'data root {tmp_path}/none/ not found' in err and '--cfg-options data_root=PATH' in err
    assert 'cocodataset.org' in err  # COCO's own classes: where to download it


# -- training and evaluation ----------------------------------------------------

# smallest settings of each family; isotropic ones get their levels from the
# adapter alone (ViTDet), as configs/mask-rcnn_{vit-b16,mae-vit-b16,convmixer-1536-20}_coco.py
ADAPTER = dict(type='densekit.SimpleFeaturePyramid', out_channels=16, out_strides=(4, 8, 16, 32, 64))
FAMILIES = {
    'swin': (dict(type='densekit.SwinTransformer', arch=dict(embed_dims=16, depths=(1, 1, 1, 1),
                                                              num_heads=(1, 1, 2, 2))), None),
    'vit': (dict(type='densekit.VisionTransformer', arch=dict(embed_dims=32, depth=2, num_heads=2),
                 out_indices=(1,)), dict(ADAPTER, in_channels=32, in_stride=16)),
    'mae': (dict(type='densekit.MAEViT', arch=dict(embed_dims=32, depth=2, num_heads=2), out_indices=(1,)),
            dict(ADAPTER, in_channels=32, in_stride=16)),
    'vitae': (dict(type='densekit.ViTAE', arch=dict(embed_dims=(8, 8, 16), token_dims=(8, 16, 32), depth=2,
                                                     num_heads=2, mlp_ratio=2., group=4)), [8, 16, 32, 32]),
    'levit': (dict(type='densekit.LeViT', arch=dict(embed_dims=(32, 48, 64), key_dim=8, num_heads=(2, 3, 4),
                                                     depths=(1, 1, 1))), [8, 16, 32, 48]),
    'coatnet': (dict(type='densekit.CoAtNet', arch=dict(stem_width=16, embed_dims=(16, 32, 64, 128),
                                                         depths=(1, 1, 1, 1))), [16, 32, 64, 128]),
    'convmixer': (dict(type='densekit.ConvMixer', arch=dict(dim=32, depth=2, kernel_size=3, patch_size=7,
                                                             act='gelu'), out_indices=(1,)),
                  dict(ADAPTER, in_channels=32, in_stride=7)),
}


@pytest.mark.parametrize('family', FAMILIES)
def test_two_iterations_and_coco_evaluation_per_family(family, tiny_coco, tmp_path, monkeypatch):
    """Two training iterations (4 images, batch 2) then box and mask mAP on
    the val split: losses finite, the backbone's weights moved."""
    import torch
    from mmengine.runner import Runner
    # yapf-formatting the config for the log and the checkpoint is half of
    # such a tiny run's time; the plain text does here
    monkeypatch.setattr(Config, 'pretty_text', property(lambda self: self.text))
    backbone, neck = FAMILIES[family]
    cfg = load_config(str(TINY_DET), data_options(tiny_coco))
    cfg.model.backbone = backbone
    if isinstance(neck, dict):
        cfg.model.neck = neck
    elif neck:
        cfg.model.neck.in_channels = neck
    cfg.train_cfg.val_interval = 2  # evaluated once, below
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    before = {n: p.detach().clone() for n, p in runner.model.backbone.named_parameters()}
    runner.train()
    losses = runner.message_hub.log_scalars
    assert runner.iter == 2
    for key in ('train/loss_rpn_cls', 'train/loss_cls', 'train/loss_bbox', 'train/loss_mask'):
        assert np.isfinite(losses[key].current()), key
    moved = [not torch.equal(p, before[n]) for n, p in runner.model.backbone.named_parameters()]
    assert sum(moved) > 0.9 * len(moved)
    metrics = runner.val()
    for kind in ('bbox', 'segm'):
        assert 0. <= metrics[f'coco/{kind}_mAP'] <= 1.
        assert f'coco/{kind}_mAP_50' in metrics


def test_train_then_test_with_show_dir_end_to_end(tiny_coco, tmp_path, capsys):
    """tools/train.py trains the Swin Mask R-CNN and evaluates it; tools/test.py
    reloads the checkpoint, prints box and mask mAP and draws the val images."""
    options = [f'{k}={v}' for k, v in data_options(tiny_coco).items()]
    work = tmp_path / 'work'
    out, _ = run_main(capsys, 'train', str(TINY_DET), '--work-dir', str(work), '--cfg-options', *options)
    checkpoint = work / 'epoch_1.pth'
    assert checkpoint.is_file()
    show = tmp_path / 'show'
    out, _ = run_main(capsys, 'test', str(TINY_DET), str(checkpoint), '--work-dir', str(work),
                      '--show-dir', str(show), '--out', str(tmp_path / 'metrics.json'), '--cfg-options', *options)
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= set(metrics)
    assert 'coco/segm_mAP:' in out
    drawn = sorted(show.glob('*.png'))  # named after the images, as for every task
    assert [p.name for p in drawn] == ['000000000001.png', '000000000002.png']
    # ground truth (left) beside the predictions (right), under a caption strip;
    # the first image's two objects are drawn over it, the empty second image stays as it was
    image = cv2.imread(str(drawn[0]))
    strip = image.shape[0] - SIZE
    assert 0 < strip < SIZE and image.shape[1:] == (2 * SIZE, 3)
    image = image[strip:]
    original = cv2.imread(str(tiny_coco / 'val2017' / '000000000001.jpg'))
    assert np.abs(image[:, :SIZE].astype(int) - original).mean() > 5
