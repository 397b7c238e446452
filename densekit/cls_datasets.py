"""mmpretrain's ImageNet dataset with errors that name the folder or file at fault.

mmpretrain fails on a missing root with a bare ``FileNotFoundError`` from deep
in its folder scan, and on an unreadable image from inside a dataloader worker
without the sample's path; here both name the path and say what was expected.
"""
from __future__ import annotations

import os.path as osp

from mmpretrain.datasets import ImageNet as MMPretrainImageNet

from .datasets import DatasetError, NamedSampleErrorsMixin
from .registry import DATASETS

IMAGENET_HELP = (
    'expected ImageNet-1k in its folder layout, {root}/train/<wnid>/*.JPEG and '
    '{root}/val/<wnid>/*.JPEG (the validation images sorted into class folders, e.g. with '
    'the valprep.sh script of the PyTorch ImageNet example), optionally with mmpretrain\'s '
    'annotation files {root}/meta/{{train,val}}.txt ("<path> <label>" per line). ImageNet is '
    'not included: download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from '
    'image-net.org (registration needed), or point the config elsewhere with '
    '--cfg-options data_root=PATH. To try the toolbox without it: `make demo-cls`.')


@DATASETS.register_module()
class ImageNet(NamedSampleErrorsMixin, MMPretrainImageNet):
    """mmpretrain's ``ImageNet`` (same arguments) with up-front checks: the
    image folder and annotation file must exist and the split must not be
    empty; a sample that cannot be loaded is reported with its file.

    Class names: mmpretrain's ``ImageNet`` calls any data's classes by
    ImageNet-1k's names ("tench", ...). Unless ``classes`` (or
    ``metainfo['classes']``) is given, ``{data_root}/meta/classes.txt`` (one
    name per line, in label order) names them when present, so a model
    trained on other data in this layout predicts that data's names.
    """

    def __init__(self, data_root: str = '', split: str = '', data_prefix: str | dict = '',
                 ann_file: str = '', **kwargs):
        prefix = data_prefix.get('img_path', '') if isinstance(data_prefix, dict) else data_prefix
        # the paths as given, for the messages (mmengine joins them in place)
        self._given_paths = (data_root, osp.join(data_root, prefix or split), ann_file)
        classes_file = osp.join(data_root, 'meta', 'classes.txt')
        if (kwargs.get('classes') is None and 'classes' not in (kwargs.get('metainfo') or {})
                and osp.isfile(classes_file)):
            kwargs['classes'] = classes_file
        super().__init__(data_root=data_root, split=split, data_prefix=data_prefix,
                         ann_file=ann_file, **kwargs)

    def full_init(self) -> None:
        """The checks run when the data is loaded, not when the dataset is
        built with ``lazy_init=True`` only for its metainfo."""
        if self._fully_initialized:
            return
        self.check_paths()
        data_root, folder, ann_file = self._given_paths
        try:
            super().full_init()
        except RuntimeError as err:  # mmpretrain's folder scan: no images / empty class folders
            raise DatasetError(f'ImageNet: no usable images under {folder}: {err}') from err
        if len(self) == 0:
            raise DatasetError(f'ImageNet: split is empty: no images listed under {folder}'
                               + (f' by {ann_file}' if ann_file else ''))

    def check_paths(self) -> None:
        """Raises FileNotFoundError naming the image folder or annotation file
        that is missing (also callable before loading anything)."""
        data_root, folder, ann_file = self._given_paths
        if not osp.isdir(folder):
            raise FileNotFoundError(f'ImageNet: image folder not found: {folder}. '
                                    + IMAGENET_HELP.format(root=data_root or '.'))
        if ann_file and not osp.isfile(osp.join(data_root, ann_file)):
            raise FileNotFoundError(f'ImageNet: annotation file not found: {osp.join(data_root, ann_file)}. '
                                    + IMAGENET_HELP.format(root=data_root or '.'))
