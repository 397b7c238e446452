"""Config loading for the tools: mmengine's Config, with the mistakes users
actually make turned into errors that name the key at fault."""
from __future__ import annotations

import difflib
import glob
import importlib
import inspect
import os
import os.path as osp
import sys
import warnings
from typing import Any

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

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
        if parts[0] in root and parts[0] not in known | READ_BY_DENSEKIT:
            raise ConfigKeyError(_read_time_only(root, key, options[key], known))
        _check_loop_kind(root, key, options)
        if parts[0] not in root:
            if parts[0] in known:
                continue  # read by the runner with a default: a deliberate new entry
            if parts[0] in READ_BY_DENSEKIT:
                continue
            close = difflib.get_close_matches(parts[0], sorted(set(root) | known), n=3, cutoff=0.75)
            if close:
                raise ConfigKeyError(_unknown(key, parts[0], '', sorted(set(root) | known), close))
            raise ConfigKeyError(_new_top_level(root, key, options[key]))
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
        elif isinstance(parent, dict):
            _check_type(key, parent[last], options[key])


# Top-level keys that DenseKit itself reads after the file is loaded
# (load_config moves every dataloader with data_root).
READ_BY_DENSEKIT = {'data_root'}


def _new_top_level(root: dict, key: str, value: Any) -> str:
    """The message for a top-level key the config does not have: nothing reads
    it, so it would change nothing. Names the keys of that name deeper down
    (``train_cfg.max_iters`` for ``max_iters``)."""
    name = key.split('.')[0]
    rest = key[len(name):]
    deeper = [where for where, _ in _walk(root) if where.rsplit('.', 1)[-1] == name][:3]
    head = f"--cfg-options {key}={value}: the config has no top-level '{name}', and nothing reads a new one"
    if deeper:
        return f'{head}: set {" or ".join(w + rest for w in deeper)} instead'
    return f'{head}: set the nested key that holds the value (e.g. model.backbone.{name})'


def _read_time_only(root: dict, key: str, value: Any, known: set) -> str:
    """The message for a top-level variable of the config file (``max_iters``,
    ``crop_size``, ``train_pipeline``): mmengine substitutes its value where the
    file uses it when the file is read, so setting it afterwards changes nothing.
    Names the keys the value landed in (same name first), found by equality
    under the keys the runner reads."""
    parts = key.split('.')
    top = root[parts[0]]
    rest = '.'.join(parts[1:])
    places = [where for where, node in _walk({k: v for k, v in root.items() if k in known})
              if _same(node, top)]
    # same name first (train_cfg.max_iters for max_iters), then the other copies
    places.sort(key=lambda where: where.rsplit('.', 1)[-1] != parts[0])
    targets = [f'{p}.{rest}' if rest else p for p in places]
    head = (f"--cfg-options {key}={value}: '{parts[0]}' is a variable of the config file, substituted where "
            'the file uses it when the file is read, so setting it now changes nothing')
    if not targets:
        return f'{head}: set the keys that use {parts[0]} in the config file instead'
    others = len(targets) - 1
    # a small number (4) matches by chance in many places: list the copies only when few
    also = (f' (the file also copied it to {", ".join(targets[1:])})' if 0 < others <= 3 else
            f' (and {others} other keys that hold the same value may use it: see the config file)' if others else '')
    return f'{head}: set {targets[0]}={value} instead{also}'


def _walk(node: Any, where: str = ''):
    """(key path, value) for every entry below ``node`` (dicts and lists)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        path = f'{where}.{key}' if where else str(key)
        yield path, value
        yield from _walk(value, path)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return False  # too common to mean "copied from"
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(x == y for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# A training loop counts iterations or epochs; the other count is not read.
LOOP_LENGTH = {'max_iters': 'max_epochs', 'max_epochs': 'max_iters'}


def _check_loop_kind(root: dict, key: str, options: dict) -> None:
    """``train_cfg.max_iters`` on an epoch-based config (or ``max_epochs`` on an
    iteration-based one) would pass as a new entry and fail inside mmengine's loop."""
    parts = key.split('.')
    loop = root.get('train_cfg')
    if len(parts) != 2 or parts[0] != 'train_cfg' or parts[1] not in LOOP_LENGTH or not isinstance(loop, dict):
        return
    other = LOOP_LENGTH[parts[1]]
    if parts[1] in loop or other not in loop:
        return
    if 'train_cfg.type' in options or 'train_cfg.by_epoch' in options:
        return  # the loop itself is being switched
    kind = 'epochs' if other == 'max_epochs' else 'iterations'
    raise ConfigKeyError(f'--cfg-options {key}={options[key]}: this config trains for a number of {kind} '
                         f'(train_cfg.{other}={loop[other]}): set train_cfg.{other} instead')


