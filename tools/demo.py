#!/usr/bin/env python
"""The embedded demos: generate synthetic data in the real dataset's layout,
train on it with tools/train.py, evaluate the held-out split with tools/test.py
and print the score.

    python tools/demo.py                          # UPerNet + Swin, ADE20K layout (mIoU, overlays)
    python tools/demo.py --task classification    # ConvMixer, ImageNet layout (top-1/top-5)
    python tools/demo.py --task detection         # Mask R-CNN + Swin, COCO layout (box/mask mAP, overlays)
    python tools/demo.py --task mae               # MAE pretraining of a small ViT on the classification
                                                  # images (loss curve, PNG of reconstructions)
"""
import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse
import glob
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TASKS = {
    'segmentation': dict(config='configs/demo/upernet_swin-demo_synthetic-ade.py',
                         work_dir='work_dirs/demo', data='data/synthetic_ade'),
    'classification': dict(config='configs/demo/convmixer-demo_synthetic-cls.py',
                           work_dir='work_dirs/demo_cls', data='data/synthetic_cls'),
    'detection': dict(config='configs/demo/mask-rcnn_swin-demo_synthetic-coco.py',
                      work_dir='work_dirs/demo_det', data='data/synthetic_coco'),
    # pretraining: no held-out score, the reconstructions of the val images instead
    'mae': dict(config='configs/demo/mae_vit-demo_synthetic-cls.py', work_dir='work_dirs/demo_mae',
                data='data/synthetic_cls'),
}


def run(*args: str) -> None:
    print('+', ' '.join(args), flush=True)
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


def generate(task: str, root: str) -> str:
    """Generate (or reuse) the task's synthetic data; returns a one-line summary."""
    if task == 'segmentation':
        from synthetic_ade import generate_ade_like
        s = generate_ade_like(root)
        return f"{s['counts']} synthetic images at {s['size']}"
    if task == 'detection':
        from synthetic_coco import generate_coco_like
        s = generate_coco_like(root)
        return f"{s['counts']} synthetic images at {s['size']} with {s['instances']} objects"
    from synthetic_cls import generate_imagenet_like
    s = generate_imagenet_like(root)
    return f"{s['counts']} synthetic {s['size']}x{s['size']} images"


def score(task: str, metrics: dict) -> str:
    if task == 'segmentation':
        return (f"mIoU = {metrics['mIoU']:.2f}  (mAcc {metrics['mAcc']:.2f}, aAcc {metrics['aAcc']:.2f})")
    if task == 'detection':  # COCO AP at IoU .50:.95, as mmdet's CocoMetric reports it
        return (f"bbox mAP = {metrics['coco/bbox_mAP']:.3f}  segm mAP = {metrics['coco/segm_mAP']:.3f}  "
                f"(AP50 {metrics['coco/bbox_mAP_50']:.3f} / {metrics['coco/segm_mAP_50']:.3f})")
    return f"top-1 = {metrics['accuracy/top1']:.2f}  top-5 = {metrics['accuracy/top5']:.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', choices=sorted(TASKS), default='segmentation')
    parser.add_argument('--work-dir', help='default: work_dirs/demo (segmentation), work_dirs/demo_cls, '
                        'work_dirs/demo_det, work_dirs/demo_mae')
    parser.add_argument('--data', help='default: data/synthetic_ade (segmentation), data/synthetic_cls '
                        '(classification, mae), data/synthetic_coco')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to tools/train.py and tools/test.py')
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    work_dir, data = args.work_dir or task['work_dir'], args.data or task['data']

    start = time.time()
    print(f'data: {generate(args.task, os.path.join(ROOT, data))} in {data}')
    options = ['--cfg-options', f'data_root={data}', *args.cfg_options]  # moves COCO's evaluators too
    run('tools/train.py', task['config'], '--work-dir', work_dir, *options)
    trained = time.time()
    with open(os.path.join(ROOT, work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    if args.task == 'mae':
        return show_mae(task['config'], checkpoint, work_dir, data, start, trained)
    metrics_file = os.path.join(ROOT, work_dir, 'demo_metrics.json')
    show = ['--show-dir', os.path.join(ROOT, work_dir, 'overlays')] if args.task != 'classification' else []
    run('tools/test.py', task['config'], checkpoint, '--work-dir', work_dir, '--out', metrics_file,
        *show, *options)
    with open(metrics_file) as f:
        metrics = json.load(f)
    print('\n' + '=' * 64)
    print(f'DEMO ({args.task}) {score(args.task, metrics)} on the held-out synthetic split')
    print(f'training {trained - start:.0f} s, total {time.time() - start:.0f} s')
    print(f'metrics: {os.path.relpath(metrics_file, ROOT)}')
    if show:
        overlays = glob.glob(os.path.join(show[1], '**', '*.[pj][np]g'), recursive=True)
        print(f'{len(overlays)} prediction overlays under {os.path.relpath(show[1], ROOT)}/')
    print('=' * 64)


def show_mae(config: str, checkpoint: str, work_dir: str, data: str, start: float, trained: float) -> None:
    """The MAE demo's ending: the logged loss curve and the reconstruction PNG."""
    logs = sorted(glob.glob(os.path.join(ROOT, work_dir, '*', 'vis_data', 'scalars.json')))
    with open(logs[-1]) as f:  # this run's (the newest timestamp)
        curve = [json.loads(line) for line in f if '"loss"' in line]
    png = os.path.join(ROOT, work_dir, 'reconstructions.png')
    run('tools/mae_reconstruct.py', config, checkpoint, os.path.join(data, 'val'), '--out', png)
    print('\n' + '=' * 64)
    print('DEMO (mae) reconstruction loss (per-patch normalised pixels, masked patches) by iteration:')
    print('  ' + '  '.join(f"{r['step']}: {r['loss']:.4f}" for r in curve))
    print(f'training {trained - start:.0f} s, total {time.time() - start:.0f} s')
    print(f'original | masked | reconstruction: {os.path.relpath(png, ROOT)}')
    print('=' * 64)


if __name__ == '__main__':
    main()
