#!/usr/bin/env python
"""Evaluate a checkpoint on a config's test set and print the metrics.

    python tools/test.py configs/upernet_swin_ade20k.py work_dirs/upernet_swin_ade20k/iter_160000.pth --show-dir vis
    python tools/test.py configs/upernet_swin_ade20k.py CKPT --tta    # multi-scale + flip ("ms+flip")
    # after `make demo`, with its data and checkpoint:
    python tools/test.py configs/demo/upernet_swin-demo_synthetic-ade.py work_dirs/demo/iter_800.pth --work-dir work_dirs/demo

The checkpoint must fit the model exactly: a missing, unexpected or
differently-shaped weight is an error naming it, not a silent partial load.
Whole-model checkpoints of the mmseg/mmdet/mmpretrain zoos and official
classifier releases load as they are (densekit/whole_model.py).
"""
import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse
import json
import os

import densekit.runtime  # noqa: F401  (weights-only resume, atomic saves, zoo checkpoints)
from densekit.checkpoint import extract_state_dict, load_file
from densekit.cli import (add_common_args, build_runner, format_metric, parse, stdout_to_log, user_errors,
                          work_dir_for)
from densekit.config import check_data, enable_tta, enable_visualization, load_config, task_of
from densekit.inference import fit_checkpoint
from densekit.whole_model import release_state_dict


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument('--show-dir', metavar='DIR',
                        help='draw every test image, ground truth | prediction, to DIR/<image name>.png '
                        '(all tasks; a relative DIR is under the work dir, see below)')
    parser.add_argument('--show', action='store_true', help='show the drawn images in a window (needs a display)')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds each shown image stays')
    parser.add_argument('--out', metavar='FILE',
                        help='also write the metrics to this JSON file. A relative FILE or --show-dir DIR is '
                        'under the work dir: --work-dir, else work_dirs/<config name>, also when the checkpoint '
                        'lives elsewhere; the absolute paths written are printed at the end')
    parser.add_argument('--tta', action='store_true', help="test-time augmentation: the config's tta_model "
                        'over its tta_pipeline (ADE20K: resize ratios 0.5-1.75 x flip; COCO boxes: 3 scales x flip)')
    args = parse(parser, argv)
    with user_errors('test', args.cfg_options, args.verbose):
        cfg = load_config(args.config, args.cfg_options)
        task_of(cfg)
        cfg.launcher = args.launcher
        cfg.work_dir = args.work_dir or cfg.get('work_dir') or work_dir_for(args.config)
        if args.tta:  # a config that cannot do TTA is refused before its data is looked for
            print(enable_tta(cfg, args.config))
        # the checkpoint named on the command line, readable and weights-only, before the data and the model
        raw = load_file(args.checkpoint)
        state = extract_state_dict(release_state_dict(raw))
        meta = raw.get('meta') if isinstance(raw.get('meta'), dict) else None  # names the config it was trained with
        check_data(cfg, ('test_dataloader',))  # before the Runner creates the work dir
        show_dir = enable_visualization(cfg, args.show_dir, args.show, args.wait_time)
        out = os.path.abspath(os.path.join(cfg.work_dir, args.out)) if args.out else None  # an absolute one stays
        cfg.load_from = None

        from mmengine.model import BaseTTAModel, is_model_wrapper
        runner = build_runner(cfg, verbose=args.verbose, testing=True)
        model = runner.model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):  # DDP, --tta
            model = model.module
        fit_checkpoint(model, state, args.checkpoint, args.config, meta)  # one message, before mmengine lists every key
        with stdout_to_log(runner, args.verbose):  # mmengine prints "Loads checkpoint by local backend"
            try:
                runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
            except RuntimeError as err:
                raise ValueError(f'{args.checkpoint} does not fit the model of {args.config}:\n{err}') from err
            metrics = runner.test()
        # numpy scalars -> Python numbers, so they print plainly and dump as JSON
        metrics = {k: v.item() if hasattr(v, 'item') else v for k, v in metrics.items()}
        print('\n'.join(f'{k}: {format_metric(v)}' for k, v in metrics.items()))
        if out:
            os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
            with open(out, 'w') as f:
                json.dump(metrics, f, indent=2)
            print(f'metrics written to {out}')
        if show_dir:
            print(f'pictures (ground truth | prediction) in {os.path.abspath(show_dir)}/')


if __name__ == '__main__':
    main()
