"""Whole-model checkpoints of other layouts in DenseKit configs: the mmseg,
mmdet and mmpretrain zoos (``{'meta', 'state_dict'}`` with ``backbone.``,
``neck.``, ``decode_head.`` ... keys) and official / timm classifier releases
(backbone keys at the top level, a linear ``head``).

A toolbox's model and ours differ in the backbone: its slice of the state dict
goes through the family's own ``checkpoint_filter`` (the converter that
``init_cfg=dict(type='Pretrained')`` runs). Necks and heads are the toolboxes'
own modules in our configs, so their keys pass unchanged, except where our
config uses another head of the same function (:data:`HEAD_RENAMES`).

:func:`to_model_layout` does this for a state dict. :func:`convert_on_load`
puts it under mmengine's ``_load_checkpoint_to_model``, which every loader
shares: ``Runner.load_checkpoint`` (``tools/test.py``, ``load_from``,
``--resume``) and ``mmengine.runner.load_checkpoint`` (mmseg's
``init_model``, mmdet's ``init_detector``, mmpretrain's ``get_model``, hence
``densekit.inference`` and ``tools/infer.py``). A checkpoint already in the
model's layout is passed through untouched.
"""
from __future__ import annotations

import ast
import glob
import os.path as osp
import re

import torch
from torch import nn

__all__ = ['to_model_layout', 'convert_on_load', 'release_state_dict', 'describe_variant', 'trained_with',
           'HEAD_RENAMES']

# (toolbox key prefix, ours): applied when only the renamed key is the model's.
HEAD_RENAMES = (
    # mmpretrain's VisionTransformerClsHead (no hidden layer) is our LinearClsHead
    ('head.layers.head.', 'head.fc.'),
)


def _converters(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(prefix, module) of every submodule with a ``checkpoint_filter``
    (our backbones), outermost first."""
    return [(f'{name}.' if name else '', m) for name, m in model.named_modules()
            if callable(getattr(type(m), 'checkpoint_filter', None)) and name]


def _linear_head(model: nn.Module) -> str | None:
    """Prefix of the model's single linear classifier (mmpretrain
    ``LinearClsHead``: ``head.fc``), or None."""
    head = getattr(model, 'head', None)
    fc = getattr(head, 'fc', None)
    if isinstance(fc, nn.Linear) and sum(isinstance(m, nn.Linear) for m in head.modules()) == 1:
        return 'head.fc.'
    return None


def _from_release(model: nn.Module, own: dict, state: dict) -> dict:
    """A classifier release (no ``backbone.`` keys): classifier keys that fit
    the model's head as they are (timm's ``head.fc``) or as its linear layer
    (``head.weight`` -> ``head.fc.weight``) go there, all else to the backbone."""
    head = _linear_head(model)
    out = {}
    for k, v in state.items():
        linear = head + k[len('head.'):] if head and k in ('head.weight', 'head.bias') else None
        if k.startswith('head.') and k in own and own[k].shape == v.shape:
            out[k] = v
        elif linear in own and own[linear].shape == v.shape:
            out[linear] = v
        else:
            out['backbone.' + k] = v
    return out


def to_model_layout(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` mapped to ``model``'s keys: pure, dict in and dict out.

    * Every backbone slice (``backbone.*``) not already in our layout goes
      through the backbone's ``checkpoint_filter`` (keys it maps to None,
      e.g. derived buffers, are dropped).
    * A release classifier without ``backbone.`` keys (official ViTAE, timm
      ``head.weight``) loads into a classifier config: backbone keys through
      the filter, ``head.weight``/``head.bias`` to the linear head's
      ``head.fc``.
    * :data:`HEAD_RENAMES` where our head differs in name only; everything
      else keeps its name, and what still does not fit is left for the
      loader's strict check to name.

    Returns ``state`` itself when every key already belongs to ``model``.
    """
    own = model.state_dict()
    if set(state) <= set(own):
        return state
    state = {k.removeprefix('module.'): v for k, v in state.items()}
    converters = _converters(model)
    if any(p == 'backbone.' for p, _ in converters) and not any(k.startswith('backbone.') for k in state):
        state = _from_release(model, own, state)
    for prefix, module in converters:
        keys = [k for k in state if k.startswith(prefix)]
        sub = {k[len(prefix):]: state[k] for k in keys}
        if not sub or all(prefix + k in own for k in sub):
            continue
        converted = type(module).checkpoint_filter(sub, module)
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        state.update({prefix + k: v for k, v in converted.items() if v is not None})
    for old, new in HEAD_RENAMES:
        for k in [k for k in state if k.startswith(old) and k not in own]:
            if new + k[len(old):] in own:
                state[new + k[len(old):]] = state.pop(k)
    return state


def _depths(keys) -> tuple[int, ...]:
    """Blocks per stage from ``backbone.(stages|layers).i.blocks.j`` (or
    ``backbone.blocks.j``, one stage) key names."""
    depth: dict[int, int] = {}
    for k in keys:
        m = re.match(r'backbone\.(?:(?:stages|layers)\.(\d+)\.(?:blocks|NC)|blocks)\.(\d+)\.', k)
        if m:
            stage = int(m[1] or 0)
            depth[stage] = max(depth.get(stage, 0), int(m[2]) + 1)
    return tuple(depth[i] for i in sorted(depth))


