"""Run a trained model on images: segmentation overlays, detection boxes and
masks, classification top-k, for any config of ours (the task comes from its
``default_scope``).

    from densekit.inference import inference
    results = inference('configs/upernet_swin_ade20k.py', 'iter_160000.pth',
                        ['a.jpg', 'b.jpg'], device='cpu', out_dir='out/')

Each toolbox's own API does the work (mmseg ``init_model``/``inference_model``
+ ``SegLocalVisualizer``; mmdet ``init_detector``/``inference_detector`` +
``DetLocalVisualizer``; mmpretrain ``get_model`` + ``ImageClassificationInferencer``);
this module adds one entry point, a strict check that the checkpoint fits the
model (the toolboxes load with ``strict=False`` and only log what did not fit)
and the files it writes. Whole-model checkpoints of the toolboxes' zoos and
official classifier releases load too (:mod:`densekit.whole_model`).
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch import nn

from .checkpoint import check_fits, extract_state_dict, load_file
from .config import load_config, loader_dataset, task_of
from .whole_model import describe_variant, release_state_dict, to_model_layout, trained_with
from .wiring import check_wiring

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


@dataclass
class Predictor:
    """A toolbox model ready for inference, and which task it serves."""
    model: nn.Module
    task: str  # 'segmentation' | 'detection' | 'classification'
    scope: str  # the config's default_scope: the toolboxes build their pipelines in it
    classifier: Any = None  # mmpretrain's ImageClassificationInferencer (classification only)

    def predict(self, image: str | np.ndarray, topk: int = 5) -> Any:
        """One image (path, or an HxWx3 BGR array as OpenCV reads it) ->
        a ``SegDataSample`` (``pred_sem_seg``: 1xHxW at the image size), a
        ``DetDataSample`` (``pred_instances``: boxes, scores, labels, masks),
        or for classification a dict ``{'topk': [{'label', 'class', 'score'}, ...]}``."""
        # mmseg and mmdet build the test pipeline on every call, from the
        # current default scope: another task's model may have changed it
        with DefaultScope.overwrite_default_scope(self.scope):
            return self._predict(image, topk)

    def _predict(self, image: str | np.ndarray, topk: int) -> Any:
        if self.task == 'segmentation':
            from mmseg.apis import inference_model
            return inference_model(self.model, image)
        if self.task == 'detection':
            from mmdet.apis import inference_detector
            return inference_detector(self.model, image)
        sample = self.classifier(image, return_datasamples=True)[0]
        scores = sample.pred_score.float().cpu()
        values, labels = scores.topk(min(topk, scores.numel()))
        classes = self.classifier.classes
        return {'topk': [{'label': int(i), 'class': classes[i] if classes else str(int(i)), 'score': float(v)}
                         for v, i in zip(values, labels)]}

    def draw(self, image: str | np.ndarray, result: Any, out_file: str | os.PathLike,
             score_thr: float = 0.3, opacity: float = 0.5) -> None:
        """Write the segmentation overlay or the detection boxes/masks on the image as a PNG."""
        import mmcv
        rgb = mmcv.imread(image, channel_order='rgb')
        if self.task == 'segmentation':
            from mmseg.visualization import SegLocalVisualizer
            vis = SegLocalVisualizer.get_instance('densekit_inference_seg')
            vis.alpha = opacity
            vis.set_dataset_meta(self.model.dataset_meta['classes'], self.model.dataset_meta['palette'])
            vis.add_datasample('result', rgb, result, draw_gt=False, out_file=str(out_file))
        elif self.task == 'detection':
            from mmdet.visualization import DetLocalVisualizer
            vis = DetLocalVisualizer.get_instance('densekit_inference_det')
            vis.alpha = opacity
            vis.dataset_meta = self.model.dataset_meta
            vis.add_datasample('result', rgb, result, draw_gt=False, pred_score_thr=score_thr,
                               out_file=str(out_file))
        else:
            raise ValueError('classification results are written as JSON, not drawn')


def init_model(config: str | Config, checkpoint: str | None = None, device: str = 'cpu',
               cfg_options: dict | None = None) -> Predictor:
    """Build the config's model with the toolbox of its task and load
    ``checkpoint`` (weights-only unpickling), which must fit it exactly."""
    cfg = load_config(config, cfg_options) if not isinstance(config, Config) else config
    task = task_of(cfg)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return _init_model(cfg, task, checkpoint, device)


def _init_model(cfg: Config, task: str, checkpoint: str | None, device: str) -> Predictor:
    # the toolboxes' loaders would print every unexpected key, and mmseg's
    # needs the checkpoint's 'meta': build without weights, check the fit
    # (one error with the likely cause), then load
    raw = load_file(checkpoint) if checkpoint else {}
    state = extract_state_dict(release_state_dict(raw)) if checkpoint else None
    if task == 'segmentation':
        from mmseg.apis import init_model as init_segmentor
        model = init_segmentor(cfg, None, device='cpu')
    elif task == 'detection':
        from mmdet.apis import init_detector
        model = init_detector(cfg, None, device='cpu')
    else:
        from mmpretrain.apis import ImageClassificationInferencer, get_model
        model = get_model(cfg, pretrained=False, device='cpu')
    check_wiring(model)
    if state is None:
        _warn_random_weights(getattr(cfg, 'filename', None) or 'the config')
    else:
        state = fit_checkpoint(model, state, checkpoint, getattr(cfg, 'filename', None) or 'the config',
                               raw.get('meta') if isinstance(raw.get('meta'), dict) else None)
        model.load_state_dict(state, strict=True)
    meta = raw.get('meta') if isinstance(raw.get('meta'), dict) else {}
    if meta.get('dataset_meta'):
        model.dataset_meta = meta['dataset_meta']
    else:
        # the toolboxes would guess the classes from their count (mmseg: Cityscapes
        # for 19) or the dataset class (mmpretrain: ImageNet's for any data in its
        # layout); the config's own test dataset knows them
        model.dataset_meta = _config_dataset_meta(cfg, task) or getattr(model, 'dataset_meta', None)
    model.to(device)
    classifier = None
    if task == 'classification':
        classes = _classifier_classes(model, cfg)
        model._dataset_meta = dict(model.dataset_meta or {}, classes=classes)  # what mmpretrain's APIs read
        classifier = ImageClassificationInferencer(model, pretrained=False, classes=classes)
    return Predictor(model.eval(), task, cfg.default_scope, classifier)


_WARNED_RANDOM: set[str] = set()


def _warn_random_weights(config: str) -> None:
    if config not in _WARNED_RANDOM:
        _WARNED_RANDOM.add(config)
        warnings.warn(f'init_model({config}, checkpoint=None): no checkpoint given, the model predicts '
                      'with random weights (pass the .pth of a trained model)', UserWarning, stacklevel=4)


def _config_dataset_meta(cfg: Config, task: str = 'segmentation') -> dict | None:
    """The metainfo of ``cfg``'s test dataset as the dataset itself makes it:
    built without loading (``lazy_init``), so ``metainfo``/``classes`` in the
    config and a classes file the dataset reads (``densekit.ImageNet``:
    ``{data_root}/meta/classes.txt``) count; the dataset class's ``METAINFO``
    when it cannot be built here. None without classes (segmentation and
    detection: or without a palette)."""
    from mmengine.registry import DATASETS
    dataset, _ = loader_dataset(cfg, 'test_dataloader')
    if dataset is None or not isinstance(dataset.get('type'), str):
        return None
    try:
        with warnings.catch_warnings():  # the toolboxes' notices about the data
            warnings.simplefilter('ignore')
            meta = dict(DATASETS.build({**dataset, 'lazy_init': True, 'pipeline': []}).metainfo)
    except Exception:  # noqa: BLE001 (a dataset that cannot be built here: its class's metainfo)
        meta = dict(getattr(DATASETS.get(dataset['type']), 'METAINFO', None) or {})
    needed = ('classes',) if task == 'classification' else ('classes', 'palette')
    return meta if all(meta.get(k) is not None for k in needed) else None


def _classifier_classes(model: nn.Module, cfg: Config) -> list[str] | None:
    """The class names a classifier's top-k reports: its ``dataset_meta``'s,
    when there is one per output of the head (else None: labels are shown as
    numbers, e.g. ImageNet's 1000 names for a model of another data's 8)."""
    classes = (getattr(model, 'dataset_meta', None) or {}).get('classes')
    num_classes = getattr(getattr(model, 'head', None), 'num_classes', None)
    if classes is None or (num_classes is not None and len(classes) != num_classes):
        if classes is not None:
            warnings.warn(f'{getattr(cfg, "filename", "the config")}: the dataset names {len(classes)} classes '
                          f'but the head predicts {num_classes}; top-k gives label numbers, not names '
                          "(a checkpoint saved by the Runner carries its data's names)", UserWarning,
                          stacklevel=4)
        return None
    return list(classes)


def fit_checkpoint(model: nn.Module, state: dict, checkpoint: str, config: str, meta: dict | None = None) -> dict:
    """``state`` in ``model``'s layout (toolbox zoos and releases converted by
    :func:`densekit.whole_model.to_model_layout`), checked to fit exactly.
    ``meta``: the checkpoint's ``meta`` (mmengine's), to name the config it
    was trained with (:func:`densekit.whole_model.trained_with`).

    Raises:
        ValueError: one message with counts, the first keys and the likely
            cause (another variant of the backbone named first, then the
            config the checkpoint's meta names).
    """
    state = to_model_layout(model, state)
    try:
        check_fits(model, state, checkpoint, config)
    except ValueError as err:
        head = f'{checkpoint} does not fit the model of {config}: '
        causes = [c for c in (describe_variant(model, state), trained_with(meta)) if c]
        if causes and str(err).startswith(head):  # the likely cause, first
            raise ValueError(f'{head}{"; ".join(causes)}: {str(err)[len(head):]}') from err
        raise
    return state


def expand_images(paths: Iterable[str | os.PathLike], skipped: list | None = None) -> list[Path]:
    """Image files from paths and directories (directories: their images and
    those of their subfolders, e.g. ImageNet's one folder per class, sorted;
    hidden files and folders are left out).

    Other files inside a directory are left out and, with ``skipped``, listed
    there as ``(path, reason)``; a path that does not exist is an error.
    """
    images = []
    for path in map(Path, paths):
        if path.is_dir():
            for p in sorted(path.rglob('*')):
                if p.is_dir() or any(part.startswith('.') for part in p.relative_to(path).parts):
                    continue
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    images.append(p)
                elif p.is_file() and skipped is not None:
                    skipped.append((p, f'not an image ({", ".join(IMAGE_SUFFIXES)})'))
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f'image not found: {path}' + (f' (resolved as {path.resolve()})'
                                                                   if not path.is_absolute() else ''))
    if not images:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {", ".join(map(str, paths))} '
                                'or its subfolders')
    return images


def png_name(path: str | os.PathLike, taken: set[str]) -> str:
    """A PNG name for ``path`` that is not in ``taken`` (added to it):
    ``<stem>.png``, else ``<stem>_<ext>.png`` (``a.jpg`` and ``a.png``), else
    ``<folder>_<stem>_<ext>.png``, else numbered."""
    p = Path(path)
    ext = p.suffix.lstrip('.')
    for name in (f'{p.stem}.png', f'{p.stem}_{ext}.png', f'{p.parent.name}_{p.stem}_{ext}.png'):
        if name not in taken:
            break
    else:
        i = 2
        while f'{p.stem}_{i}.png' in taken:
            i += 1
        name = f'{p.stem}_{i}.png'
    taken.add(name)
    return name


def inference(config: str | Config, checkpoint: str | None, images: Sequence[str | os.PathLike],
              device: str = 'cpu', out_dir: str | os.PathLike | None = None, topk: int = 5,
              score_thr: float = 0.3, opacity: float = 0.5, progress: bool = True,
              cfg_options: dict | None = None, skipped: list | None = None) -> list[Any]:
    """Predict every image (files or directories); see :meth:`Predictor.predict`.

    With ``out_dir``: segmentation and detection write ``<image stem>.png``
    (``<stem>_<ext>.png`` when two inputs share a stem; see :func:`png_name`)
    with the overlay, or boxes/masks with score >= ``score_thr``;
    classification writes ``topk.json``:
    ``[{'image': path, 'topk': [{'label', 'class', 'score'}]}]``.

    A file that cannot be read as an image, and a non-image file inside a
    given directory, is skipped with a warning; with ``skipped``, each is
    appended there as ``(path, reason)``.
    """
    predictor = init_model(config, checkpoint, device, cfg_options)
    return predict_files(images, lambda image, path: predictor.predict(image, topk),
                         lambda path, result, out_file: predictor.draw(str(path), result, out_file, score_thr,
                                                                     opacity),
                         predictor.task, out_dir, progress, skipped)


def predict_files(images: Sequence[str | os.PathLike], predict, draw, task: str,
                  out_dir: str | os.PathLike | None = None, progress: bool = True,
                  skipped: list | None = None) -> list[Any]:
    """The image loop shared by checkpoints and exported models: ``predict(image,
    path)`` on each readable image (HxWx3 BGR), ``draw(path, result, out_file)``
    for segmentation and detection, ``topk.json`` for classification.

    Unreadable files, and non-images inside a given directory, are skipped
    with a warning and appended to ``skipped`` as ``(path, reason)``.
    """
    import warnings

    import mmcv
    skipped = [] if skipped is None else skipped
    paths = expand_images(images, skipped)
    for path, reason in skipped:
        warnings.warn(f'{path}: skipped, {reason}', stacklevel=3)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    results, names = [], set()
    for path in _progress(paths, progress):
        try:
            image = mmcv.imread(str(path))  # BGR, as the toolboxes' pipelines expect arrays
        except Exception as err:  # noqa: BLE001  (mmcv raises several kinds on a corrupt file)
            image, why = None, f'{type(err).__name__}: {err}'
        else:
            why = 'not a readable image'
        if image is None:
            warnings.warn(f'{path}: skipped, {why}', stacklevel=3)
            skipped.append((path, why))
            continue
        result = predict(image, path)
        if task == 'classification':
            result = {'image': str(path), **result}
        elif out_dir is not None:
            draw(path, result, out_dir / png_name(path, names))
        results.append(result)
    if out_dir is not None and task == 'classification':
        (out_dir / 'topk.json').write_text(json.dumps(results, indent=2))
    return results


def _progress(items: list, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm
    return tqdm(items, desc='inference', unit='image')
