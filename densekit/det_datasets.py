"""mmdet's COCO dataset with errors that name the file, annotation or key at fault.

mmdet reads a COCO file with ``json.load`` and trusts it: a missing file fails
in pycocotools without saying where COCO is expected, a truncated file gives a
JSON error without its file, a missing key a bare ``KeyError``, and class names
that match none of the file's categories train on empty images without a word. :class:`CocoDataset` checks
these up front and decides the doubtful cases as follows:

* **unknown category id** (an annotation whose ``category_id`` is not in the
  file's ``categories``): an error naming the annotation id, its image and the
  file - the file is inconsistent. A category that *is* in the file but not in
  the config's ``metainfo.classes`` is skipped, as in mmdet (training on a
  subset of the classes); config classes missing from the file are an error.
* **box outside the image**: a box partly outside is clipped to the image
  (mmdet's ``Resize(clip_object_border=True)`` clips it anyway); a box wholly
  outside the image, under 1 pixel wide or high once clipped, or with
  ``area <= 0`` is skipped, as mmdet does. Both are counted and reported in one
  warning per file with the first example; a file where *no* box is usable is
  an error (its boxes are not ``[x, y, width, height]`` in pixels). CocoMetric
  scores against the annotation file as it is, as COCO's evaluation does.
* **image without a usable annotation** (none, or only crowd boxes and boxes
  skipped above): dropped from training by ``filter_cfg=dict(filter_empty_gt=True)``
  (our COCO configs set it; mmdet alone keeps an image whose boxes are all
  crowd or skipped, with no ground truth), kept in evaluation (test_mode),
  where its false positives count, as in COCO's own evaluation. If filtering
  leaves no training image, that is an error.
"""
from __future__ import annotations

import json
import logging
import os.path as osp
from collections.abc import Sequence

from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmengine.logging import print_log

from .datasets import OWN_DATA_HELP, DatasetError, NamedSampleErrorsMixin
from .registry import DATASETS

COCO_HELP = (
    'COCO 2017 is not included. Download train2017.zip, val2017.zip and '
    'annotations_trainval2017.zip from https://cocodataset.org/#download and unzip them '
    'into {root} so that {root}/train2017/, {root}/val2017/ and '
    '{root}/annotations/instances_{{train,val}}2017.json exist, or point the config '
    'elsewhere with --cfg-options data_root=PATH (it moves the dataloaders and the '
    'evaluators\' annotation files).')

# keys COCO's format defines and mmdet / COCOeval read without a default
REQUIRED_KEYS = {
    'images': ('id', 'file_name', 'width', 'height'),
    'categories': ('id', 'name'),
    'annotations': ('id', 'image_id', 'category_id', 'bbox', 'area'),
}


def _check_entries(path: str, section: str, entries) -> None:
    """Each entry of ``section`` is a dict with the required keys."""
    if not isinstance(entries, list):
        raise DatasetError(f"{path}: '{section}' must be a list, got {type(entries).__name__}")
    keys = REQUIRED_KEYS[section]
    for i, entry in enumerate(entries):
        missing = [k for k in keys if k not in entry] if isinstance(entry, dict) else list(keys)
        if missing:
            name = f" (id {entry['id']})" if isinstance(entry, dict) and 'id' in entry else ''
            raise DatasetError(f"{path}: {section}[{i}]{name} lacks required key(s) "
                               f"{missing}; COCO's format needs {list(keys)}")


def _unique_ids(path: str, section: str, entries: list[dict]) -> set:
    ids = set()
    for entry in entries:
        if entry['id'] in ids:
            raise DatasetError(f"{path}: {section} id {entry['id']} appears more than once")
        ids.add(entry['id'])
    return ids


