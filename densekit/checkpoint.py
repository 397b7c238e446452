"""Checkpoint loading that never runs code from the file.

torch >= 2.6 unpickles with ``weights_only=True``: only tensors, containers and
allow-listed types. mmengine 0.10.7 writes training state that this refuses
(``HistoryBuffer``, numpy arrays, dtypes and scalars in the message hub), so
``--resume`` fails on its own checkpoints. Rather than turning the safety off,
:func:`allow_mmengine_checkpoints` allow-lists exactly those types.

mmengine also writes checkpoints and ``last_checkpoint`` in place, so a crash
during the write leaves a truncated file that ``--resume`` then picks;
:func:`make_checkpoint_saves_atomic` writes both to a temporary file and renames.
"""
from __future__ import annotations

import glob
import os
import pickle
import re
import tempfile
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from mmengine.runner.checkpoint import save_checkpoint as _mmengine_save_checkpoint  # before any rebinding
from torch import nn


def _numpy_safe_globals() -> list:
    # numpy arrays pickle through _reconstruct + ndarray + a dtype object whose
    # class is numpy.dtypes.<Kind>DType; scalars through multiarray.scalar.
    from numpy._core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
        np.uint32, np.uint64, np.float16, np.float32, np.float64, np.str_)]
    # numpy 1.x pickled the same two functions from numpy.core.multiarray
    numpy1 = [(_reconstruct, 'numpy.core.multiarray._reconstruct'), (scalar, 'numpy.core.multiarray.scalar')]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes, *numpy1]


def _training_state_globals() -> list:
    """The non-tensor types of mmengine's training checkpoints."""
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer, *_numpy_safe_globals()]


def _rebuild_history_buffer(buffer):
    # By default a HistoryBuffer pickles its statistics methods as
    # getattr(HistoryBuffer, 'mean'): allowing builtins.getattr would open the
    # weights-only unpickler far wider than these types. Pickled as a
    # constructor call on its arrays, it needs only the class itself.
    return type(buffer), (buffer._log_history, buffer._count_history, buffer.max_length)


def allow_mmengine_checkpoints() -> None:
    """Make mmengine's training checkpoints load with ``weights_only=True``.

    Allow-lists exactly the non-tensor types they hold (``HistoryBuffer``,
    numpy arrays, dtypes and scalars), pickles ``HistoryBuffer`` so that it
    needs nothing more, and routes mmengine's local checkpoint loading
    (``--resume``, ``load_from``) through :func:`load_file`.
    """
    import copyreg

    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader
    torch.serialization.add_safe_globals(_training_state_globals())  # also for plain torch.load
    copyreg.pickle(HistoryBuffer, _rebuild_history_buffer)
    CheckpointLoader.register_scheme(prefixes='', loader=lambda f, map_location=None: load_file(f, map_location), force=True)
    make_checkpoint_saves_atomic()


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = 'wb'):
    """Open a temporary file next to ``path``; on success fsync it and rename
    it over ``path`` (atomic on POSIX), so ``path`` is always either the old
    file or the complete new one. On error the temporary file is removed; a
    process killed mid-write cannot do that, so its leftover for the same
    ``path`` is removed by the next successful write of ``path`` (a resumed
    run re-saves the checkpoint it died writing)."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.basename(path) + '.'
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix='.tmp')
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for leftover in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + '*.tmp')):
            with suppress(FileNotFoundError):
                os.remove(leftover)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint_atomic(checkpoint: dict, filename: str, file_client_args=None,
                           backend_args=None) -> None:
    """mmengine's ``save_checkpoint``, atomic for local paths (other backends,
    e.g. ``s3://``, go to mmengine's own writer unchanged)."""
    if '://' in str(filename) or file_client_args or backend_args:
        _mmengine_save_checkpoint(checkpoint, filename, file_client_args, backend_args)
        return
    with atomic_write(filename) as f:
        torch.save(checkpoint, f)


def _open_last_checkpoint(file, mode='r', *args, **kwargs):
    # CheckpointHook writes work_dir/last_checkpoint with a bare open(file, 'w'),
    # which truncates first: this open() serves that module only.
    if mode == 'w':
        return atomic_write(file, 'w')
    return open(file, mode, *args, **kwargs)


def make_checkpoint_saves_atomic() -> None:
    """Route mmengine's checkpoint writes through :func:`atomic_write`.

    ``Runner.save_checkpoint`` (every CheckpointHook save, best checkpoints
    included) calls the ``save_checkpoint`` name bound in ``mmengine.runner.runner``;
    ``FlexibleRunner``'s strategies (FSDP) import it from
    ``mmengine.runner.checkpoint`` when they save; ``CheckpointHook`` then
    writes ``last_checkpoint`` with ``open``. These names are rebound in their
    modules; the checkpoint is complete on disk before ``last_checkpoint``
    names it.
    """
    from mmengine.hooks import checkpoint_hook
    from mmengine.runner import checkpoint, runner
    runner.save_checkpoint = checkpoint.save_checkpoint = save_checkpoint_atomic
    checkpoint_hook.open = _open_last_checkpoint


