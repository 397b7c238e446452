#!/usr/bin/env python
"""Train a segmentation, detection or classification model from a config.

    python tools/train.py configs/upernet_swin_ade20k.py [--work-dir DIR] [--resume] [--amp]
    tools/dist_train.sh configs/swin/upernet_swin-b_160k_ade20k.py 8 --strategy fsdp

The toolbox (mmseg, mmdet, mmpretrain) is chosen by the config's default_scope.
--strategy fsdp shards the model per backbone block with mmengine's FSDPStrategy
(densekit/fsdp.py); a config's own `strategy` dict is merged into it.
"""
import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse
import os

import densekit.runtime  # noqa: F401  (weights-only resume, atomic saves, zoo checkpoints)
from densekit.cli import add_common_args, build_runner, parse, stdout_to_log, user_errors, work_dir_for
from densekit.config import check_data, check_pretrained, fit_log_interval, load_config, task_of
from densekit.distributed import prepare_cpu_distributed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CHECKPOINT',
                        help='resume from CHECKPOINT, or from the last checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (CUDA)')
    parser.add_argument('--strategy', choices=['ddp', 'fsdp'], default='ddp',
                        help='data parallel (default) or fully sharded data parallel, with --launcher')
    args = parse(parser, argv)
    with user_errors('train', args.cfg_options, args.verbose):
        cfg = load_config(args.config, args.cfg_options)
        task_of(cfg)  # fail early on a config without a toolbox scope
        cfg.launcher = args.launcher
        if args.strategy == 'fsdp' and args.launcher == 'none':
            raise ValueError('--strategy fsdp shards the model over processes: start it with a launcher '
                             '(tools/dist_train.sh CONFIG N --strategy fsdp, or --launcher pytorch/slurm/mpi)')
        prepare_cpu_distributed(cfg, args.launcher)
        # a BatchNorm that gets one value per channel stops with its name, not torch's bare error
        # and the console shows that training runs before the logger's first interval
        cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type='densekit.BatchNormInputHook'),
                            dict(type='densekit.FirstIterationHook')]
        cfg.work_dir = args.work_dir or cfg.get('work_dir') or work_dir_for(args.config)
        if args.amp:
            import torch
            if not torch.cuda.is_available():
                raise ValueError('--amp needs a CUDA device (mmengine\'s AmpOptimWrapper); '
                                 'none is available here')
            if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
                cfg.optim_wrapper.type = 'AmpOptimWrapper'
                cfg.optim_wrapper.loss_scale = 'dynamic'
        has_last = os.path.isfile(os.path.join(cfg.work_dir, 'last_checkpoint'))  # what mmengine resumes from
        if args.resume == 'auto':
            if not has_last:
                raise FileNotFoundError(f'--resume: nothing to resume in {cfg.work_dir} (no last_checkpoint '
                                        'there); drop --resume to train from scratch, or name a checkpoint: '
                                        '--resume PATH')
            cfg.resume = True
        elif args.resume:
            if not os.path.isfile(args.resume):
                raise FileNotFoundError(f'--resume {args.resume}: no such checkpoint file')
            cfg.resume, cfg.load_from = True, args.resume
        elif cfg.get('resume') is True and not cfg.get('load_from'):
            if not has_last:  # mmengine would say "resumed from None" and train from scratch
                print(f'DenseKit: the config sets resume=True, but {cfg.work_dir} holds no checkpoint: '
                      'training from scratch')
                cfg.resume = False
        if not cfg.get('resume'):
            check_pretrained(cfg, args.cfg_options)
        # before the Runner creates the work dir
        check_data(cfg, ('train_dataloader', 'val_dataloader') if cfg.get('val_cfg') else ('train_dataloader',))
        note = fit_log_interval(cfg)
        if note:
            print(f'DenseKit: {note}')

        if args.strategy == 'fsdp':
            from densekit.fsdp import fsdp_strategy
            cfg.strategy = fsdp_strategy(cfg.get('strategy'))
            cfg.pop('model_wrapper_cfg', None)  # the strategy wraps the model
            runner = build_runner(cfg, flexible=True, verbose=args.verbose)
        else:
            runner = build_runner(cfg, verbose=args.verbose)
        with stdout_to_log(runner, args.verbose):
            runner.train()


if __name__ == '__main__':
    main()
