"""Shared pieces of the command-line tools (tools/*.py stay thin)."""
from __future__ import annotations

import argparse
import io
import logging
import os
import os.path as osp
import pickle
import re
import sys
from contextlib import contextmanager

from mmengine.config import DictAction
from mmengine.runner import FlexibleRunner, Runner

from .config import check_num_classes
from .datasets import DatasetError
from .wiring import check_widths_set, check_wiring

# Errors whose message already says what is wrong and where: the tools print
# them on one line instead of a traceback (DENSEKIT_DEBUG=1 shows it anyway).
# FloatingPointError: NonFiniteLossHook's stop, which names the iteration and terms.
USER_ERRORS = (FileNotFoundError, FileExistsError, KeyError, ValueError, TypeError,
               DatasetError, pickle.UnpicklingError, FloatingPointError)

# The INFO lines the console keeps: mmengine LoggerHook's progress and metric
# lines, and checkpoint saves/loads. The rest (environment, config, hook
# tables, paramwise_options, per-class tables) goes to the log file only.
CONSOLE_INFO = re.compile(r'(Epoch|Iter)\((train|val|test)\)|Saving checkpoint|Load(ed)? checkpoint|'
                          r'(Auto )?[Rr]esumed? |NonFiniteLossHook|DenseKit')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('config', help='config file, e.g. configs/upernet_swin_ade20k.py')
    parser.add_argument('--work-dir', help='where logs, checkpoints and outputs go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. train_dataloader.batch_size=4; '
                        'unknown keys are refused with a suggestion')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher for distributed runs (tools/dist_train.sh uses pytorch)')
    parser.add_argument('--verbose', action='store_true',
                        help='also print the environment, config and hook dumps on the console '
                        '(they always go to the log file in the work dir)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def work_dir_for(config: str) -> str:
    return os.path.join('work_dirs', os.path.splitext(os.path.basename(config))[0])


@contextmanager
def user_errors(tool: str, cfg_options: dict | None = None, verbose: bool = False):
    """Print known user errors as one clear line and exit 1.

    An error raised while the toolbox builds a module from the config names the
    ``cfg_options`` (``--cfg-options``) that set that module's arguments
    (:func:`overrides_in_build`). The traceback goes to the run's log file when
    there is one, and to the console with ``verbose`` (or DENSEKIT_DEBUG=1,
    which re-raises)."""
    from mmengine.logging import MMLogger
    earlier_logs = set(MMLogger._instance_dict)  # an earlier run's log (same process) is not this one's
    try:
        yield
    except USER_ERRORS as err:
        if os.environ.get('DENSEKIT_DEBUG') == '1':
            raise
        import traceback
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        msg = worker_error_message(err, str(msg))
        culprits = overrides_in_build(err, cfg_options)
        if any(c.split('=')[0] in str(msg) for c in culprits[1:]):
            culprits = []  # the message names the key already
        if culprits:
            msg = (f'{msg} (raised building {culprits[0]}, where you set --cfg-options '
                   f'{" ".join(culprits[1:])}: check that value)')
        trace = ''.join(traceback.format_exception(err))
        if verbose:
            print(trace, end='', file=sys.stderr)
        log_file = _log_traceback(trace, earlier_logs) if tool in ('train', 'test') else None  # only those have a run's log
        print(f'{tool}: error: {type(err).__name__}: {msg}', file=sys.stderr)
        if not verbose:
            where = f'in {log_file}' if log_file else 'with --verbose' if _has_verbose(tool) else \
                'with DENSEKIT_DEBUG=1'
            print(f'{tool}: (the traceback: {where})', file=sys.stderr)
        sys.exit(1)


def worker_error_message(err: BaseException, msg: str) -> str:
    """The original message of an error that torch re-raised from a
    DataLoader worker (``ExceptionWrapper.reraise``: "Caught DatasetError in
    DataLoader worker process 0." and the worker's traceback, whose last lines
    are "<module>.DatasetError: <message>"); other messages as they are."""
    head = f'Caught {type(err).__name__} '
    if not msg.startswith(head) or '\nOriginal Traceback (most recent call last):\n' not in msg:
        return msg
    lines = msg.rstrip('\n').split('\n')
    last = re.compile(rf'(?:[\w.]+\.)?{re.escape(type(err).__name__)}: ')  # the re-raised type, qualified
    for i in range(len(lines) - 1, 0, -1):
        if last.match(lines[i]):
            return '\n'.join([last.sub('', lines[i], count=1), *lines[i + 1:]])
    return msg


def _has_verbose(tool: str) -> bool:
    return tool in ('train', 'test', 'infer', 'export', 'flops_params', 'convert_checkpoint')


def _log_traceback(trace: str, earlier: set[str] = frozenset()) -> str | None:
    """Write ``trace`` to the current mmengine log file, if a Runner of this
    run made one (not one of the ``earlier`` logger instances); returns its path."""
    from mmengine.logging import MMLogger
    current = MMLogger.get_current_instance().instance_name
    if not MMLogger.check_instance_created(current) or current in earlier:
        return None
    for handler in MMLogger.get_current_instance().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.stream.write(trace)
            handler.flush()
            return handler.baseFilename
    return None


def overrides_in_build(err: BaseException, cfg_options: dict | None) -> list[str]:
    """[module type, 'key=value', ...]: the ``--cfg-options`` whose values the
    innermost module being built when ``err`` was raised received (mmengine's
    ``build_from_cfg`` frames hold the config dict they build); [] if none.
    E.g. ``model.backbone.out_indices=5`` for SwinTransformer's
    "'int' object is not iterable"."""
    if not cfg_options:
        return []
    builds = []
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == 'build_from_cfg':
            built = tb.tb_frame.f_locals.get('cfg')
            if isinstance(built, dict) and 'type' in built:
                builds.append(built)
        tb = tb.tb_next
    if type(err).__name__ == 'DatasetError' or isinstance(err, FileNotFoundError):
        return []  # these name the file or folder at fault themselves
    for built in builds[-1:]:  # the innermost: a dataset failing inside a loop's build is not the loop's fault
        found = [f'{key}={value}' for key, value in cfg_options.items() if _holds(built, key.split('.'), value)]
        if found:
            kind = built['type'] if isinstance(built['type'], str) else getattr(built['type'], '__name__', '?')
            return [kind.split('.')[-1], *found]
    return []


def _holds(built: dict, parts: list[str], value) -> bool:
    """Whether ``built`` (a module's config) has ``value`` at a tail of the key ``parts``."""
    for start in range(1, len(parts)):
        node = built
        for part in parts[start:]:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                break
        else:
            if node == value or (isinstance(node, (list, tuple)) and isinstance(value, (list, tuple))
                                 and list(node) == list(value)):
                return True
    return False


# Warnings and prints about the libraries' own internals that a user cannot act
# on (mmengine's FileClient deprecation and its "Loads checkpoint by local
# backend" print, mmseg's build_loss/loss defaults, its visualization hook
# switched off in training, metric prefixes, torch.jit's tracer notes while
# exporting, mmdet's COCO-classes default before our classes are set, a label
# (text, box, polygon) drawn past the image border, numpy 2's __array_wrap__ notice, mmengine's
# optimizer constructor skipping a frozen parameter such as MAE's fixed pos_embed): log file only,
# or nowhere for the tools without one (--verbose shows them).
LIBRARY_NOTICES = re.compile(r'.*(deprecat|is the alias of|avg_non_ignore|The draw is False|'
                             r'The prefix is not set in metric|TracerWarning|use COCO classes|'
                             r'is out of bounds, the drawn|__array_wrap__|Loads checkpoint by|'
                             r'is skipped since its requires_grad=False)',
                             re.IGNORECASE | re.DOTALL)


# mmengine's metrics line at the end of a test run (progress lines carry an eta):
# tools/test.py prints the metrics itself, one per line.
TEST_METRICS_LINE = re.compile(r'(Epoch|Iter)\(test\) +\[ *(\d+)/\2\] +(?=\S)(?!eta)')


class ConsoleFilter(logging.Filter):
    """Keeps errors, warnings (less :data:`LIBRARY_NOTICES`) and the
    :data:`CONSOLE_INFO` lines on the console; with ``testing``, not the
    test run's metrics line (:data:`TEST_METRICS_LINE`), which the tool prints."""

    def __init__(self, testing: bool = False) -> None:
        super().__init__()
        self.testing = testing

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return record.levelno >= logging.ERROR or not LIBRARY_NOTICES.match(message)
        if self.testing and TEST_METRICS_LINE.match(message):
            return False
        return bool(CONSOLE_INFO.match(message))


def format_metric(value) -> str:
    """A metric for the console: 4 significant digits, no exponent for the
    usual ranges (mIoU 90.71, COCO mAP 0.6, 0.0004), as the metric gives it
    (mmdet's CocoMetric rounds to 3 decimals, mmseg's IoUMetric to 2)."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f'{value:.4g}' if value == 0 or 1e-4 <= abs(value) < 1e5 else f'{value:.3e}'


def route_warnings(logger: logging.Logger) -> None:
    """Python warnings (``warnings.warn``) go through ``logger`` as WARNING
    records, so the console filter and the log file apply to them too."""
    import warnings

    def showwarning(message, category, filename, lineno, file=None, line=None):
        logger.warning(f'{category.__name__}: {message} ({filename}:{lineno})')

    warnings.showwarning = showwarning


def console_warning(line: str) -> None:
    """Print ``line`` on stderr above any running tqdm progress bar (a bare
    print would land in the middle of the bar's line)."""
    from tqdm import tqdm
    tqdm.write(line, file=sys.stderr)


@contextmanager
def quiet_libraries(tool: str, verbose: bool = False):
    """The console of a tool that runs without mmengine's Runner (infer, export,
    flops_params, convert_checkpoint): Python warnings print as one line
    ``<tool>: warning: ...`` above any progress bar, except
    :data:`LIBRARY_NOTICES`; lines the libraries print on stdout that are
    library notices are dropped, and mmengine's logger keeps its console to
    warnings that matter and the :data:`CONSOLE_INFO` lines. ``verbose``: the
    notices are shown too."""
    import warnings

    from mmengine.logging import MMLogger

    def showwarning(message, category, filename, lineno, file=None, line=None):
        text = f'{category.__name__}: {message}'
        if verbose or not LIBRARY_NOTICES.match(text):
            console_warning(f'{tool}: warning: {message}' + (f' ({filename}:{lineno})' if verbose else ''))

    logger = MMLogger.get_current_instance()
    added = []
    if not verbose:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                added.append((handler, ConsoleFilter()))
                handler.addFilter(added[-1][1])
    saved = sys.stdout
    with warnings.catch_warnings():
        warnings.showwarning = showwarning
        if not verbose:
            sys.stdout = _DropNotices(saved)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stdout = saved
            for handler, f in added:
                handler.removeFilter(f)


class _DropNotices(io.TextIOBase):
    """A stdout that passes every complete line but :data:`LIBRARY_NOTICES`."""

    def __init__(self, stream) -> None:
        self._stream, self._pending = stream, ''

    def write(self, text: str) -> int:
        lines = (self._pending + text).split('\n')
        self._pending = lines.pop()
        for line in lines:
            if not LIBRARY_NOTICES.match(line):
                self._stream.write(line + '\n')
        return len(text)

    def flush(self) -> None:
        if self._pending and not LIBRARY_NOTICES.match(self._pending):
            self._stream.write(self._pending)
        self._pending = ''
        self._stream.flush()


class _QuietConsole:
    """A Runner whose console handler passes :class:`ConsoleFilter` only; the
    log file (``<work_dir>/<timestamp>/<timestamp>.log``) keeps everything."""

    verbose = False
    testing = False  # a test run: its config dump goes to its timestamped log dir

    def build_logger(self, log_level='INFO', log_file=None, **kwargs):
        logger = super().build_logger(log_level, log_file, **kwargs)
        if not self.verbose:
            route_warnings(logger)  # before the model is built: the toolboxes warn while building
            for handler in logger.handlers:
                # the console handler is a plain StreamHandler (FileHandler subclasses it)
                if type(handler) is logging.StreamHandler:
                    handler.filters = [f for f in handler.filters if not isinstance(f, ConsoleFilter)]
                    handler.addFilter(ConsoleFilter(self.testing))
        return logger

    def dump_config(self) -> None:
        """Training's dump stays ``<work_dir>/<config name>``; a test run's goes
        to ``<work_dir>/<timestamp>/`` beside its log, so it never overwrites it."""
        if not self.testing:
            return super().dump_config()
        name = osp.basename(self.cfg.filename) if self.cfg.filename else f'{self.timestamp}.py'
        self.cfg.dump(osp.join(self.log_dir, name))


class QuietRunner(_QuietConsole, Runner):
    pass


class QuietFlexibleRunner(_QuietConsole, FlexibleRunner):
    pass


def build_runner(cfg, flexible: bool = False, verbose: bool = False, testing: bool = False) -> Runner:
    """mmengine's Runner (or FlexibleRunner) from ``cfg``, with a quiet console
    (see :class:`ConsoleFilter`) unless ``verbose``, and the model's channel
    wiring checked (:func:`densekit.wiring.check_wiring`) before anything runs.
    ``testing`` (tools/test.py): the config dump goes to the run's timestamped
    folder, and the metrics line is left to the tool. Prints where the full log goes."""
    from mmengine.registry import init_default_scope
    cls = QuietFlexibleRunner if flexible else QuietRunner
    cls.verbose, cls.testing = verbose, testing
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    check_widths_set(cfg.model)
    check_num_classes(cfg)
    capped = cap_num_workers(cfg)
    runner = cls.from_cfg(cfg)
    if capped:
        runner.logger.info(capped)  # the log file only: nothing for the user to do
    check_wiring(runner.model)  # FlexibleRunner builds its model later: then nothing to check
    if runner.rank == 0:
        print(f'DenseKit: full log in {osp.join(runner.log_dir, runner.timestamp + ".log")}', flush=True)
    return runner


def usable_cores() -> int:
    """The CPU cores this process may run on (what torch's DataLoader compares
    ``num_workers`` with before warning)."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def cap_num_workers(cfg) -> str | None:
    """Lower each dataloader's ``num_workers`` to :func:`usable_cores`, in place
    (torch's DataLoader warns about more workers than cores, once per loader,
    and they only compete for the same cores). Returns a one-line note when it
    changed any, else None."""
    cores = usable_cores()
    changed = []
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        workers = loader.get('num_workers') if isinstance(loader, dict) else None
        if isinstance(workers, int) and workers > cores:
            changed.append(f'{name}.num_workers={workers}')
            loader['num_workers'] = cores
    if not changed:
        return None
    return (f'num_workers lowered to {cores}, the CPU cores this process may use '
            f'({", ".join(changed)} in the config)')


@contextmanager
def stdout_to_log(runner, verbose: bool = False):
    """Inside, what the libraries print on stdout (pycocotools' "loading
    annotations into memory... Done", "creating index...", its 12-line
    summary tables) goes to the log file, off the console. The progress and
    metric lines still reach the console: mmengine's logger writes to the
    stream it was built with, not to the redirected ``sys.stdout``."""
    if verbose:
        yield
        return
    saved, sys.stdout = sys.stdout, LoggerStream(runner.logger)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = saved


class LoggerStream(io.TextIOBase):
    """A text stream that logs each complete line at INFO (off the console
    under :class:`ConsoleFilter`, in the log file)."""

    def __init__(self, logger) -> None:
        self._logger, self._pending = logger, ''

    def write(self, text: str) -> int:
        lines = (self._pending + text).split('\n')
        self._pending = lines.pop()
        for line in lines:
            if line.strip():
                self._logger.info(line)
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self._logger.info(self._pending)
        self._pending = ''
