"""mmseg datasets with errors that name the file, folder or value at fault.

A wrong path or a bad file should cost seconds, not a day of GPU time with a
stack trace from deep inside a worker: missing data roots say where the data
is expected and how to get it, unreadable images and annotations name the file,
labels outside the class range name the file and the values, an image
without its label map names the mask folder, and an annotation whose size
differs from its image names both files.
"""
from __future__ import annotations

import os.path as osp

import numpy as np
from mmseg.datasets import ADE20KDataset as MMSegADE20KDataset
from mmseg.datasets import BaseSegDataset as MMSegBaseSegDataset

from .registry import DATASETS

# The classes of the demo data (tools/synthetic_ade.py): label value = index + 1, 0 unlabelled as in ADE20K.
SYNTHETIC_ADE_CLASSES: tuple[str, ...] = ('background', 'circle', 'rectangle', 'triangle', 'ellipse-ring', 'cross',
                                          'star')
# grey background, then each shape class at the pure base hue the generator draws it in
SYNTHETIC_ADE_PALETTE: list[list[int]] = [[120, 120, 120], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0],
                                          [255, 0, 255], [0, 255, 255]]

# A config that names its own classes reads the user's data, not the public dataset.
OWN_DATA_HELP = ('This config reads your own dataset ({layout}): put it there (the layout is in the config '
                 "file's header), or point data_root at it: --cfg-options data_root=PATH.")

ADE20K_HELP = (
    'ADE20K (SceneParsing, ADEChallengeData2016) is not included. Download '
    'ADEChallengeData2016.zip from the MIT Scene Parsing Benchmark '
    '(sceneparsing.csail.mit.edu) and unzip it so that {root}/{img} and '
    '{root}/{seg} exist, or point the config elsewhere with '
    '--cfg-options data_root=PATH. To try the toolbox without it: `make demo`.')


class DatasetError(RuntimeError):
    """A sample or split that cannot be used, with the file(s) at fault."""


class NamedSampleErrorsMixin:
    """``prepare_data`` re-raises any error of a sample's loading or transforms
    as a :class:`DatasetError` naming the sample's files (the toolboxes' own
    errors often name neither)."""

    def sample_files(self, idx: int) -> str:
        info = self.get_data_info(idx)
        return ', '.join(str(info[k]) for k in ('img_path', 'seg_map_path') if info.get(k))

    def prepare_data(self, idx: int):
        try:
            return super().prepare_data(idx)
        except Exception as err:
            raise DatasetError(f'cannot load sample {idx} ({self.sample_files(idx)}): '
                               f'{type(err).__name__}: {err}') from err


