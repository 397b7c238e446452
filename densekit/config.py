"""Config loading for the tools: mmengine's Config, with the mistakes users
actually make turned into errors that name the key at fault."""
from __future__ import annotations

import difflib
import os.path as osp
from typing import Any

from mmengine.config import Config, ConfigDict

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')


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
    for key in options:
        parts = key.split('.')
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


def enable_tta(cfg: Config, config: str) -> str:
    """Test with the config's ``tta_model`` and ``tta_pipeline`` (``tools/test.py --tta``):
    the model is wrapped in the TTA model (mmseg's ``SegTTAModel``, mmdet's
    ``DetTTAModel``) and the test dataset reads through the TTA pipeline, as
    mmseg's and mmdet's own ``tools/test.py --tta`` do.

    Returns a one-line summary (the TTA model, and the views per image).
    Raises KeyError naming ``config`` when it defines no test-time augmentation,
    ValueError for a model with a mask head (``DetTTAModel`` merges boxes only).
    """
    if cfg.model.get('roi_head', {}).get('mask_head') is not None:
        raise ValueError(f"{config}: --tta is for boxes only: mmdet's DetTTAModel does not merge "
                         'instance masks; test this config without --tta')
    tta_model, tta_pipeline = cfg.get('tta_model'), cfg.get('tta_pipeline')
    if not tta_model or not tta_pipeline:
        raise KeyError(f'{config}: --tta needs tta_model and tta_pipeline in the config; the ADE20K '
                       'and COCO detection bases in configs/_base_/datasets/ define them')
    tta_model = ConfigDict(tta_model)
    tta_model['module'] = cfg.model
    cfg.model = tta_model
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:  # wrappers (ConcatDataset, RepeatDataset) hold the real one
        dataset = dataset.dataset
    dataset.pipeline = tta_pipeline
    views = 1
    for step in tta_pipeline:
        if step.get('type') == 'TestTimeAug':
            for choices in step['transforms']:
                views *= len(choices)
    return f'test-time augmentation: {tta_model.type} over {views} views per image'