TRUST_ENV = 'DENSEKIT_TRUST_CHECKPOINTS'


def load_file(path: str | os.PathLike, map_location='cpu') -> dict:
    """Load a ``.pth``/``.pt`` (weights-only unpickling; mmengine's training
    state allow-listed) or ``.safetensors`` file.

    A pickle that needs arbitrary code is refused with the type it asks for;
    set ``DENSEKIT_TRUST_CHECKPOINTS=1`` to load such a file you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file as load_safetensors
        return load_safetensors(str(path), device='cpu')
    trusted = os.environ.get(TRUST_ENV) == '1'
    try:
        # mmengine's training state loads whether or not densekit.runtime switched the global list on;
        # only what is missing is added (torch's context removes its globals on exit, even listed ones)
        missing = [g for g in _training_state_globals() if g not in torch.serialization.get_safe_globals()]
        with torch.serialization.safe_globals(missing):
            obj = torch.load(path, map_location=map_location, weights_only=not trusted)
        # a pickled whole model (torch.save(model, f)), loadable only when trusted
        return obj.state_dict() if isinstance(obj, nn.Module) else obj
    except pickle.UnpicklingError as err:
        found = re.search(r'Unsupported global: GLOBAL (\S+)|Trying to call reduce for unrecognized function \S+',
                          str(err))
        what = found[1] or found[0] if found else str(err).splitlines()[0]
        raise pickle.UnpicklingError(
            f'{path}: refused to unpickle {what}: the file holds objects beyond tensors '
            f'and the types DenseKit allow-lists, and loading it would run code from it. '
            f'If you trust its origin, set {TRUST_ENV}=1.') from err
    except (RuntimeError, EOFError, ValueError) as err:  # truncated or not a checkpoint
        raise RuntimeError(f'{path}: not a readable checkpoint ({err})') from err


def extract_state_dict(obj: dict, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The weights inside a release file: unwraps ``state_dict``/``model``,
    strips DDP's ``module.``, and keeps only ``prefix`` keys (prefix removed)
    when given, e.g. ``'backbone.'`` for a whole mmseg/mmdet model."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for wrapper in ('state_dict', 'model'):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), nn.Module):
            obj = obj[wrapper].state_dict()
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    state = {k.removeprefix('module.'): v for k, v in obj.items() if torch.is_tensor(v)}
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def _first(keys: list[str], n: int = 3) -> str:
    return ', '.join(keys[:n]) + (f', ... (+{len(keys) - n})' if len(keys) > n else '')


def _numbered(key: str):
    """(container, block) for each numbered part of ``key``:
    'stages.0.blocks.5.w' -> ('stages', 'stages.0'), ('stages.0.blocks', 'stages.0.blocks.5')."""
    parts = key.split('.')
    return [('.'.join(parts[:i]), '.'.join(parts[:i + 1])) for i, p in enumerate(parts) if p.isdigit()]


def _extra_blocks(keys: list[str], other: set[str]) -> bool:
    """Whether every key lies in a numbered block that ``other`` lacks, inside
    a container that ``other`` has (``blocks.5.`` beside ``blocks.0.``)."""
    containers, blocks = set(), set()
    for key in other:
        for container, block in _numbered(key):
            containers.add(container)
            blocks.add(block)
    return all(any(c in containers and b not in blocks for c, b in _numbered(k)) for k in keys)


def likely_cause(own: list[str], found: list[str], shapes: list[str]) -> str:
    """One sentence guessing why a state dict with keys ``found`` does not fit
    a model with keys ``own`` (``shapes``: keys in both whose shapes differ)."""
    own_set, found_set = set(own), set(found)
    for key in found:  # a whole model's backbone: its keys under a prefix
        head, _, rest = key.partition('.')
        if rest in own_set and head not in own_set:
            n = sum(k.startswith(head + '.') and k[len(head) + 1:] in own_set for k in found)
            if n >= len(own_set & found_set) and n > len(own) // 2:
                return (f"the checkpoint holds a whole model: the weights are under '{head}.' "
                        f"(e.g. prefix='{head}.' / --prefix {head}.)")
    for key in own:  # a bare backbone for a whole model
        head, _, rest = key.partition('.')
        if rest in found_set and key not in found_set:
            n = sum(k.startswith(head + '.') and k[len(head) + 1:] in found_set for k in own)
            if n > len(found) // 2:
                return (f"the checkpoint holds only the '{head}' part: start training from it with "
                        f"model.{head}.init_cfg=dict(type='Pretrained', checkpoint=PATH)")
    parts = {k.partition('.')[0] for k in found_set}
    if len(parts) == 1 and found_set < own_set and not shapes:  # a part, already placed under its prefix
        head = parts.pop()
        if all(k in found_set for k in own if k.startswith(head + '.')):
            return (f"the checkpoint holds only the '{head}' part: start training from it with "
                    f"model.{head}.init_cfg=dict(type='Pretrained', checkpoint=PATH)")
    if shapes:
        return 'a checkpoint of another variant or config (the widths of shared layers differ)'

    extra, lack = sorted(found_set - own_set), sorted(own_set - found_set)
    if extra and not lack and _extra_blocks(extra, own_set):
        return 'a checkpoint of a deeper variant (more blocks or stages than the model)'
    if lack and not extra and _extra_blocks(lack, found_set):
        return 'a checkpoint of a shallower variant (fewer blocks or stages than the model)'
    if not own_set & found_set:
        return 'a checkpoint of another model or layout (no key in common)'
    return 'a checkpoint of another config or model'


def describe_misfit(source: str, target: str, missing: list[str], unexpected: list[str],
                    shapes: list[str], own: list[str], found: list[str]) -> str | None:
    """'``source`` does not fit ``target``: counts, the first keys of each kind
    and the likely cause', or None when nothing is wrong."""
    kinds = [(f'{len(keys)} {name}', keys) for name, keys in (
        ('missing', missing), ('unexpected', unexpected), ('of another shape', shapes)) if keys]
    if not kinds:
        return None
    matched = len(set(own) & set(found)) - len(shapes)
    return (f'{source} does not fit {target}: {matched} of {len(own)} tensors match; '
            + '; '.join(f'{count} (e.g. {_first(keys)})' for count, keys in kinds)
            + f'. Likely cause: {likely_cause(own, found, shapes)}.')


