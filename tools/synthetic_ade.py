#!/usr/bin/env python
"""Fully synthetic ADE20K-style segmentation data for the embedded demo and tests.

Every image is generated: a textured background (colour gradient, low-frequency
noise blobs, stripes at random angles, pixel noise) with 1-4 shapes drawn on it.
The shapes come from a handful of classes (see ``CLASSES``); each class has its
own base hue, jittered per instance and overlaid with a texture. Training and
validation come from independently seeded random streams, so the validation
split is held out. Files use ADE20K's on-disk layout and label convention
(0 = unlabelled, 1 = background, 2.. = shape classes), so the stock mmseg
ADE20K dataset class with ``reduce_zero_label=True`` reads them unchanged
(``densekit.SyntheticADEDataset`` adds the class names and the checks).

This data exists so the toolchain can be exercised end to end in minutes on a
CPU. A score measured on it says nothing about accuracy on real-world images.

    python tools/synthetic_ade.py --out data/synthetic_ade
    python tools/synthetic_ade.py --out /tmp/ade --num 40 --num-val 10 --size 96 128 --seed 1
"""
from __future__ import annotations

import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

# the dataset class holds the class names and colours: the generator draws what it declares
from densekit.datasets import SYNTHETIC_ADE_CLASSES as CLASSES
from densekit.datasets import SYNTHETIC_ADE_PALETTE as PALETTE  # noqa: F401

# Base hue of each shape class in degrees, spread evenly round the colour wheel (PALETTE's colours).
SHAPE_HUES: tuple[float, ...] = (0.0, 120.0, 240.0, 60.0, 300.0, 180.0)

SPLITS = ('training', 'validation')
MARKER = 'densekit_synthetic.json'
_VERSION = 1  # bump when the generator's output changes, so old markers stop matching
_BG_MAX_SAT = 0.25  # backgrounds stay greyish: hue must not give the class away


def _lowfreq(rng: np.random.Generator, h: int, w: int, ch: int = 1) -> np.ndarray:
    """Smooth noise in [-1, 1]: a coarse random grid upsampled bicubically."""
    cells = int(rng.integers(3, 7))
    grid = rng.uniform(-1, 1, (cells, cells, ch)).astype(np.float32)
    out = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out.reshape(h, w, ch), -1, 1)


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Sinusoidal stripes in [-1, 1] with random angle and period."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, period = rng.uniform(0, np.pi), rng.uniform(4, 20)
    return np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period + rng.uniform(0, 6.3))


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    a = rng.uniform(0, 2 * np.pi)
    t = xx * np.cos(a) + yy * np.sin(a)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    img = c0 + (c1 - c0) * t[..., None]
    img = img + rng.uniform(0.1, 0.3) * _lowfreq(rng, h, w, 3)
    if rng.random() < 0.6:
        img = img + rng.uniform(0.05, 0.2) * _stripes(rng, h, w)[..., None]
    hsv = cv2.cvtColor(np.clip(img, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.minimum(hsv[..., 1], _BG_MAX_SAT)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _place(pts: np.ndarray, angle: float, cx: float, cy: float) -> list[np.ndarray]:
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return [np.round(pts @ rot.T + (cx, cy)).astype(np.int32)]


def shape_mask(rng: np.random.Generator, cls: int, h: int, w: int) -> np.ndarray:
    """Binary mask of one shape of class ``cls`` (1-based shape index)."""
    mask = np.zeros((h, w), np.uint8)
    r = rng.uniform(0.12, 0.45) * min(h, w) / 2  # size is the shape's extent
    cx, cy, ang = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, 2 * np.pi)
    centre, name = (int(round(cx)), int(round(cy))), CLASSES[cls]
    fill = dict(color=1, lineType=cv2.LINE_8)  # no anti-aliasing: labels stay exact
    if name == 'circle':
        cv2.circle(mask, centre, max(int(round(r)), 2), thickness=-1, **fill)
    elif name == 'rectangle':
        k = rng.uniform(0.4, 0.85)
        pts = np.array([[-r, -r * k], [r, -r * k], [r, r * k], [-r, r * k]])
        cv2.fillPoly(mask, _place(pts, ang, cx, cy), **fill)
    elif name == 'triangle':
        t = np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.25, 0.25, 3)
        rad = r * rng.uniform(0.8, 1.0, 3)
        cv2.fillPoly(mask, _place(np.stack([rad * np.cos(t), rad * np.sin(t)], 1), ang, cx, cy), **fill)
    elif name == 'ellipse-ring':
        axes = np.array([r, r * rng.uniform(0.5, 0.9)])
        deg = float(np.degrees(ang))
        cv2.ellipse(mask, centre, tuple(int(v) for v in np.maximum(axes.round(), 2)), deg, 0, 360,
                    thickness=-1, **fill)
        inner = tuple(int(v) for v in np.maximum((axes * 0.55).round(), 1))
        cv2.ellipse(mask, centre, inner, deg, 0, 360, color=0, thickness=-1, lineType=cv2.LINE_8)
    elif name == 'cross':
        k = rng.uniform(0.25, 0.35)
        for pts in ([[-r, -r * k], [r, -r * k], [r, r * k], [-r, r * k]],
                    [[-r * k, -r], [r * k, -r], [r * k, r], [-r * k, r]]):
            cv2.fillPoly(mask, _place(np.array(pts), ang, cx, cy), **fill)  # two calls: union
    elif name == 'star':
        t = np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        cv2.fillPoly(mask, _place(np.stack([rad * np.cos(t), rad * np.sin(t)], 1), ang, cx, cy), **fill)
    return mask.astype(bool)


