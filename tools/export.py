#!/usr/bin/env python
"""Export a trained model to ONNX and check it in onnxruntime.

    python tools/export.py configs/upernet_swin_ade20k.py iter_160000.pth --out upernet_swin.onnx
    python tools/export.py configs/swin/swin-t_300e_imagenet.py swin_t.pth --out swin_t.onnx --size 224
    python tools/export.py configs/demo/upernet_swin-demo_synthetic-ade.py work_dirs/demo/iter_800.pth --out work_dirs/demo/model.onnx   # after `make demo`

Input ``pixels`` (N, 3, H, W) float32 0-255, BGR (as OpenCV reads images);
channel swap and normalisation are in the graph; N, H, W dynamic. Outputs:
segmentation ``seg_logits`` (N, classes, H, W); classification ``scores``
(N, classes, softmax); detection the dense head's raw ``cls_score_<i>``,
``bbox_pred_<i>`` per level. The export is run in onnxruntime at --size and
32 px larger against eager PyTorch and refused above --tolerance. See
densekit/export.py.
"""
import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse

import densekit.runtime  # noqa: F401  (weights-only resume, atomic saves, zoo checkpoints)
from densekit.cli import quiet_libraries, user_errors
from densekit.export import export_onnx
from mmengine.config import DictAction


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file the checkpoint was trained with')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file (.pth); omitted: random weights')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--size', type=int, nargs='+', metavar='PX',
                        help="traced input H [W] (default: the config's crop_size, else 224)")
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest max-abs difference onnxruntime vs eager accepted (default 1e-4)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries')
    parser.add_argument('--verbose', action='store_true',
                        help="also show the libraries' own notices (deprecations, tracer warnings)")
    args = parser.parse_args(argv)
    size = None if not args.size else (args.size[0], args.size[-1])
    with user_errors('export', args.cfg_options, args.verbose), quiet_libraries('export', args.verbose):
        report = export_onnx(args.config, args.checkpoint, args.out, size=size, tolerance=args.tolerance,
                             cfg_options=args.cfg_options)
        print('\n'.join(report.lines()))


if __name__ == '__main__':
    main()