def _check_type(key: str, old: Any, new: Any) -> None:
    """A number or flag in the config must stay one (``max_iters=abc`` would
    fail hundreds of log lines later, inside the training loop)."""
    if new is None or old is None:
        return
    if isinstance(old, bool):
        ok, what = isinstance(new, bool), 'True or False'
    elif isinstance(old, int):
        ok, what = isinstance(new, int) and not isinstance(new, bool), 'an integer'
    elif isinstance(old, float):
        ok, what = isinstance(new, (int, float)) and not isinstance(new, bool), 'a number'
    else:
        return
    if not ok:
        raise ConfigKeyError(f'--cfg-options {key}={new}: expected {what} (the config has {old!r}), '
                             f'got {type(new).__name__} {new!r}')


def _open_none_parents(root: dict, options: dict) -> None:
    """Let ``--cfg-options a.b.c=v`` set a key below ``a.b = None`` (mmengine
    would ask for ``_delete_=True``, which a command line cannot write): the
    None becomes a dict, ``dict(type='Pretrained')`` for an ``init_cfg``, so
    ``model.backbone.init_cfg.checkpoint=PATH`` works on every config."""
    for key in options:
        node = root
        parts = key.split('.')
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict):
                break
            if node.get(part) is None and (part in node or (part == 'init_cfg' and i == len(parts) - 2)):
                node[part] = ConfigDict(type='Pretrained') if part == 'init_cfg' else ConfigDict()
            node = node.get(part)


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
        raise FileNotFoundError(f'config file not found: {path}{_closest_configs(path)}')
    try:
        cfg = Config.fromfile(path)
    except FileNotFoundError as err:  # a _base_ of the file (or of its bases)
        if not err.filename or osp.abspath(err.filename) == osp.abspath(path):
            raise
        raise FileNotFoundError(
            f"{path}: its _base_ chain names {osp.normpath(err.filename)}, which does not exist (a relative "
            f"_base_ is resolved against the folder of the file that names it; a config copied elsewhere "
            f"needs the path to DenseKit's configs/, e.g. '{osp.join(REPO, 'configs', 'swin', '...')}')") from None
    if options:
        _open_none_parents(cfg._cfg_dict, options)
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
    check_scopes(cfg)
    return cfg


def _closest_configs(path: str) -> str:
    """' Did you mean ...?' with the closest config files, or ''."""
    # the given folder, configs/ and its family and demo folders (configs/<family>/*.py)
    folders = {osp.dirname(path) or '.', osp.join(REPO, 'configs'),
               *(f for f in glob.glob(osp.join(REPO, 'configs', '*', '')) if osp.basename(f[:-1]) != '_base_')}
    candidates = {}
    for folder in folders:
        for file in glob.glob(osp.join(folder, '*.py')):
            rel = osp.relpath(file)
            candidates.setdefault(rel if not rel.startswith('..') else file, None)
    close = difflib.get_close_matches(osp.normpath(path), list(candidates), n=3, cutoff=0.6)
    if not close:  # compare names alone: a right name in a wrong folder
        by_name = {osp.basename(c): c for c in candidates}
        close = [by_name[n] for n in difflib.get_close_matches(osp.basename(path), list(by_name), n=3, cutoff=0.6)]
    if close:
        return f'. Did you mean {" or ".join(close)}?'
    return '. The configs are in configs/<family>/ (ls configs/*/)'


# the toolbox registry each default_scope builds models from
TOOLBOX_REGISTRIES = {'mmseg': 'mmseg.registry', 'mmdet': 'mmdet.registry', 'mmpretrain': 'mmpretrain.registry'}