def check_fits(model: nn.Module, state: dict, checkpoint: str, config: str) -> None:
    """Raise one ``ValueError`` (counts, first keys, likely cause) unless
    ``state`` fits ``model`` exactly; nothing is loaded."""
    own = model.state_dict()
    shapes = sorted(f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                    for k in set(own) & set(state) if state[k].shape != own[k].shape)
    message = describe_misfit(checkpoint, f'the model of {config}', sorted(set(own) - set(state)),
                              sorted(set(state) - set(own)), shapes, list(own), list(state))
    if message:
        raise ValueError(message)


@dataclass
class LoadReport:
    """What a pretrained load matched, and what it could not place."""
    path: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)  # not in a release by design: left at init

    def __str__(self) -> str:
        lines = [f'loaded {self.loaded} tensors from {self.path}']
        for name, keys in (('missing in checkpoint', self.missing),
                           ('unexpected in checkpoint', self.unexpected),
                           ('not in a classifier release, left at init (expected)', self.expected),
                           ('ignored (not part of the backbone, or not built for its out_indices)',
                            self.ignored)):
            if keys:
                shown = ', '.join(keys[:20]) + (f' ... (+{len(keys) - 20})' if len(keys) > 20 else '')
                lines.append(f'{name} ({len(keys)}): {shown}')
        return '\n'.join(lines)


def load_pretrained(model: nn.Module, path: str | os.PathLike,
                    convert: Callable[[dict, nn.Module], dict],
                    prefix: str | None = None, strict: bool = False) -> LoadReport:
    """Load the checkpoint file ``path`` into ``model``; see :func:`load_state`."""
    state = extract_state_dict(load_file(path), prefix)
    if not state:
        raise ValueError(f'{path}: no weights found' + (f" under prefix '{prefix}'" if prefix else ''))
    return load_state(model, state, convert, str(path), strict)


def load_state(model: nn.Module, state: dict, convert: Callable[[dict, nn.Module], dict],
               source: str = 'state dict', strict: bool = False) -> LoadReport:
    """Load ``state`` into ``model`` after ``convert`` maps it to the model's layout.

    ``convert(state_dict, model)`` returns the converted dict, with ``None``
    for keys that are deliberately not used (e.g. a classifier). Keys of
    modules the model removed as unused (``model.pruned_modules``) are
    ignored; model keys under ``model.release_lacks()`` that the checkpoint
    lacks are reported as expected. Keys whose shapes cannot fit raise a
    ``ValueError`` naming ``source``, the counts, the first keys and the
    likely cause, before anything is loaded; so do missing or unexpected
    keys with ``strict``.
    """
    converted = convert(state, model)
    pruned = tuple(f'{name}.' for name in getattr(model, 'pruned_modules', ()))
    ignored = sorted(k for k, v in converted.items() if v is None or (pruned and k.startswith(pruned)))
    converted = {k: v for k, v in converted.items() if v is not None and not (pruned and k.startswith(pruned))}
    own = model.state_dict()
    bad = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
           for k, v in converted.items() if k in own and v.shape != own[k].shape]
    if bad:
        raise ValueError(describe_misfit(source, type(model).__name__, [], [], bad, list(own), list(converted)))
    result = model.load_state_dict(converted, strict=False)
    lacks = tuple(model.release_lacks()) if hasattr(model, 'release_lacks') else ()
    expected = [k for k in result.missing_keys if lacks and k.startswith(lacks)]
    missing = [k for k in result.missing_keys if k not in expected]
    report = LoadReport(source, len(converted) - len(result.unexpected_keys),
                        missing, list(result.unexpected_keys), ignored, expected)
    if strict and (report.missing or report.unexpected):
        raise ValueError(describe_misfit(source, type(model).__name__, report.missing, report.unexpected, [],
                                         [k for k in own if k not in expected], list(converted)))
    return report