def load_coco_json(path: str) -> dict:
    """Read and check a COCO annotation file.

    Returns the parsed dict. Raises :class:`DatasetError` naming the file for
    invalid JSON (with its line, column and character position), a missing
    section or key, a repeated id, a malformed ``bbox``, and an annotation
    whose image or category is not in the file. ``annotations`` may be absent
    (COCO's image-info files for test-dev have none).
    """
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetError(f'{path}: not valid JSON: {err.msg} at line {err.lineno}, '
                           f'column {err.colno} (character {err.pos})') from err
    except UnicodeDecodeError as err:
        raise DatasetError(f'{path}: not UTF-8 JSON text ({err.reason} at byte {err.start})') from err
    if not isinstance(data, dict):
        raise DatasetError(f'{path}: a COCO file holds a JSON object with images, annotations '
                           f'and categories, got a JSON {type(data).__name__}')
    missing = [k for k in ('images', 'categories') if k not in data]
    if missing:
        raise DatasetError(f"{path}: no {' and no '.join(repr(k) for k in missing)} key at the top "
                           f'level (found {sorted(data)}); is this a COCO instances file?')
    for section in ('images', 'categories', 'annotations'):
        if section in data:
            _check_entries(path, section, data[section])
    img_ids = _unique_ids(path, 'images', data['images'])
    cat_ids = _unique_ids(path, 'categories', data['categories'])
    anns = data.get('annotations', [])
    _unique_ids(path, 'annotations', anns)
    for ann in anns:  # COCO train2017: 860k of them, about a second
        box = ann['bbox']
        if ann['image_id'] not in img_ids:
            problem = 'no image with this id in the file'
        elif ann['category_id'] not in cat_ids:
            problem = f"unknown category_id {ann['category_id']}; the file's categories are {sorted(cat_ids)}"
        elif not (isinstance(box, Sequence) and len(box) == 4
                  and all(isinstance(v, (int, float)) for v in box)):
            problem = f'bbox must be 4 numbers [x, y, width, height], got {box!r}'
        else:
            continue
        raise DatasetError(f"{path}: annotation id {ann['id']} (image_id {ann['image_id']}): {problem}")
    return data


class CheckedCOCO(COCO):
    """mmdet's COCO api over a file read by :func:`load_coco_json`."""

    def __init__(self, annotation_file: str):
        data = load_coco_json(annotation_file)
        super().__init__()
        self.dataset = data
        self.createIndex()
        self.img_ann_map, self.cat_img_map = self.imgToAnns, self.catToImgs  # mmdet's aliases


