"""Config loading for the tools: mmengine's Config, with the mistakes users
actually make turned into errors that name the key at fault."""
from __future__ import annotations

import difflib
import os.path as osp
from typing import Any

from mmengine.config import Config, ConfigDict

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')


# Top-level keys that mmengine's Runner / FlexibleRunner and the toolboxes read
# with a default (cfg.get), so a config need not set them: accepted on the
# command line although absent. Runner's own arguments are added from its signature.
RUNNER_KEYS = {'model_wrapper_cfg', 'find_unused_parameters', 'sync_bn', 'compile', 'strategy',
               'auto_scale_lr', 'custom_hooks', 'custom_imports', 'default_scope', 'env_cfg', 'log_level',
               'log_processor', 'visualizer', 'randomness', 'resume', 'load_from', 'launcher',
               'work_dir', 'experiment_name', 'param_scheduler', 'cfg', 'data_preprocessor',
               'default_hooks', 'train_cfg', 'val_cfg', 'test_cfg', 'train_dataloader', 'val_dataloader',
               'test_dataloader', 'val_evaluator', 'test_evaluator', 'optim_wrapper', 'tta_model',
               'tta_pipeline', 'dist_params'}


def runner_keys() -> set[str]:
    """:data:`RUNNER_KEYS` and every argument of ``Runner.__init__``."""
    import inspect

    from mmengine.runner import Runner
    return RUNNER_KEYS | set(inspect.signature(Runner.__init__).parameters) - {'self'}


class ConfigKeyError(KeyError):
    """A ``--cfg-options`` key that does not exist in the config."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def _lookup(cfg: Any, parts: list[str]) -> tuple[Any, str | None]:
    """Walk ``parts`` into ``cfg``; returns (node, first missing part or None)."""
    node = cfg
    for part in parts:
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return node, part
    return node, None


def check_options(cfg: Config, options: dict) -> None:
    """Refuse ``--cfg-options`` keys that would silently add a new entry.

    mmengine merges an unknown key as a new one, so ``model.backbone.drop_path=0.2``
    (for ``drop_path_rate``) trains with the old value and no warning. A key is
    accepted when its parent exists and either the key exists or nothing in the
    parent looks like it (then it is a deliberate new entry, e.g. an init_cfg).
    """
    root = cfg._cfg_dict if isinstance(cfg, Config) else cfg
    known = runner_keys()
    for key in options:
        parts = key.split('.')
        if parts[0] not in root:
            if parts[0] in known:
                continue  # read by the runner with a default: a deliberate new entry
            close = difflib.get_close_matches(parts[0], sorted(set(root) | known), n=3, cutoff=0.75)
            if close:
                raise ConfigKeyError(_unknown(key, parts[0], '', sorted(set(root) | known), close))
        parent, missing = _lookup(root, parts[:-1])
        where = '.'.join(parts[:parts.index(missing)]) if missing else '.'.join(parts[:-1])
        if missing is not None:
            choices = list(parent) if isinstance(parent, dict) else []
            raise ConfigKeyError(_unknown(key, missing, where, choices))
        last = parts[-1]
        if isinstance(parent, dict) and last not in parent:
            close = difflib.get_close_matches(last, list(parent), n=3, cutoff=0.75)
            if close:
                raise ConfigKeyError(_unknown(key, last, where, list(parent), close))


def _unknown(key: str, part: str, where: str, choices: list, close: list | None = None) -> str:
    close = close if close is not None else difflib.get_close_matches(part, choices, n=3, cutoff=0.6)
    hint = f' Did you mean {" or ".join(repr(c) for c in close)}?' if close else ''
    scope = f"'{where}'" if where else 'the config'
    return f"--cfg-options {key}: {scope} has no key '{part}'.{hint}"


def load_config(path: str, options: dict | None = None) -> Config:
    """Read ``path`` and merge ``options`` (from ``--cfg-options``).

    Overriding the top-level ``data_root`` also moves every dataloader that
    used it (mmengine resolves such variables when the file is read).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if options:
        check_options(cfg, options)
        old_root = cfg.get('data_root')
        cfg.merge_from_dict(options)
        _no_persistent_workers_without_workers(cfg)
        new_root = cfg.get('data_root')
        if 'data_root' in options and old_root is not None and new_root != old_root:
            for name in DATALOADERS:
                dataset = cfg.get(name, {}).get('dataset', {}) if cfg.get(name) else {}
                if dataset.get('data_root') == old_root:
                    dataset['data_root'] = new_root
            # COCO's evaluators read their own copy of the annotation path
            for name in EVALUATORS:
                for evaluator in _as_list(cfg.get(name)):
                    ann_file = evaluator.get('ann_file') if isinstance(evaluator, dict) else None
                    if isinstance(ann_file, str) and ann_file.startswith(old_root):
                        evaluator['ann_file'] = osp.join(new_root, ann_file[len(old_root):].lstrip('/'))
    return cfg


def _no_persistent_workers_without_workers(cfg: Config) -> None:
    # torch's DataLoader refuses persistent_workers=True with num_workers=0;
    # a base that sets it should not stop num_workers=0 (debugging, small machines)
    for name in DATALOADERS:
        loader = cfg.get(name)
        if isinstance(loader, dict) and loader.get('num_workers', 1) == 0 and loader.get('persistent_workers'):
            loader['persistent_workers'] = False


def _as_list(value) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def task_of(cfg: Config) -> str:
    """'segmentation' | 'detection' | 'classification', from the config's scope."""
    scope = cfg.get('default_scope')
    tasks = {'mmseg': 'segmentation', 'mmdet': 'detection', 'mmpretrain': 'classification'}
    if scope not in tasks:
        raise ValueError(f"default_scope must be one of {sorted(tasks)}, got {scope!r}: "
                         'inherit a dataset base from configs/_base_/datasets/')
    return tasks[scope]


def enable_visualization(cfg: Config, show_dir: str | None, show: bool = False,
                         wait_time: float = 2.) -> None:
    """Turn on each toolbox's visualization hook for ``tools/test.py``."""
    hook = cfg.default_hooks.get('visualization') if cfg.get('default_hooks') else None
    if hook is None:
        raise KeyError('--show/--show-dir need default_hooks.visualization in the config')
    task = task_of(cfg)
    if task == 'classification':
        hook.update(enable=True, out_dir=show_dir, show=show, wait_time=wait_time)
        return
    hook.update(draw=True, interval=1, show=show, wait_time=wait_time)
    if show_dir and task == 'detection':
        hook['test_out_dir'] = show_dir
    elif show_dir:
        cfg.visualizer['save_dir'] = show_dir


def as_dict(cfg: ConfigDict | dict) -> dict:
    return cfg.to_dict() if isinstance(cfg, ConfigDict) else dict(cfg)
