#!/usr/bin/env python
"""Fully synthetic COCO-style instance data for the embedded detection demo and tests.

Each image is a textured greyish background with 1-4 shapes on it, drawn by
the same code as the segmentation demo's data (``synthetic_ade.py``):
five shape classes (see ``CLASSES``), each with its own base hue, jittered per
instance and overlaid with a texture. Shapes are painted in order, later ones
occluding earlier ones; an instance's mask is what stays visible. A shape is
redrawn elsewhere if it would leave an earlier instance less than half visible
or with a hole (a COCO polygon cannot describe one), or if too little of it
lies inside the frame. Training and validation come from independently seeded
random streams, so the validation split is held out.

Files use COCO 2017's layout, so mmdet's CocoDataset and pycocotools read them::

    {root}/train2017/000000000001.jpg     {root}/annotations/instances_train2017.json
    {root}/val2017/000000000001.jpg       {root}/annotations/instances_val2017.json

Annotations are COCO instances: ``segmentation`` is a list of polygons that
rasterise (pycocotools) exactly to the visible pixels, ``bbox`` is the tight
``[x, y, w, h]`` box of those pixels, ``area`` their count, ``iscrowd`` 0.

This data exists so the detection toolchain can be exercised end to end in
minutes on a CPU. A score measured on it says nothing about accuracy on
real-world images.

    python tools/synthetic_coco.py --out data/synthetic_coco
    python tools/synthetic_coco.py --out /tmp/coco --num 60 --num-val 10 --size 96 96 --seed 1
"""
from __future__ import annotations

import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import json
import os
from pathlib import Path

import cv2
import numpy as np

import synthetic_ade as synthetic  # the segmentation demo's shapes, beside this file in tools/

# A subset of the segmentation demo's shapes: its 'ellipse-ring' has a hole.
CLASSES: tuple[str, ...] = ('circle', 'rectangle', 'triangle', 'cross', 'star')
SPLITS = ('train2017', 'val2017')
MARKER = 'densekit_synthetic_coco.json'
_VERSION = 1  # bump when the generator's output changes, so old markers stop matching
_MIN_AREA = 0.006  # smallest visible instance, as a fraction of the image area
_MIN_VISIBLE = 0.5  # an occluded instance keeps at least this fraction of its pixels
_TRIES = 10  # placements tried per shape before it is left out
# Polygons are traced on a 4x nearest-upsampled mask, so they follow pixel
# edges (not pixel centres, which would lose half of every boundary pixel),
# and simplified to a quarter pixel: they rasterise back to the same pixels.
_TRACE_SCALE = 4


