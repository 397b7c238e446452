#!/usr/bin/env python
"""Throughput, peak memory and achieved GFLOP/s of a config's backbone, or of
its whole model, beside the peer implementations of the same backbone
architecture (timm, mmseg, mmdet, mmpretrain), with ours/peer ratios.

    python tools/benchmark.py configs/upernet_swin_ade20k.py              # 512x512 (crop_size), batch 1
    python tools/benchmark.py configs/swin/swin-t_300e_imagenet.py --size 224 --batch 4 --amp bf16
    python tools/benchmark.py --suite all --reps 2                        # every family: 512 seg, 224 cls
    python tools/benchmark.py configs/upernet_swin_ade20k.py --scope model --peers mmseg   # whole UPerNet, batch 2
    python tools/benchmark.py configs/swin/mask-rcnn_swin-t_fpn_1x_coco.py --scope model --size 800 1344 --peers mmdet
    python tools/benchmark.py configs/swin/swin-t_300e_imagenet.py --compile        # inductor, ours and peers alike
    python tools/benchmark.py configs/upernet_swin_ade20k.py --scope model --batch 1 --forward-only \\
        --peers mmseg --onnxruntime                                      # + our model exported, in onnxruntime

Forward = no-grad eval forward; train step = forward, backward, AdamW step.
--scope model runs the config's whole model (UPerNet, Mask R-CNN, classifier;
random weights) with each peer's backbone swapped in for ours, on a seeded
synthetic batch with targets: forward = mode='tensor' (detectors:
mode='predict', NMS included), train step = model.loss, backward, AdamW.
Repetitions are interleaved across models (ours, peer 1, ...), medians are
reported; see tools/benchmark_harness.py for how each figure is measured.
"""
import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse
import json
import os
import sys
from dataclasses import asdict


# the profiler (CPU memory) logs profiler_start/stop on stderr at its highest level, USDT (5)
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

import densekit.runtime  # noqa: F401  (weights-only resume, atomic saves, zoo checkpoints)
from benchmark_harness import SUITE, retain_freed_memory, run_benchmark, summary, write_results
from densekit.cli import user_errors
from mmengine.config import DictAction


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='*', help='config file(s), e.g. configs/upernet_swin_ade20k.py')
    parser.add_argument('--suite', choices=['all', *SUITE], help='run a whole table: ' + '; '.join(
        f'{task}: ' + ', '.join(f'{os.path.basename(c)}@{s} batch {b}' for c, s, b in jobs)
        for task, jobs in SUITE.items()))
    parser.add_argument('--scope', choices=['backbone', 'model'], default='backbone',
                        help="'backbone' (default): the backbones alone; 'model': the config's whole model, "
                             "each peer's backbone swapped into a copy of it (configs given by name only)")
    parser.add_argument('--size', type=int, nargs='+', metavar=('H', 'W'),
                        help="input side H (square), or H W (default: the config's crop_size, else 224)")
    parser.add_argument('--batch', type=int, help='batch size (default 1; --scope model: 2, as BatchNorm '
                        "in train mode needs two values per channel)")
    parser.add_argument('--device', default='cpu', help='cpu | cuda | cuda:N')
    parser.add_argument('--amp', choices=['fp32', 'bf16', 'fp16'], default='fp32',
                        help='autocast dtype (fp16 uses a GradScaler in the train step)')
    parser.add_argument('--reps', type=int, default=3, help='timed repetitions per model (median reported)')
    parser.add_argument('--threads', type=int, help='torch threads (default: torch\'s choice)')
    parser.add_argument('--peers', nargs='*', help='peers to run (default all for the family), e.g. timm mmseg')
    parser.add_argument('--compile', nargs='?', const='inductor', metavar='BACKEND',
                        help='torch.compile every backbone alike (ours and peers; default backend inductor); '
                             'compilation happens in the untimed warm-up')
    parser.add_argument('--onnxruntime', action='store_true',
                        help="add a row 'densekit (onnxruntime)': ours exported to ONNX (same weights, same "
                             'forward), run in onnxruntime on the CPU (forward only)')
    parser.add_argument('--forward-only', action='store_true',
                        help='time forwards only, no train steps (a whole model at --batch 1)')
    parser.add_argument('--malloc', choices=['retain', 'default'], default='retain',
                        help="'retain' (default): glibc keeps freed memory mapped (fewer page faults, steadier "
                             "CPU timings; see benchmark_harness.retain_freed_memory); 'default': glibc's settings")
    parser.add_argument('--json', help='also write the raw measurements to this JSON file')
    parser.add_argument('--results', metavar='FILE', help='append the tables to this results file (markdown), '
                        'dated, with the device and the command, e.g. results/benchmark.md')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. model.backbone.arch=small')
    args = parser.parse_args(argv)
    if not args.config and not args.suite:
        parser.error('give a config or --suite')
    if args.size and len(args.size) > 2:
        parser.error(f'--size takes H or H W, got {len(args.size)} values')
    size = None if not args.size else args.size[0] if len(args.size) == 1 else tuple(args.size)
    if args.suite and args.scope == 'model':
        # the suite's classifiers include LeViT, whose whole model needs its distillation teacher's file
        parser.error('--suite measures backbones; give --scope model config files by name')
    jobs = [job for task, js in SUITE.items() if args.suite in ('all', task) for job in js]
    jobs += [(c, size, args.batch) for c in args.config]
    with user_errors('benchmark'):
        if args.malloc == 'retain':
            print('malloc: freed memory stays mapped between steps, so CPU timings do not include '
                  're-faulting it (--malloc default: glibc\'s own settings)' if retain_freed_memory()
                  else 'malloc: not glibc, left as it is', flush=True)
        benches = []
        for config, size, batch in jobs:
            bench = run_benchmark(config, size, batch, device=args.device, amp=args.amp, reps=args.reps,
                                  peers=args.peers, threads=args.threads, cfg_options=args.cfg_options,
                                  scope=args.scope, compile_backend=args.compile, onnxruntime=args.onnxruntime,
                                  train=not args.forward_only)
            print(bench.table(), end='\n\n', flush=True)
            benches.append(bench)
        command = ' '.join(['tools/benchmark.py', *(argv if argv is not None else sys.argv[1:])])
        print('## Summary (ours / peer)\n')
        print(summary(benches))
        print(f'\ncommand: {command}')
        if args.results:
            write_results(args.results, benches, command, args.device)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump([asdict(b) for b in benches], f, indent=1)


if __name__ == '__main__':
    main()
