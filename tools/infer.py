#!/usr/bin/env python
"""Run a trained model on images and write what it sees.

    python tools/infer.py configs/upernet_swin_ade20k.py iter_160000.pth my_images/ --out out/ --device cuda
    python tools/infer.py configs/upernet_swin_ade20k.py upernet_swin.onnx a.jpg b.jpg --out out/   # onnxruntime
    # after `make demo`, with its data and checkpoint:
    python tools/infer.py configs/demo/upernet_swin-demo_synthetic-ade.py work_dirs/demo/iter_800.pth data/synthetic_ade/images/validation --out work_dirs/demo/infer

Segmentation: <image stem>.png overlays; detection: <image stem>.png with boxes
and masks (score >= --score-thr); classification: out/topk.json with the top-k
classes per image. Two inputs with one stem (a.jpg, then a.png) give a.png and
a_png.png; outputs never overwrite each other. IMAGES may be files or directories,
read with their subfolders (an ImageNet-layout folder of class folders works);
unreadable files and non-images in a directory are skipped with a warning and counted.
A CHECKPOINT ending in .onnx (tools/export.py) runs in onnxruntime on the CPU, with
the same outputs.
"""
import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse

import densekit.runtime  # noqa: F401  (weights-only resume, atomic saves, zoo checkpoints)
from densekit.cli import quiet_libraries, user_errors
from densekit.inference import inference
from mmengine.config import DictAction


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file the checkpoint was trained with')
    parser.add_argument('checkpoint', help='checkpoint file (.pth), or an exported .onnx model')
    parser.add_argument('images', nargs='+', help='image files or directories of images (subfolders included)')
    parser.add_argument('--out', required=True, help='directory for the PNGs / topk.json')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('--topk', type=int, default=5, help='classes per image (classification)')
    parser.add_argument('--score-thr', type=float, default=0.3, help='lowest score drawn (detection)')
    parser.add_argument('--opacity', type=float, default=0.5, help='opacity of masks and overlays')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries')
    parser.add_argument('--verbose', action='store_true',
                        help="also show the libraries' own notices (deprecations, tracer warnings)")
    args = parser.parse_args(argv)
    with user_errors('infer', args.cfg_options, args.verbose), quiet_libraries('infer', args.verbose):
        skipped = []
        if args.checkpoint.endswith('.onnx'):
            from densekit.export import onnx_inference
            results = onnx_inference(args.config, args.checkpoint, args.images, out_dir=args.out, topk=args.topk,
                                     opacity=args.opacity, skipped=skipped)
        else:
            if args.device.startswith('cuda'):
                import torch
                if not torch.cuda.is_available():
                    raise ValueError(f'--device {args.device}: no CUDA device is available here; use --device cpu')
            results = inference(args.config, args.checkpoint, args.images, device=args.device, out_dir=args.out,
                                topk=args.topk, score_thr=args.score_thr, opacity=args.opacity,
                                cfg_options=args.cfg_options, skipped=skipped)
        print(f'{len(results)} image(s) -> {args.out}' + (f'; skipped {len(skipped)} file(s): '
              + ', '.join(str(p) for p, _ in skipped[:3]) + (' ...' if len(skipped) > 3 else '') if skipped else ''))


if __name__ == '__main__':
    main()
