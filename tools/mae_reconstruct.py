#!/usr/bin/env python
"""Show what an MAE pretraining checkpoint reconstructs: a PNG grid with one
row per image, original | masked | reconstruction.

    python tools/mae_reconstruct.py CONFIG CHECKPOINT IMAGES [--num 8] [--out PATH] [--seed 0]

IMAGES is an image file or a folder (searched recursively, sorted; --num images
evenly spaced through it); each image is resized (short side) and centre-cropped
to the model's input size. The reconstruction column shows the decoder's
prediction on the masked patches with the visible patches pasted back, as the
MAE paper's figures do (no loss is computed on visible patches). A model
trained on per-patch normalised pixels (``norm_pix``) predicts each patch's
normalised values: they are shown at the original patch's mean and variance,
which the model was not given. Prints the masked-patch loss on these images
and the PNG's path.
"""
from __future__ import annotations

import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse
import os
from pathlib import Path

import densekit.runtime  # noqa: F401  (weights-only loading of training checkpoints)
from mmengine.config import DictAction

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')


def list_images(source: str, num: int) -> list[Path]:
    """``num`` images of a file or folder (recursive, sorted), evenly spaced
    through the folder's list (so that class folders are all shown)."""
    path = Path(source)
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else []
    if not files:
        raise FileNotFoundError(f'IMAGES {source}: no image file there ({", ".join(IMAGE_SUFFIXES)})')
    return files[::max(1, len(files) // num)][:num]


def load_batch(files: list[Path], size: int):
    """(B, 3, size, size) uint8 BGR tensor: short side resized to ``size``, centre crop."""
    import mmcv
    import numpy as np
    import torch
    crops = []
    for f in files:
        img = mmcv.imread(str(f))
        if img is None:
            raise ValueError(f'{f}: not a readable image')
        h, w = img.shape[:2]
        img = mmcv.imrescale(img, size / min(h, w), interpolation='bicubic', backend='pillow')
        h, w = img.shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        crops.append(img[top:top + size, left:left + size])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def reconstruct(model, images, seed: int = 0) -> dict:
    """Run an mmpretrain ``MAE`` model on ``images`` ((B, 3, H, W) uint8, BGR).

    Returns (B, 3, H, W) uint8 RGB tensors ``original``, ``masked`` (masked
    patches grey), ``reconstruction`` (prediction on the masked patches,
    visible ones pasted back), the (B, L) ``mask`` (1 = masked) and the
    head's masked-patch ``loss``.
    """
    import torch
    head = model.head
    inputs = model.data_preprocessor(dict(inputs=images, data_samples=None), False)['inputs']
    torch.manual_seed(seed)
    with torch.no_grad():
        latent, mask, ids_restore = model.backbone(inputs)
        pred = model.neck(latent, ids_restore)
        loss = head.loss(pred, inputs, mask)
        if head.norm_pix:  # back from per-patch normalised values, at the true patch statistics
            target = head.patchify(inputs)
            pred = pred * (target.var(-1, keepdim=True) + 1e-6) ** .5 + target.mean(-1, keepdim=True)
        predicted = head.unpatchify(pred)
        p = head.patch_size
        m = mask.reshape(mask.shape[0], *[int(mask.shape[1] ** .5)] * 2)
        m = m.repeat_interleave(p, 1).repeat_interleave(p, 2)[:, None]  # B, 1, H, W
    mean, std = model.data_preprocessor.mean, model.data_preprocessor.std

    def pixels(x):
        return (x * std + mean).clamp(0, 255).round().to(torch.uint8)

    grey = (torch.full_like(inputs, 128.) - mean) / std
    return dict(original=pixels(inputs), masked=pixels(inputs * (1 - m) + grey * m),
                reconstruction=pixels(inputs * (1 - m) + predicted * m), mask=mask, loss=float(loss))


def save_grid(result: dict, out: str, scale: int = 2, gap: int = 2) -> str:
    """Write rows of original | masked | reconstruction, each image scaled
    ``scale`` times (nearest), ``gap`` white pixels apart; returns ``out``."""
    import cv2
    import numpy as np
    columns = [result[k].permute(0, 2, 3, 1).numpy() for k in ('original', 'masked', 'reconstruction')]
    B, H, W, _ = columns[0].shape
    h, w = H * scale, W * scale
    grid = np.full((B * h + (B - 1) * gap, 3 * w + 2 * gap, 3), 255, np.uint8)
    for i in range(B):
        for j, col in enumerate(columns):
            tile = cv2.resize(col[i], (w, h), interpolation=cv2.INTER_NEAREST)
            grid[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = tile
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(out, grid[..., ::-1]):
        raise ValueError(f'--out {out}: could not write the PNG there')
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the MAE pretraining config, e.g. configs/mae/mae_vit-b16_400e_imagenet.py')
    parser.add_argument('checkpoint', help='its pretraining checkpoint')
    parser.add_argument('images', help='an image file or a folder of images')
    parser.add_argument('--num', type=int, default=8, help='images (rows) to show')
    parser.add_argument('--out', help='PNG path (default: reconstructions.png beside the checkpoint)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random masks')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, as in tools/train.py')
    args = parser.parse_args(argv)
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    from densekit.cli import user_errors
    from densekit.config import load_config
    with user_errors('mae_reconstruct'):
        cfg = load_config(args.config, args.cfg_options)
        if cfg.get('model', {}).get('type') != 'MAE':
            raise ValueError(f"{args.config}: not an MAE pretraining config (model.type='MAE', e.g. "
                             'configs/mae/mae_vit-b16_400e_imagenet.py)')
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        from mmpretrain.registry import MODELS
        model = MODELS.build(cfg.model).eval()
        load_checkpoint(model, args.checkpoint, map_location='cpu', logger='silent')
        size = int(model.neck.num_patches ** .5) * model.head.patch_size  # the decoder's fixed grid
        files = list_images(args.images, args.num)
        result = reconstruct(model, load_batch(files, size), args.seed)
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), 'reconstructions.png')
        save_grid(result, out)
    print(f'masked-patch loss on these {len(files)} images: {result["loss"]:.4f} '
          f'(mask ratio {model.backbone.mask_ratio})')
    print(f'original | masked | reconstruction: {out}')
    return out


if __name__ == '__main__':
    main()
