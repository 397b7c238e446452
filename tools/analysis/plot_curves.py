#!/usr/bin/env python
"""Plot loss, learning rate and validation metrics over iterations as a PNG.

    python tools/analysis/plot_curves.py work_dirs/upernet_swin_ade20k --out curves.png
    python tools/analysis/plot_curves.py work_dirs/demo    # after `make demo`

Reads the newest WORK_DIR/<timestamp>/vis_data/scalars.json that mmengine's
LocalVisBackend writes during training (or the scalars.json given with
--scalars). For TensorBoard instead, add dict(type='TensorboardVisBackend')
to the config's visualizer.vis_backends (mmengine's).
"""
import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse
import os

from densekit.analysis import find_scalars, plot_curves, read_scalars
from densekit.cli import user_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dir', help='a training work dir (holds <timestamp>/vis_data/scalars.json)')
    parser.add_argument('--scalars', help='a scalars.json to plot instead of the newest in WORK_DIR')
    parser.add_argument('--out', help='output PNG (default: WORK_DIR/curves.png)')
    args = parser.parse_args(argv)
    with user_errors('plot_curves'):
        scalars = args.scalars or find_scalars(args.work_dir)
        groups = read_scalars(scalars)
        if not groups['loss']:
            print(f'{scalars}: no training losses: the run logged none (mmengine logs every '
                  'default_hooks.logger.interval iterations, and this run was shorter; tools/train.py '
                  'lowers the interval for such runs)')
        out = plot_curves(groups, args.out or os.path.join(args.work_dir, 'curves.png'),
                          title=os.path.basename(os.path.normpath(args.work_dir)))
        for name, curves in groups.items():
            for key, points in curves.items():
                print(f'{name:>4} {key}: {len(points)} points, last {points[-1][1]:.4g} at iteration {points[-1][0]}')
        print(f'wrote {out}')


if __name__ == '__main__':
    main()