def check_scopes(cfg: Config) -> None:
    """A model ``type`` without a scope that both the toolbox and DenseKit
    register (``SwinTransformer``) builds the toolbox's class. With arguments
    only DenseKit's class takes, that is an error suggesting ``densekit.``;
    otherwise a warning saying which class is built.

    Raises:
        ValueError: naming the config key, the class built and the fix.
    """
    module = TOOLBOX_REGISTRIES.get(cfg.get('default_scope'))
    if module is None or not isinstance(cfg.get('model'), dict):
        return
    from .registry import MODELS
    toolbox = importlib.import_module(module).MODELS
    MODELS.import_from_location()
    for where, node in _typed_dicts(cfg.model, 'model'):
        name = node['type']
        ours = MODELS.module_dict.get(name)
        if ours is None:
            continue
        theirs = toolbox.get(name)
        if theirs is None or theirs is ours:
            continue
        only_ours = sorted(set(node) - {'type', '_delete_', '_scope_'} - _arguments(theirs)) \
            if _arguments(theirs) is not None else []
        built = f"{where}.type='{name}' builds {cfg.default_scope}'s {name} ({theirs.__module__})"
        if only_ours and set(only_ours) <= (_arguments(ours) or set(only_ours)):
            raise ValueError(f"{built}, which takes no {', '.join(only_ours)}: those are DenseKit's "
                             f"arguments; write type='densekit.{name}'")
        print_log(f"{built}, not DenseKit's: write type='densekit.{name}' for DenseKit's, "
                  f"or type='{cfg.default_scope}.{name}' to keep this one and silence this warning",
                  logger='current', level=30)


def _arguments(cls) -> set | None:
    """Keyword arguments ``cls`` accepts; None when it takes ``**kwargs``."""
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params} - {'self'}