@DATASETS.register_module()
class CocoDataset(NamedSampleErrorsMixin, MMDetCocoDataset):
    """mmdet's CocoDataset with checked files and reported box fixes (see the
    module docstring for each case)."""

    def __init__(self, *args, **kwargs):
        # the paths as given, for the messages (mmengine joins them in place)
        self._given_paths = (kwargs.get('data_root') or '', kwargs.get('ann_file', ''),
                             kwargs.get('data_prefix', {}).get('img', ''))
        super().__init__(*args, **kwargs)

    def full_init(self) -> None:
        """The file checks run when the data is loaded, not when the dataset is
        built with ``lazy_init=True`` only for its metainfo (mmdet's
        ``init_detector`` does that)."""
        if not self._fully_initialized:
            self.check_paths()
        super().full_init()

    def check_paths(self) -> None:
        """Raises FileNotFoundError naming the data root, annotation file or
        image folder that is missing (also callable before loading anything).
        With classes other than COCO's (the user's own dataset in COCO's
        format) the message says to point data_root at it, not to download COCO."""
        root, ann_file, img_dir = self._given_paths
        if '://' in root or '://' in ann_file:
            return  # remote storage (backend_args): left to mmengine's file backends
        ann_path, img_path = osp.join(root, ann_file), osp.join(root, img_dir)
        own = tuple(self.metainfo['classes']) != tuple(MMDetCocoDataset.METAINFO['classes'])
        layout = f'annotations {ann_path} (COCO "instances" format), images in {img_path}'
        help_text = OWN_DATA_HELP.format(layout=layout) if own else COCO_HELP.format(root=root or '.')
        if root and not osp.isdir(root):
            raise FileNotFoundError(f'CocoDataset: data root {root} not found. ' + help_text)
        if not osp.isfile(ann_path):
            raise FileNotFoundError(f'CocoDataset: annotation file {ann_path} not found. ' + help_text)
        if not osp.isdir(img_path):
            raise FileNotFoundError(f'CocoDataset: image folder {img_path} not found. ' + help_text)

    def COCOAPI(self, path: str) -> COCO:  # noqa: N802 (mmdet's hook: load_data_list calls self.COCOAPI(path))
        """The checked COCO api; config classes must all be categories of the file."""
        coco = CheckedCOCO(path)
        names = [c['name'] for c in coco.dataset['categories']]
        missing = [c for c in self.metainfo['classes'] if c not in names]
        if missing:
            raise DatasetError(
                f'{self.ann_file}: class(es) {missing[:5]}{" ..." if len(missing) > 5 else ""} of the '
                f'config ({len(missing)} of {len(self.metainfo["classes"])}) are not among the '
                f"file's categories {names[:10]}{' ...' if len(names) > 10 else ''}. For your own "
                "categories set the dataset's metainfo=dict(classes=(...)) to their names.")
        return coco

    def load_data_list(self) -> list[dict]:
        # boxes counted by parse_data_info, with the first example of each kind
        self._boxes = dict(total=0, clipped=0, skipped=0)
        self._first: dict[str, str] = {}
        data_list = super().load_data_list()
        boxes, first = self._boxes, self._first
        del self._boxes, self._first
        if boxes['total'] and boxes['skipped'] == boxes['total']:
            raise DatasetError(f'{self.ann_file}: none of its {boxes["total"]} boxes is usable '
                               f'(e.g. {first["skipped"]}); COCO boxes are [x, y, width, height] '
                               'in pixels, inside the image')
        for kind, what in (('clipped', 'partly outside their image: clipped to it'),
                           ('skipped', 'wholly outside their image, under 1 pixel wide or high, '
                                       'or with area <= 0: skipped')):
            if boxes[kind]:
                print_log(f'{self.ann_file}: {boxes[kind]} of {boxes["total"]} boxes {what} '
                          f'(first: {first[kind]})', logger='current', level=logging.WARNING)
        return data_list

    def _count(self, kind: str, ann: dict, img: dict) -> None:
        self._boxes[kind] += 1
        self._first.setdefault(kind, f"annotation id {ann['id']}, {img['file_name']} "
                                     f"({img['width']}x{img['height']}): bbox {ann['bbox']}")

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """Clip boxes partly outside the image and drop unusable ones (both
        counted for the warning), then mmdet's parsing."""
        img = raw_data_info['raw_img_info']
        W, H = img['width'], img['height']
        anns = []
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('ignore', False) or ann['category_id'] not in self.cat_ids:
                anns.append(ann)  # mmdet skips these: not counted
                continue
            self._boxes['total'] += 1
            x, y, w, h = ann['bbox']
            x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
            if x2 - x1 < 1 or y2 - y1 < 1 or ann['area'] <= 0:
                self._count('skipped', ann, img)
                continue
            if (x1, y1, x2, y2) != (x, y, x + w, y + h):
                self._count('clipped', ann, img)
                ann = dict(ann, bbox=[x1, y1, x2 - x1, y2 - y1])
            anns.append(ann)
        return super().parse_data_info(dict(raw_data_info, raw_ann_info=anns))

    def filter_data(self) -> list[dict]:
        data_list = super().filter_data()
        if not self.test_mode and (self.filter_cfg or {}).get('filter_empty_gt', False):
            # mmdet keeps images that have only crowd (ignored) or skipped boxes
            data_list = [info for info in data_list
                         if any(not inst.get('ignore_flag', 0) for inst in info['instances'])]
        if not data_list and self.data_list and not self.test_mode:
            raise DatasetError(
                f'{self.ann_file}: all {len(self.data_list)} images were filtered out for training '
                f'(filter_cfg={self.filter_cfg}): none has an annotation of the config\'s classes '
                'and a size of at least min_size')
        return data_list

    def sample_files(self, idx: int) -> str:
        return f"{self.get_data_info(idx)['img_path']}, annotations from {self.ann_file}"
