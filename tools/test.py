#!/usr/bin/env python
"""Evaluate a checkpoint on a config's test set and print the metrics.

    python tools/test.py configs/upernet_swin_ade20k.py work_dirs/.../iter_160000.pth [--show-dir DIR]

The checkpoint must fit the model exactly: a missing, unexpected or
differently-shaped weight is an error naming it, not a silent partial load.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import densekit  # noqa: E402,F401
from densekit.checkpoint import check_fits, extract_state_dict, load_file  # noqa: E402
from densekit.cli import add_common_args, parse, user_errors, work_dir_for  # noqa: E402
from densekit.config import enable_visualization, load_config, task_of  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument('--show-dir', help='write predictions drawn on the images here '
                        '(relative paths go under the work dir\'s timestamped folder)')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds each shown image stays')
    parser.add_argument('--out', help='also write the metrics to this JSON file')
    args = parse(parser, argv)
    with user_errors('test'):
        cfg = load_config(args.config, args.cfg_options)
        task_of(cfg)
        cfg.launcher = args.launcher
        cfg.work_dir = args.work_dir or cfg.get('work_dir') or work_dir_for(args.config)
        if args.show or args.show_dir:
            enable_visualization(cfg, args.show_dir, args.show, args.wait_time)
        # readable and weights-only, before building anything
        state = extract_state_dict(load_file(args.checkpoint))
        cfg.load_from = None

        from mmengine.model import is_model_wrapper
        from mmengine.runner import Runner
        runner = Runner.from_cfg(cfg)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        check_fits(model, state, args.checkpoint, args.config)  # one line, before mmengine lists every key
        try:
            runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
        except RuntimeError as err:
            raise ValueError(f'{args.checkpoint} does not fit the model of {args.config}:\n{err}') from err
        # numpy scalars -> Python numbers, so they print plainly and dump as JSON
        metrics = {k: v.item() if hasattr(v, 'item') else v for k, v in runner.test().items()}
        print('\n'.join(f'{k}: {v:.2f}' if isinstance(v, float) else f'{k}: {v}' for k, v in metrics.items()))
        if args.out:
            with open(args.out, 'w') as f:
                json.dump(metrics, f, indent=2)


if __name__ == '__main__':
    main()