def _typed_dicts(node: Any, where: str):
    """(key path, dict) for every dict with a scope-less string ``type`` below ``node``."""
    if isinstance(node, dict):
        if isinstance(node.get('type'), str) and '.' not in node['type']:
            yield where, node
        for key, value in node.items():
            yield from _typed_dicts(value, f'{where}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _typed_dicts(value, f'{where}.{i}')


# Releases of the pretrained files the configs name (the README's "Pretrained weights")
RELEASES = {
    'swin_tiny_patch4_window7_224.pth':
        'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth',
    'swin_small_patch4_window7_224.pth':
        'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_small_patch4_window7_224.pth',
    'swin_base_patch4_window7_224.pth':
        'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window7_224.pth',
    'mae_pretrain_vit_base.pth': 'https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth',
    'LeViT-128S-96703c44.pth': 'https://dl.fbaipublicfiles.com/LeViT/LeViT-128S-96703c44.pth',
    'LeViT-256-13b5763e.pth': 'https://dl.fbaipublicfiles.com/LeViT/LeViT-256-13b5763e.pth',
    'convmixer_1536_20_ks9_p7.pth.tar':
        'https://github.com/tmp-iclr/convmixer/releases/download/timm-v1.0/convmixer_1536_20_ks9_p7.pth.tar',
}


def check_pretrained(cfg: Config, options: dict | None = None) -> None:
    """The backbone's pretrained file must exist before training starts.

    ``options``: the ``--cfg-options`` given; a path the user set there is
    reported as theirs (resolved against the current directory), without
    advising to set it.

    Raises:
        FileNotFoundError: naming the key, the path resolved, and how to get
            the weights (``tools/get_weights.py``, the release and the
            converter), or how to train without them.
    """
    backbone = cfg.get('model', {}).get('backbone') if isinstance(cfg.get('model'), dict) else None
    init_cfg = backbone.get('init_cfg') if isinstance(backbone, dict) else None
    path = init_cfg.get('checkpoint') if isinstance(init_cfg, dict) else None
    if not isinstance(path, str) or '://' in path or osp.isfile(path):
        return
    key = 'model.backbone.init_cfg.checkpoint'
    name = osp.basename(path)
    zoo_names = _zoo_init_weights(getattr(cfg, 'filename', None), name)
    get_weights = (f'python tools/get_weights.py {zoo_names[0]} (downloads, checks and converts it, and prints '
                   'the command that uses it)' if zoo_names else
                   'python tools/get_weights.py --list (the weights each config can start from)')
    scratch = f'from scratch: --cfg-options model.backbone.init_cfg=None'
    resolved = '' if osp.isabs(path) else f' (resolved as {osp.abspath(path)})'
    if options and key in options:
        raise FileNotFoundError(f'--cfg-options {key}={path}: no such file{resolved}. Check the path; to get '
                                f'weights: {get_weights}; {scratch}')
    url = RELEASES.get(name)
    arch = f' --arch {backbone["arch"]}' if isinstance(backbone.get('arch'), str) else ''
    kind = backbone.get('type', '?').split('.')[-1]
    by_hand = (f'or download {url} and convert it once: ' if url else
               f'or get the release {name} and convert it once: ')
    raise FileNotFoundError(
        f'{key}: {path} not found{resolved}. Get it: {get_weights}; {by_hand}python '
        f'tools/convert_checkpoint.py {kind} {name} {path}{arch} (it also loads unconverted); a file elsewhere: '
        f'--cfg-options {key}=PATH; {scratch}')


def _zoo_init_weights(config: str | None, filename: str) -> list[str]:
    """Names ``tools/get_weights.py`` knows for backbone weights of ``config``
    (configs/metafiles, ``Use: init``), the one named like ``filename`` first;
    else the names like ``filename`` in any family."""
    from .zoo import FAMILIES, read_ours
    stem = filename.split('.')[0]
    rel = osp.relpath(osp.abspath(config), REPO) if config else None
    for_config, by_name = [], []
    for family in FAMILIES:
        try:
            models = read_ours(family)['Models']
        except (OSError, KeyError, ValueError):
            continue
        for model in models:
            for weights in model['Weights']:
                if weights['Use'] != 'init':
                    continue
                if model['Config'] == rel:
                    for_config.append(weights['Name'])
                if weights['Name'].split('/', 1)[-1].split('.')[0] == stem:
                    by_name.append(weights['Name'])
    ranked = sorted(dict.fromkeys(for_config), key=lambda n: n not in by_name)
    return ranked or list(dict.fromkeys(by_name))


def loader_dataset(cfg: Config, loader: str) -> tuple[dict | None, str]:
    """(the dataset dict of ``cfg[loader]``, its key): wrappers (RepeatDataset,
    ...) unwrapped to the real one; (None, key) when there is none."""
    node = cfg.get(loader)
    dataset, where = (node.get('dataset') if isinstance(node, dict) else None), f'{loader}.dataset'
    while isinstance(dataset, dict) and isinstance(dataset.get('dataset'), dict):
        dataset, where = dataset['dataset'], f'{where}.dataset'
    return (dataset if isinstance(dataset, dict) else None), where


def check_data(cfg: Config, loaders: tuple[str, ...]) -> None:
    """The data folders of ``loaders`` (e.g. ``('train_dataloader',
    'val_dataloader')``) exist, checked before the Runner creates the work
    dir: each dataset is built without loading (``lazy_init``) and its
    ``check_paths()`` run (DenseKit's ADE20K, COCO and ImageNet classes).

    Raises:
        FileNotFoundError: the dataset's message, plus where a relative path
            was resolved (the current directory) and, when the data is under
            the repository instead, the option that points there.
    """
    from mmengine.registry import DATASETS, DefaultScope
    for name in loaders:
        dataset, _ = loader_dataset(cfg, name)
        if not isinstance(dataset, dict) or not isinstance(dataset.get('type'), str):
            continue
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
            try:
                with warnings.catch_warnings():  # the toolboxes' notices: they come again, logged, in the Runner
                    warnings.simplefilter('ignore')
                    built = DATASETS.build({**dataset, 'lazy_init': True})
            except Exception:  # noqa: BLE001 (a dataset that cannot be built here is left to the Runner)
                continue
            if not hasattr(built, 'check_paths'):
                continue
            try:
                built.check_paths()
            except FileNotFoundError as err:
                root = dataset.get('data_root') or ''
                if not root or osp.isabs(root) or '://' in root:
                    raise
                where = (f' (relative paths are resolved against the current directory: {root} is '
                         f'{osp.abspath(root)})')
                if osp.isdir(osp.join(REPO, root)) and osp.abspath(root) != osp.join(REPO, root):
                    where += (f'; the repository has {root}: run from {REPO}, or --cfg-options '
                              f'data_root={osp.join(REPO, root)}')
                raise FileNotFoundError(f'{name}.dataset: {err}{where}') from err


def fit_log_interval(cfg: Config) -> str | None:
    """An iteration-based run shorter than the logger's interval would log no
    loss at all (mmengine logs every ``interval`` iterations): log a quarter
    as often as it trains instead. Returns a one-line note when it changed."""
    loop = cfg.get('train_cfg') or {}
    logger = (cfg.get('default_hooks') or {}).get('logger')
    max_iters = loop.get('max_iters')
    if not isinstance(max_iters, int) or not isinstance(logger, dict):
        return None
    interval = logger.get('interval', 10)
    if max_iters >= interval:
        return None
    logger['interval'] = max(1, max_iters // 4)
    return (f'logging every {logger["interval"]} iterations: default_hooks.logger.interval={interval} '
            f'is longer than this {max_iters}-iteration run')


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
                         wait_time: float = 2.) -> str | None:
    """Draw every test image with ground truth and prediction for
    ``tools/test.py`` (:class:`densekit.hooks.DrawPredictionsHook`), the same
    way for the three tasks: to ``show_dir/<image name>.png`` (a relative
    ``show_dir`` is under ``cfg.work_dir``) and/or in a window. ``show``
    without a display is dropped with a warning (it would wait ``wait_time``
    per image, showing nothing). Returns the folder written to, or None."""
    if show and not has_display():
        print_log('--show: there is no display here (DISPLAY is not set), so nothing is shown; '
                  '--show-dir DIR writes the pictures instead', logger='current', level=30)
        show = False
    if show_dir and not osp.isabs(show_dir):
        show_dir = osp.join(cfg.work_dir, show_dir)
    if not (show or show_dir):
        return None
    hook = cfg.get('default_hooks', {}).get('visualization') if cfg.get('default_hooks') else None
    if hook is not None:  # the toolbox's own hook would draw again, elsewhere
        hook.update(enable=False) if task_of(cfg) == 'classification' else hook.update(draw=False)
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != 'densekit.DrawPredictionsHook']
    cfg.custom_hooks.append(dict(type='densekit.DrawPredictionsHook', out_dir=show_dir, show=show,
                                 wait_time=wait_time))
    return show_dir


