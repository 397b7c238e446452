#!/usr/bin/env python
"""Train a segmentation, detection or classification model from a config.

    python tools/train.py configs/upernet_swin_ade20k.py [--work-dir DIR] [--resume] [--amp]
    tools/dist_train.sh configs/upernet_swin-b_ade20k.py 8 --strategy fsdp

The toolbox (mmseg, mmdet, mmpretrain) is chosen by the config's default_scope.
--strategy fsdp shards the model per backbone block with mmengine's FSDPStrategy
(densekit/fsdp.py); a config's own `strategy` dict is merged into it.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import densekit  # noqa: E402,F401  (registries, weights-only resume)
from densekit.cli import add_common_args, parse, user_errors, work_dir_for  # noqa: E402
from densekit.config import load_config, task_of  # noqa: E402
from densekit.distributed import prepare_cpu_distributed  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CHECKPOINT',
                        help='resume from CHECKPOINT, or from the last checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (CUDA)')
    parser.add_argument('--strategy', choices=['ddp', 'fsdp'], default='ddp',
                        help='data parallel (default) or fully sharded data parallel, with --launcher')
    args = parse(parser, argv)
    with user_errors('train'):
        cfg = load_config(args.config, args.cfg_options)
        task_of(cfg)  # fail early on a config without a toolbox scope
        cfg.launcher = args.launcher
        if args.strategy == 'fsdp' and args.launcher == 'none':
            raise ValueError('--strategy fsdp shards the model over processes: start it with a launcher '
                             '(tools/dist_train.sh CONFIG N --strategy fsdp, or --launcher pytorch/slurm/mpi)')
        prepare_cpu_distributed(cfg, args.launcher)
        # a BatchNorm that gets one value per channel stops with its name, not torch's bare error
        cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type='densekit.BatchNormInputHook')]
        cfg.work_dir = args.work_dir or cfg.get('work_dir') or work_dir_for(args.config)
        if args.amp:
            import torch
            if not torch.cuda.is_available():
                raise ValueError('--amp needs a CUDA device (mmengine\'s AmpOptimWrapper); '
                                 'none is available here')
            if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
                cfg.optim_wrapper.type = 'AmpOptimWrapper'
                cfg.optim_wrapper.loss_scale = 'dynamic'
        if args.resume == 'auto':
            cfg.resume = True
        elif args.resume:
            cfg.resume, cfg.load_from = True, args.resume

        if args.strategy == 'fsdp':
            from mmengine.runner import FlexibleRunner

            from densekit.fsdp import fsdp_strategy
            cfg.strategy = fsdp_strategy(cfg.get('strategy'))
            cfg.pop('model_wrapper_cfg', None)  # the strategy wraps the model
            runner = FlexibleRunner.from_cfg(cfg)
        else:
            from mmengine.runner import Runner
            runner = Runner.from_cfg(cfg)
        runner.train()


if __name__ == '__main__':
    main()