def _has_hole(mask: np.ndarray) -> bool:
    _, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0, :, 3] >= 0).any())


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """(H, W) bool mask without holes -> COCO polygons ``[[x0, y0, x1, y1, ...], ...]``
    in pixel-edge coordinates (pixel (i, j) covers [j, j+1) x [i, i+1))."""
    big = cv2.resize(mask.astype(np.uint8), None, fx=_TRACE_SCALE, fy=_TRACE_SCALE,
                     interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for c in contours:
        c = cv2.approxPolyDP(c, 1.0, True).reshape(-1, 2)
        # a traced contour runs through the centres of the outermost upsampled pixels
        polygons.append(((c + 0.5) / _TRACE_SCALE).round(3).ravel().tolist())
    return polygons


def _acceptable(masks: list[np.ndarray], full: list[int], min_area: int) -> bool:
    """Every instance is large enough, at least half visible and hole-free."""
    return all(m.sum() >= max(min_area, _MIN_VISIBLE * f) and not _has_hole(m)
               for m, f in zip(masks, full))


def draw_sample(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One image and its instances.

    Returns:
        (H, W, 3) RGB uint8 image and a list of (category index into ``CLASSES``,
        (H, W) bool visible mask), in painting order; the masks are disjoint.
    """
    img = synthetic.background(rng, h, w)
    min_area = int(_MIN_AREA * h * w)
    instances: list[tuple[int, np.ndarray]] = []
    full: list[int] = []  # each instance's unoccluded pixel count
    for _ in range(int(rng.integers(1, 5))):
        cls = int(rng.integers(len(CLASSES)))
        ade_cls = synthetic.CLASSES.index(CLASSES[cls])  # the segmentation demo's shape index
        for _ in range(_TRIES):
            mask = synthetic.shape_mask(rng, ade_cls, h, w)
            occluded = [(c, m & ~mask) for c, m in instances]
            if _acceptable([m for _, m in occluded] + [mask], full + [int(mask.sum())], min_area):
                break
        else:
            continue
        img[mask] = synthetic.shape_colour(rng, ade_cls, h, w)[mask]
        instances = occluded + [(cls, mask)]
        full.append(int(mask.sum()))
    img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    return (img * 255).round().astype(np.uint8), instances


def _annotation(mask: np.ndarray, cls: int, image_id: int, ann_id: int) -> dict:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {'id': ann_id, 'image_id': image_id, 'category_id': cls + 1,
            'segmentation': mask_to_polygons(mask), 'area': int(mask.sum()),
            'bbox': [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0], 'iscrowd': 0}


def _write_split(root: Path, split: str, seq: np.random.SeedSequence, n: int, h: int, w: int) -> int:
    """Images of one split and its annotation file; returns the instance count."""
    (root / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    # one child stream per image: image i does not depend on how many were requested
    for i, child in enumerate(seq.spawn(n)):
        img, instances = draw_sample(np.random.default_rng(child), h, w)
        image_id, name = i + 1, f'{i + 1:012d}.jpg'
        if not cv2.imwrite(str(root / split / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f'could not write {root / split / name}')
        images.append({'id': image_id, 'file_name': name, 'height': h, 'width': w})
        annotations += [_annotation(m, c, image_id, len(annotations) + k + 1)
                        for k, (c, m) in enumerate(instances)]
    coco = {'info': {'description': 'DenseKit synthetic shapes (tools/synthetic_coco.py), not real images'},
            'images': images, 'annotations': annotations,
            'categories': [{'id': k + 1, 'name': c, 'supercategory': 'shape'} for k, c in enumerate(CLASSES)]}
    ann_file = root / 'annotations' / f'instances_{split}.json'
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(coco))
    return len(annotations)


def _files(root: Path, params: dict) -> list[Path]:
    n = dict(zip(SPLITS, (params['num_train'], params['num_val'])))
    return [root / 'annotations' / f'instances_{s}.json' for s in SPLITS] + [
        root / s / f'{i + 1:012d}.jpg' for s in SPLITS for i in range(n[s])]


def _summary(root: Path, params: dict, instances: dict, generated: bool) -> dict:
    return {'root': str(root), 'counts': dict(zip(SPLITS, (params['num_train'], params['num_val']))),
            'instances': instances, 'size': params['size'], 'classes': list(CLASSES),
            'seed': params['seed'], 'generated': generated}


def generate_coco_like(root: str | os.PathLike, num_train: int = 600, num_val: int = 100,
                       size: tuple[int, int] = (128, 128), seed: int = 0, overwrite: bool = False) -> dict:
    """Write a synthetic COCO-layout instance dataset under ``root`` and return a summary dict.

    Returns at once (``generated`` False) if ``root`` already holds a complete dataset made
    with the same parameters. Raises FileExistsError if ``root`` holds anything else, unless
    ``overwrite`` is set, which deletes only the image folders, the annotation files and the marker.
    """
    h, w = (int(v) for v in size)
    if h < 32 or w < 32 or num_train < 0 or num_val < 0:
        raise ValueError(f'need size >= 32x32 and non-negative counts, got {size}, {num_train}, {num_val}')
    root = Path(root)
    params = {'version': _VERSION, 'seed': int(seed), 'num_train': int(num_train),
              'num_val': int(num_val), 'size': [h, w], 'classes': list(CLASSES)}
    marker = root / MARKER
    if synthetic.reuse_or_clear(marker, params, _files(root, params), overwrite, [root / s for s in SPLITS]):
        return _summary(root, params, json.loads(marker.read_text())['instances'], generated=False)
    # one child stream per split: val never shares draws with train
    seqs = np.random.SeedSequence(seed).spawn(2)
    instances = {s: _write_split(root, s, q, n, h, w) for s, q, n in zip(SPLITS, seqs, (num_train, num_val))}
    synthetic.write_marker(marker, {'params': params, 'instances': instances})
    return _summary(root, params, instances, generated=True)


def main(argv: list[str] | None = None) -> dict:
    return synthetic.generator_cli(generate_coco_like, __doc__, 'data/synthetic_coco', 600, 100, argv)


if __name__ == '__main__':
    main()
