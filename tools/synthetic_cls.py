#!/usr/bin/env python
"""A small, fully synthetic classification dataset in ImageNet's folder layout.

Each image shows one shape on a textured greyish background; the shape's kind
is its class (see ``CLASSES``). Colour, size, position, rotation, line width,
background and noise are drawn at random per image, so only the shape tells
the class apart. Training and validation images come from independently
seeded random streams: the validation split is held out.

Layout (as ImageNet's, with mmpretrain's annotation files alongside)::

    {out}/train/<class>/<class>_00000.JPEG   {out}/meta/train.txt
    {out}/val/<class>/<class>_00000.JPEG     {out}/meta/val.txt
                                             {out}/meta/classes.txt (names, label order)

This data exists so the classification toolchain can be run end to end in
minutes on a CPU; a score on it says nothing about accuracy on real images.

    python tools/synthetic_cls.py --out data/synthetic_cls
    python tools/synthetic_cls.py --out /tmp/cls --num 80 --num-val 16 --size 32 --seed 1
"""
from __future__ import annotations

import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from synthetic_ade import generator_cli  # the generators' shared command line, beside this file in tools/

CLASSES: tuple[str, ...] = ('circle', 'square', 'triangle', 'cross', 'ring', 'bar', 'star', 'diamond')
SPLITS = ('train', 'val')
MARKER = 'densekit_synthetic_cls.json'
_VERSION = 1  # bump when the output changes, so old markers stop matching


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: a low-saturation gradient with smooth noise."""
    cells = int(rng.integers(2, 5))
    grid = rng.uniform(60, 200, (cells, cells, 1)).astype(np.float32)
    base = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]
    tint = rng.uniform(-15, 15, 3).astype(np.float32)
    return np.clip(base + tint, 0, 255).astype(np.uint8)


def _polygon(kind: str, center: np.ndarray, radius: float, angle: float) -> list[np.ndarray]:
    """Vertices of the polygonal shapes, rotated by ``angle`` (radians)."""
    def ring(n: int, r: np.ndarray, offset: float = 0.) -> np.ndarray:
        t = angle + offset + 2 * np.pi * np.arange(n) / n
        return np.stack([center[0] + r * np.cos(t), center[1] + r * np.sin(t)], 1)
    if kind == 'square':
        return [ring(4, np.full(4, radius), np.pi / 4)]
    if kind == 'diamond':  # a rhombus: long and short diagonals
        return [ring(4, np.array([radius, 0.55 * radius] * 2))]
    if kind == 'triangle':
        return [ring(3, np.full(3, radius))]
    if kind == 'star':
        return [ring(10, np.array([radius, 0.42 * radius] * 5))]
    raise ValueError(kind)


def draw_sample(rng: np.random.Generator, label: int, size: int = 64) -> np.ndarray:
    """One (size, size, 3) BGR uint8 image of class ``CLASSES[label]``."""
    img = _background(rng, size)
    kind = CLASSES[label]
    center = rng.uniform(0.35, 0.65, 2) * size
    radius = rng.uniform(0.2, 0.32) * size
    angle = rng.uniform(0, 2 * np.pi)
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    if int(np.abs(np.array(color, float) - img[int(center[1]), int(center[0])]).sum()) < 120:
        color = tuple(255 - c for c in color)  # keep the shape visible on its background
    width = max(2, int(rng.uniform(0.06, 0.1) * size))
    c = tuple(int(v) for v in center)
    if kind == 'circle':
        cv2.circle(img, c, int(radius), color, -1, cv2.LINE_AA)
    elif kind == 'ring':
        cv2.circle(img, c, int(radius), color, width, cv2.LINE_AA)
    elif kind in ('cross', 'bar'):
        deg = np.degrees(angle)
        for d in ((0, 90) if kind == 'cross' else (0,)):
            box = cv2.boxPoints((center, (2 * radius, width * 1.5), deg + d)).astype(np.int32)
            cv2.fillPoly(img, [box], color, cv2.LINE_AA)
    else:
        pts = [np.round(p).astype(np.int32) for p in _polygon(kind, center, radius, angle)]
        cv2.fillPoly(img, pts, color, cv2.LINE_AA)
    noise = rng.normal(0, 8, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def generate_imagenet_like(out: str | Path, num_train: int = 200, num_val: int = 50, size: int = 64,
                           seed: int = 0) -> dict:
    """Write ``num_train``/``num_val`` images per class under ``out`` (see the
    module docstring) and return a summary. Deterministic for a given seed;
    a folder already generated with the same arguments is kept as it is."""
    out = Path(out)
    params = dict(version=_VERSION, num_train=num_train, num_val=num_val, size=size, seed=seed,
                  classes=list(CLASSES))
    summary = dict(params, counts={'train': num_train * len(CLASSES), 'val': num_val * len(CLASSES)},
                   root=str(out))
    marker = out / MARKER
    classes_file = out / 'meta' / 'classes.txt'  # names the classes (densekit.ImageNet reads it)
    if marker.is_file() and json.loads(marker.read_text()).get('params') == params:
        if not classes_file.is_file():
            classes_file.write_text('\n'.join(CLASSES) + '\n')
        return summary
    if out.exists():
        shutil.rmtree(out)
    (out / 'meta').mkdir(parents=True)
    for split_id, (split, per_class) in enumerate(zip(SPLITS, (num_train, num_val))):
        rng = np.random.default_rng([seed, split_id])  # independent streams: val is held out
        lines = []
        for label, name in enumerate(CLASSES):
            (out / split / name).mkdir(parents=True)
            for i in range(per_class):
                rel = f'{name}/{name}_{i:05d}.JPEG'
                cv2.imwrite(str(out / split / rel), draw_sample(rng, label, size),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                lines.append(f'{rel} {label}')
        (out / 'meta' / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    classes_file.write_text('\n'.join(CLASSES) + '\n')
    marker.write_text(json.dumps(dict(params=params, note='synthetic data, see tools/synthetic_cls.py')))
    return summary


def _generate_totals(out: str, num: int, num_val: int, size: int, seed: int, overwrite: bool) -> dict:
    """The command line's counts are totals; every class gets the same share."""
    del overwrite  # a folder of other parameters is always regenerated here
    for flag, n in (('--num', num), ('--num-val', num_val)):
        if n < len(CLASSES) or n % len(CLASSES):
            raise ValueError(f'{flag} {n}: the {len(CLASSES)} classes need a positive multiple of {len(CLASSES)} images')
    return generate_imagenet_like(out, num // len(CLASSES), num_val // len(CLASSES), size, seed)


def main(argv: list[str] | None = None) -> dict:
    return generator_cli(_generate_totals, __doc__, 'data/synthetic_cls', 200 * len(CLASSES), 50 * len(CLASSES),
                         argv, square=True, size=64, multiple=len(CLASSES))


if __name__ == '__main__':
    main()