def describe_variant(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """One line when ``state`` (already in the model's layout) holds another
    variant of the model's backbone (other depths or widths), else None."""
    own = model.state_dict()
    backbone = type(getattr(model, 'backbone', None)).__name__
    shared = [k for k in state if k.startswith('backbone.')]
    if not shared or sum(k in own for k in shared) < len(shared) // 2:
        return None  # mostly foreign backbone keys: another family, not another variant
    ours, theirs = _depths(own), _depths(state)
    if theirs and ours and theirs != ours:
        return f'the checkpoint is another variant of {backbone}: blocks per stage {theirs}, the config has {ours}'
    for k, v in state.items():
        if k.startswith('backbone.') and k in own and v.shape != own[k].shape:
            return (f'the checkpoint is another variant of {backbone}: {k} is {tuple(v.shape)}, '
                    f'the config has {tuple(own[k].shape)}')
    return None


def trained_with(meta: dict | None) -> str | None:
    """What an mmengine checkpoint's ``meta`` says it was trained with, as a
    phrase for an error message: the config (``experiment_name`` is
    ``<config name>_<timestamp>``; the shipped file of that name when there is
    one) and its ``model.backbone`` type and arch (read from ``meta['cfg']``,
    the config's text, without running it). None when ``meta`` has neither."""
    if not isinstance(meta, dict):
        return None
    parts = []
    name = meta.get('experiment_name')
    stem = re.sub(r'_\d{8}_\d{6}$', '', name) if isinstance(name, str) else None
    if stem:
        root = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs')
        found = sorted(glob.glob(osp.join(root, '**', f'{stem}.py'), recursive=True))
        parts.append(f'{osp.relpath(found[0], osp.dirname(root))} (use that config)' if found
                     else f'a config named {stem}.py')
    backbone = _config_backbone(meta.get('cfg'))
    if backbone:
        parts.append('backbone ' + ', '.join(f'{k}={v!r}' for k, v in backbone.items()))
    return "the checkpoint's meta says it was trained with " + ', '.join(parts) if parts else None


def _config_backbone(text) -> dict | None:
    """``type`` and ``arch`` of ``model.backbone`` in a config's text (mmengine's
    ``pretty_text``), read with :mod:`ast` (a checkpoint's text is not run)."""
    if not isinstance(text, str):
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == 'model' for t in node.targets):
            backbone = _literal(node.value)
            backbone = backbone.get('backbone') if isinstance(backbone, dict) else None
            if isinstance(backbone, dict):
                return {k: backbone[k] for k in ('type', 'arch') if k in backbone} or None
    return None


def _literal(node: ast.AST):
    """The value of a literal or of ``dict(key=literal, ...)``; unreadable parts are left out."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict':
        out = {}
        for keyword in node.keywords:
            value = _literal(keyword.value)
            if keyword.arg and value is not _UNREAD:
                out[keyword.arg] = value
        return out
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return _UNREAD


_UNREAD = object()


def release_state_dict(checkpoint: dict) -> dict:
    """The weights of a checkpoint object: ``state_dict`` (mmengine, and
    timm's training checkpoints, whose EMA ``state_dict_ema`` is taken when
    present as the official ViTAE ``validate.py`` does), ``model`` (DeiT) or
    the object itself."""
    for key in ('state_dict_ema', 'state_dict', 'model'):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def _model_of(model: nn.Module) -> nn.Module:
    return getattr(model, 'module', model)  # DDP and mmengine's wrappers


def convert_on_load() -> None:
    """Route mmengine's ``_load_checkpoint_to_model`` through
    :func:`to_model_layout` (see the module docstring for who calls it).

    Idempotent; the names are rebound in ``mmengine.runner.checkpoint`` and
    ``mmengine.runner.runner``, which imported it."""
    from mmengine.runner import checkpoint as ckpt_module
    from mmengine.runner import runner as runner_module
    original = ckpt_module._load_checkpoint_to_model
    if getattr(original, '_densekit', False):
        return

    def _load_checkpoint_to_model(model, checkpoint, strict=False, logger=None,
                                  revise_keys=[(r'^module\.', '')]):  # noqa: B006 (mmengine's default)
        if isinstance(checkpoint, dict):
            weights = release_state_dict(checkpoint)
            state = {_revise(k, revise_keys): v for k, v in weights.items()}
            converted = to_model_layout(_model_of(model), state)
            if converted is not state or weights is not checkpoint.get('state_dict'):
                checkpoint = {**checkpoint, 'state_dict': converted}
        return original(model, checkpoint, strict, logger, revise_keys)

    _load_checkpoint_to_model._densekit = True
    ckpt_module._load_checkpoint_to_model = runner_module._load_checkpoint_to_model = _load_checkpoint_to_model


def _revise(key: str, revise_keys) -> str:
    for pattern, repl in revise_keys:
        key = re.sub(pattern, repl, key)
    return key