def has_display() -> bool:
    return sys.platform in ('win32', 'darwin') or bool(os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))


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


# Heads whose num_classes is not the dataset's: the RPN scores object vs background;
# a distillation teacher keeps its own classifier.
NOT_DATASET_CLASSES = ('rpn_head', 'teacher')


def check_num_classes(cfg: Config) -> None:
    """Every head's ``num_classes`` (decode_head, auxiliary_head,
    roi_head.bbox_head / mask_head, bbox_head, the classifier's head and data
    preprocessor) equals the number of classes the datasets name: the
    dataloaders' ``metainfo.classes`` (or mmpretrain's ``classes``), else, for
    segmentation and detection, the dataset class's own (ADE20K's 150, COCO's 80).
    Checked before the Runner starts: a mismatch would train without a word
    (more outputs than classes) or fail on the first label past the last output.

    Raises:
        ValueError: naming the head's key, its value, the dataset's key and its count.
    """
    model = cfg.get('model')
    if isinstance(model, dict) and isinstance(model.get('module'), dict):
        model = model['module']  # a TTA wrapper (--tta)
    if not isinstance(model, dict):
        return
    heads = [(where, node['num_classes']) for where, node in _walk({'model': model})
             if isinstance(node, dict) and isinstance(node.get('num_classes'), int)
             and not set(where.split('.')) & set(NOT_DATASET_CLASSES)]
    if not heads:
        return
    for name in DATALOADERS:
        found = _dataset_classes(cfg, name)
        if found is None:
            continue
        where, count = found
        wrong = [(key, n) for key, n in heads if n != count]
        if wrong:
            key, n = wrong[0]
            more = f' (also {", ".join(k for k, _ in wrong[1:])})' if len(wrong) > 1 else ''
            raise ValueError(f'{key}.num_classes={n} but {where} has {count} classes: set '
                             f'{key}.num_classes={count}{more}, or list your {n} class names there')


def _dataset_classes(cfg: Config, loader: str) -> tuple[str, int] | None:
    """(the key that names the classes, how many) for ``loader``'s dataset, or None."""
    dataset, where = loader_dataset(cfg, loader)
    if dataset is None:
        return None
    metainfo = dataset.get('metainfo')
    if isinstance(metainfo, dict) and isinstance(metainfo.get('classes'), (list, tuple)):
        return f'{where}.metainfo.classes', len(metainfo['classes'])
    classes = dataset.get('classes')
    if isinstance(classes, (list, tuple)):
        return f'{where}.classes', len(classes)
    root = dataset.get('data_root') or ''
    if isinstance(classes, str) or (cfg.get('default_scope') == 'mmpretrain' and classes is None):
        # mmpretrain reads names from a file; DenseKit's ImageNet from {data_root}/meta/classes.txt
        file = classes if isinstance(classes, str) else osp.join(root, 'meta', 'classes.txt')
        if not osp.isfile(file):
            return None  # the names come from the data's folders, checked when it loads
        with open(file) as f:
            return f'{where}.classes ({file})', sum(1 for line in f if line.strip())
    if not isinstance(dataset.get('type'), str):
        return None
    from mmengine.registry import DATASETS, DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        try:
            cls = DATASETS.get(dataset['type'])
        except KeyError:
            return None
    classes = (getattr(cls, 'METAINFO', None) or {}).get('classes')
    if not isinstance(classes, (list, tuple)) or not classes:
        return None
    return f"{where}.metainfo.classes (unset: {dataset['type']}'s own)", len(classes)
