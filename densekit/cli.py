"""Shared pieces of the command-line tools (tools/*.py stay thin)."""
from __future__ import annotations

import argparse
import os
import pickle
import sys
from contextlib import contextmanager

from mmengine.config import DictAction

from .datasets import DatasetError

# Errors whose message already says what is wrong and where: the tools print
# them on one line instead of a traceback (DENSEKIT_DEBUG=1 shows it anyway).
USER_ERRORS = (FileNotFoundError, FileExistsError, KeyError, ValueError, TypeError,
               DatasetError, pickle.UnpicklingError)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('config', help='config file, e.g. configs/upernet_swin_ade20k.py')
    parser.add_argument('--work-dir', help='where logs, checkpoints and outputs go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. train_dataloader.batch_size=4; '
                        'unknown keys are refused with a suggestion')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher for distributed runs (tools/dist_train.sh uses pytorch)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def work_dir_for(config: str) -> str:
    return os.path.join('work_dirs', os.path.splitext(os.path.basename(config))[0])


@contextmanager
def user_errors(tool: str):
    """Print known user errors as one clear line and exit 1."""
    try:
        yield
    except USER_ERRORS as err:
        if os.environ.get('DENSEKIT_DEBUG') == '1':
            raise
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f'{tool}: error: {type(err).__name__}: {msg}', file=sys.stderr)
        print(f'{tool}: (set DENSEKIT_DEBUG=1 for the traceback)', file=sys.stderr)
        sys.exit(1)