class CheckedSegDatasetMixin(NamedSampleErrorsMixin):
    """Adds up-front and per-sample checks to an mmseg dataset class."""

    help_text = ('Put your images and label maps there (the layout is in the config file\'s header), '
                 'or point data_root at your dataset: --cfg-options data_root=PATH.')

    def __init__(self, *args, **kwargs):
        # the paths as given, for the messages (mmengine joins them in place)
        self._given_paths = (kwargs.get('data_root') or '', dict(kwargs.get('data_prefix', {})))
        super().__init__(*args, **kwargs)
        self._check_sizes_after_loading()

    def full_init(self) -> None:
        """The folder checks run when the data is loaded, not when the dataset
        is built with ``lazy_init=True`` only for its metainfo (the toolboxes'
        inference APIs do that)."""
        if not self._fully_initialized:
            self.check_paths()
        super().full_init()

    def check_paths(self) -> None:
        """Raises FileNotFoundError naming the image / label folders that are
        missing (also callable before loading anything)."""
        root, prefix = self._given_paths
        folders = [osp.join(root, prefix.get(k, '')) for k in ('img_path', 'seg_map_path')]
        missing = [f for f in folders if not osp.isdir(f)]
        if missing:
            raise FileNotFoundError(
                f"{type(self).__name__}: data folder(s) not found: {', '.join(missing)}. "
                + self.help_text.format(root=root or '.', img=prefix.get('img_path', ''),
                                        seg=prefix.get('seg_map_path', '')))

    def load_data_list(self) -> list[dict]:
        # checked here: mmengine's serialisation fails on an empty list first
        data_list = super().load_data_list()
        img_dir = self.data_prefix.get('img_path', self.data_root)
        if not data_list:
            raise DatasetError(f"{type(self).__name__}: no images ending in {self.img_suffix} "
                               f"under {img_dir}")
        self._check_masks_exist(data_list, img_dir)
        return data_list

    def _check_masks_exist(self, data_list: list[dict], img_dir: str) -> None:
        # mmseg lists the images and assumes a mask beside each: a folder
        # without them would fail in the first worker, naming one file
        name = type(self).__name__
        if any('seg_map_path' not in info for info in data_list):
            raise DatasetError(f'{name}: no mask folder for the images under {img_dir}: set '
                               "data_prefix=dict(img_path=..., seg_map_path=...) in the config")
        paths = [info['seg_map_path'] for info in data_list]
        if any('://' in path for path in paths):
            return  # remote storage (backend_args): left to mmengine's file backends
        missing = [path for path in paths if not osp.isfile(path)]
        if missing:
            folder = self.data_prefix.get('seg_map_path') or osp.dirname(missing[0])
            raise DatasetError(
                f'{name}: {folder} lacks the masks of {len(missing)} of the {len(paths)} images under '
                f'{img_dir} (first: {missing[0]}); each image <name>{self.img_suffix} needs a label map '
                f'<name>{self.seg_map_suffix} there (config keys data_prefix.seg_map_path, seg_map_suffix)')

    def _check_sizes_after_loading(self) -> None:
        # mmseg would crop/flip a wrong-size label map with its image and
        # train on misaligned labels (or fail later in a shape error); the
        # check runs right after LoadAnnotations, before any transform.
        transforms = self.pipeline.transforms
        for i, transform in enumerate(transforms):
            if type(transform).__name__ == 'LoadAnnotations':
                transforms.insert(i + 1, check_seg_map_size)
                break

    def prepare_data(self, idx):
        results = super().prepare_data(idx)
        if results is not None:
            self._check_labels(results, self.get_data_info(idx))
        return results

    def _check_labels(self, results: dict, info: dict) -> None:
        sample = results.get('data_samples')
        seg = getattr(sample, 'gt_sem_seg', None)
        if seg is None:
            return
        values = np.unique(seg.data.numpy())
        num_classes = len(self.metainfo['classes'])
        bad = values[(values >= num_classes) & (values != self.ignore_index)]
        if bad.size:
            # report the values as stored in the file
            shift = 1 if self.reduce_zero_label else 0
            raise DatasetError(
                f"{info['seg_map_path']}: label value(s) {(bad + shift).tolist()} out of range: "
                f'{num_classes} classes (file values {shift}..{num_classes - 1 + shift}'
                + (', 0 = ignored' if shift else '') + f', {self.ignore_index} = ignored)')


def check_seg_map_size(results: dict) -> dict:
    """Pipeline step: the label map (H, W) must match the image's (H, W)."""
    seg, shape = results.get('gt_seg_map'), results.get('ori_shape')
    if seg is not None and shape is not None and seg.shape[:2] != tuple(shape[:2]):
        raise DatasetError(
            f"{results['seg_map_path']}: annotation is {seg.shape[1]}x{seg.shape[0]} (WxH) but "
            f"its image {results['img_path']} is {shape[1]}x{shape[0]}")
    return results


@DATASETS.register_module()
class BaseSegDataset(CheckedSegDatasetMixin, MMSegBaseSegDataset):
    """mmseg's dataset for any folder of images and label maps, with checked
    inputs. Classes and palette come from the config's ``metainfo``::

        dataset=dict(type='densekit.BaseSegDataset', data_root='data/my_data',
                     data_prefix=dict(img_path='images/train', seg_map_path='masks/train'),
                     img_suffix='.jpg', seg_map_suffix='.png',
                     metainfo=dict(classes=('sky', 'road'), palette=[[70, 130, 180], [128, 64, 128]]))

    Mask pixel values are class indices 0..N-1; 255 is ignored.
    """


@DATASETS.register_module()
class ADE20KDataset(CheckedSegDatasetMixin, MMSegADE20KDataset):
    """mmseg's ADE20K (150 classes, label 0 ignored) with checked inputs."""

    help_text = ADE20K_HELP


@DATASETS.register_module()
class SyntheticADEDataset(CheckedSegDatasetMixin, MMSegADE20KDataset):
    """The demo data that ``tools/synthetic_ade.py`` writes: ADE20K's layout
    and label convention (0 ignored) with its own classes."""

    METAINFO = dict(classes=SYNTHETIC_ADE_CLASSES, palette=SYNTHETIC_ADE_PALETTE)
    help_text = ('expected {root}/{img} and {root}/{seg}: generate the data with '
                 '`python tools/synthetic_ade.py --out {root}` (or `make demo`).')