def shape_colour(rng: np.random.Generator, cls: int, h: int, w: int) -> np.ndarray:
    """Full-frame RGB fill for a shape: base hue + per-instance jitter + texture."""
    texture = _stripes(rng, h, w) if rng.random() < 0.5 else _lowfreq(rng, h, w)[..., 0]
    hsv = np.empty((h, w, 3), np.float32)
    hsv[..., 0] = (SHAPE_HUES[cls - 1] + rng.uniform(-10, 10)) % 360
    hsv[..., 1] = rng.uniform(0.55, 1.0)
    hsv[..., 2] = np.clip(rng.uniform(0.45, 0.95) * (1 + rng.uniform(0.1, 0.3) * texture), 0, 1)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _sample(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    img = background(rng, h, w)
    label = np.ones((h, w), np.uint8)  # 1 = background
    for _ in range(int(rng.integers(1, 5))):
        cls = int(rng.integers(1, len(CLASSES)))
        mask = shape_mask(rng, cls, h, w)
        img[mask] = shape_colour(rng, cls, h, w)[mask]  # later shapes occlude earlier ones
        label[mask] = cls + 1
    if rng.random() < 0.2:  # ADE-style unlabelled frame, exercises reduce_zero_label
        label[:2], label[-2:], label[:, :2], label[:, -2:] = 0, 0, 0, 0
    img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    return (img * 255).round().astype(np.uint8), label


def _files(root: Path, params: dict) -> list[Path]:
    n = {'training': params['num_train'], 'validation': params['num_val']}
    return [root / kind / split / f'synth_{i:06d}.{ext}'
            for split in SPLITS for i in range(n[split])
            for kind, ext in (('images', 'jpg'), ('annotations', 'png'))]


def _summary(root: Path, params: dict, generated: bool) -> dict:
    return {'root': str(root), 'counts': {'training': params['num_train'], 'validation': params['num_val']},
            'size': list(params['size']), 'classes': list(CLASSES), 'seed': params['seed'],
            'generated': generated}


def generate_ade_like(root: str | os.PathLike, num_train: int = 400, num_val: int = 100,
                      size: tuple[int, int] = (128, 128), seed: int = 0, overwrite: bool = False) -> dict:
    """Write a synthetic ADE20K-layout dataset under ``root`` and return a summary dict.

    Returns at once (``generated`` False) if ``root`` already holds a complete dataset made
    with the same parameters. Raises FileExistsError if ``root`` holds anything else, unless
    ``overwrite`` is set, which deletes only the four split folders and the marker file.
    """
    h, w = (int(v) for v in size)
    if h < 16 or w < 16 or num_train < 0 or num_val < 0:
        raise ValueError(f'need size >= 16x16 and non-negative counts, got {size}, {num_train}, {num_val}')
    root = Path(root)
    params = {'version': _VERSION, 'seed': int(seed), 'num_train': int(num_train),
              'num_val': int(num_val), 'size': [h, w], 'classes': list(CLASSES)}
    marker = root / MARKER
    if reuse_or_clear(marker, params, _files(root, params), overwrite,
                      [root / kind / split for kind in ('images', 'annotations') for split in SPLITS]):
        return _summary(root, params, generated=False)
    # One child stream per split and per image: val never shares draws with train,
    # and image i does not depend on how many images were requested.
    for split, split_seq, n in zip(SPLITS, np.random.SeedSequence(seed).spawn(2), (num_train, num_val)):
        (root / 'images' / split).mkdir(parents=True, exist_ok=True)
        (root / 'annotations' / split).mkdir(parents=True, exist_ok=True)
        for i, seq in enumerate(split_seq.spawn(n)):
            img, label = _sample(np.random.default_rng(seq), h, w)
            stem = f'synth_{i:06d}'
            ok = cv2.imwrite(str(root / 'images' / split / f'{stem}.jpg'),
                             cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            ok = ok and cv2.imwrite(str(root / 'annotations' / split / f'{stem}.png'), label)
            if not ok:
                raise OSError(f'could not write {stem} under {root}')
    write_marker(marker, {'params': params, 'counts': {'training': num_train, 'validation': num_val}})
    return _summary(root, params, generated=True)


def reuse_or_clear(marker: Path, params: dict, files: list[Path], overwrite: bool,
                   generated_dirs: list[Path]) -> bool:
    """The generators' shared bookkeeping. True if ``marker``'s folder already
    holds a complete dataset made with ``params`` (every one of ``files``
    exists). Otherwise the folder is made ready for writing: with ``overwrite``
    the marker, ``generated_dirs`` and ``files`` are deleted (nothing else);
    without it a folder holding anything else is refused (FileExistsError)."""
    root = marker.parent
    if not overwrite and marker.is_file():
        try:
            same = json.loads(marker.read_text()).get('params') == params
        except (ValueError, AttributeError):
            same = False
        if same and all(f.is_file() for f in files):
            return True
    if overwrite:
        marker.unlink(missing_ok=True)
        for folder in generated_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        for f in files:
            f.unlink(missing_ok=True)
    elif root.exists() and any(root.iterdir()):
        raise FileExistsError(f'{root} is not empty and holds no matching synthetic dataset; '
                              'choose another folder or pass overwrite=True')
    return False


def write_marker(marker: Path, content: dict) -> None:
    """Written last, via rename: its presence means every file was written."""
    tmp = marker.with_suffix('.tmp')
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, marker)


def generator_cli(generate, description: str, out: str, num: int, num_val: int, argv: list[str] | None = None,
                  square: bool = False, size: int = 128, multiple: int = 1) -> dict:
    """The generators' command line, the same flags for all three: run
    ``generate(out, num, num_val, size, seed, overwrite)`` and print its summary.
    ``description`` is the tool's docstring (its examples become ``--help``'s);
    ``multiple``: the counts must be positive multiples of it (``--help`` says so).
    A value ``generate`` refuses (ValueError, FileExistsError) is one line on stderr, exit 2."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    share = f', a positive multiple of {multiple}: the {multiple} classes get equal shares' if multiple > 1 else ''
    p.add_argument('--out', default=out, metavar='DIR', help=f'dataset root (default {out})')
    p.add_argument('--num', type=int, default=num, metavar='N', help=f'training images{share} (default {num})')
    p.add_argument('--num-val', type=int, default=num_val, metavar='N',
                   help=f'validation images{share} (default {num_val})')
    if square:
        p.add_argument('--size', type=int, default=size, metavar='S', help=f'image side in pixels (default {size})')
    else:
        p.add_argument('--size', type=int, nargs=2, default=[size, size], metavar=('H', 'W'),
                       help=f'image height and width in pixels (default {size} {size})')
    p.add_argument('--seed', type=int, default=0, metavar='S', help='random seed (default 0)')
    p.add_argument('--overwrite', action='store_true', help='replace a dataset of other parameters in --out')
    args = p.parse_args(argv)
    try:
        summary = generate(args.out, args.num, args.num_val, args.size if square else tuple(args.size), args.seed,
                           args.overwrite)
    except (ValueError, FileExistsError) as e:
        print(f'{p.prog}: error: {e}', file=sys.stderr)  # the value at fault, not the whole usage
        sys.exit(2)
    print(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> dict:
    return generator_cli(generate_ade_like, __doc__, 'data/synthetic_ade', 400, 100, argv)


if __name__ == '__main__':
    main()
