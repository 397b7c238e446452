#!/usr/bin/env python
"""Parameters and FLOPs of a config's model and of its backbone, as a table.

    python tools/analysis/flops_params.py configs/upernet_swin_ade20k.py [--shape 512 512]

FLOPs are multiply-adds (mmengine's convention, the papers' "FLOPs"), for one
image of the given size through the inference path (``mode='tensor'``: no
post-processing; training-only heads such as mmseg's auxiliary head do not run).
The default size is a detector's test scale (1333x800 -> 800x1344 padded), else
the config's crop_size, else 224x224. A two-stage detector's RoI heads are
counted at its test_cfg.rpn.max_per_img proposals (how many survive the RPN's
NMS depends on the weights and the image): an upper bound, the same every run.
"""
import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse

import densekit.runtime  # noqa: F401  (weights-only resume, atomic saves, zoo checkpoints)
from densekit.analysis import build_model_from_config, count_complexity, default_input_shape
from densekit.cli import quiet_libraries, user_errors
from densekit.config import load_config
from mmengine.config import DictAction


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, e.g. configs/upernet_swin_ade20k.py')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size (default: a detector's test scale, else the config's crop_size, "
                        "else 224 224)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. model.backbone.arch=small')
    parser.add_argument('--verbose', action='store_true',
                        help="also show the libraries' own notices (deprecations, tracer warnings)")
    args = parser.parse_args(argv)
    with user_errors('flops_params', args.cfg_options, args.verbose), quiet_libraries('flops_params', args.verbose):
        cfg = load_config(args.config, args.cfg_options)
        shape = tuple(args.shape or default_input_shape(cfg))
        in_channels = cfg.model.get('backbone', {}).get('in_channels', 3)
        model = build_model_from_config(cfg)
        whole = count_complexity(model, (1, in_channels, *shape))
        print(f'{args.config}, input {in_channels}x{shape[0]}x{shape[1]}; '
              'FLOPs = multiply-adds (mmengine convention, as in the papers)\n')
        print(whole.table())
        if whole.note():
            print(f'\n{whole.note()}')


if __name__ == '__main__':
    main()
