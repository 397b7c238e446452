#!/usr/bin/env python
"""The embedded demo: generate the synthetic ADE-layout data, train UPerNet +
Swin on it with tools/train.py, evaluate with tools/test.py (writing prediction
overlays), and print the held-out mIoU.

    python tools/demo.py [--work-dir work_dirs/demo] [--data data/synthetic_ade]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CONFIG = 'configs/demo/upernet_swin-demo_synthetic-ade.py'


def run(*args: str) -> None:
    print('+', ' '.join(args), flush=True)
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data', default='data/synthetic_ade')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to tools/train.py and tools/test.py')
    args = parser.parse_args(argv)
    from densekit.synthetic import generate_ade_like

    start = time.time()
    summary = generate_ade_like(os.path.join(ROOT, args.data))
    print(f"data: {summary['counts']} synthetic images at {summary['size']} in {args.data}")
    options = ['--cfg-options', f'data_root={args.data}', *args.cfg_options]
    run('tools/train.py', CONFIG, '--work-dir', args.work_dir, *options)
    trained = time.time()
    checkpoints = sorted(glob.glob(os.path.join(ROOT, args.work_dir, 'iter_*.pth')),
                         key=lambda p: int(p.rsplit('_', 1)[1].split('.')[0]))
    metrics_file = os.path.join(ROOT, args.work_dir, 'demo_metrics.json')
    show_dir = os.path.join(ROOT, args.work_dir, 'overlays')
    run('tools/test.py', CONFIG, checkpoints[-1], '--work-dir', args.work_dir,
        '--show-dir', show_dir, '--out', metrics_file, *options)
    with open(metrics_file) as f:
        metrics = json.load(f)
    overlays = glob.glob(os.path.join(show_dir, '**', '*.png'), recursive=True)
    print('\n' + '=' * 64)
    print(f"DEMO mIoU = {metrics['mIoU']:.2f}  (held-out synthetic validation split, "
          f"{summary['counts']['validation']} images; mAcc {metrics['mAcc']:.2f}, aAcc {metrics['aAcc']:.2f})")
    print(f'training {trained - start:.0f} s, total {time.time() - start:.0f} s; '
          f'{len(overlays)} prediction overlays under {os.path.relpath(show_dir, ROOT)}/')
    print('=' * 64)


if __name__ == '__main__':
    main()
