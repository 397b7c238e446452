"""A built model's wiring: the channels each neck and head expects against
the channels the backbone (and then the neck) actually returns.

A mismatch would otherwise surface on the first forward pass, deep inside the
toolbox's head (mmseg's ``uper_head.py``: "expected input to have 768
channels"); here it is one line naming the key to set.
"""
from __future__ import annotations

from torch import nn

HEADS = ('decode_head', 'auxiliary_head', 'head', 'rpn_head', 'bbox_head')
# where a backbone-neutral model base (configs/_base_/models/) leaves the widths to the family file
WIDTH_KEYS = ('neck', 'decode_head', 'auxiliary_head', 'head')


def check_widths_set(model_cfg: dict) -> None:
    """Before the model is built: the ``in_channels`` a config must state for its
    backbone are not left ``None`` (the toolboxes would fail on a bare assert).

    Raises:
        ValueError: naming each unset key and, where the backbone builds, the
            channels it returns.
    """
    unset = []
    for name in WIDTH_KEYS:
        node = model_cfg.get(name) if isinstance(model_cfg, dict) else None
        modules = node if isinstance(node, (list, tuple)) else [node]
        for i, module in enumerate(modules):
            if isinstance(module, dict) and 'in_channels' in module and module['in_channels'] is None:
                unset.append(f'model.{name}' + (f'.{i}' if isinstance(node, (list, tuple)) else '') + '.in_channels')
    if not unset:
        return
    hint = ''
    backbone = model_cfg.get('backbone')
    if isinstance(backbone, dict) and backbone.get('type'):
        try:
            from mmengine.registry import MODELS
            built = MODELS.build(dict(backbone, init_cfg=None))
            hint = f' (the backbone, {backbone["type"]}, returns channels {list(built.out_channels)})'
        except Exception:  # the hint is optional; the missing key is the error
            pass
    raise ValueError(f'{", ".join(unset)} not set: the model base leaves the widths the backbone feeds to the '
                     f'config; set them{hint}')


def check_wiring(model: nn.Module) -> None:
    """Compare ``model.backbone.out_channels`` with the ``in_channels`` of the
    neck(s) and heads (mmseg, mmdet, mmpretrain layouts).

    Only DenseKit backbones declare their output channels; for any other
    backbone the check does nothing.

    Raises:
        ValueError: ``model.<neck or head>.in_channels=...`` does not match,
            with the value to set.
    """
    model = getattr(model, 'module', model)  # DDP / FSDP wrappers
    backbone = getattr(model, 'backbone', None)
    channels = getattr(backbone, 'out_channels', None)
    if not isinstance(channels, (list, tuple)) or not all(isinstance(c, int) for c in channels):
        return
    channels = list(channels)
    source = f'the backbone ({type(backbone).__name__}, out_indices={tuple(backbone.out_indices)})'
    neck = getattr(model, 'neck', None)
    necks = list(neck) if isinstance(neck, (nn.Sequential, nn.ModuleList)) else [neck] if neck is not None else []
    for i, module in enumerate(necks):
        key = 'model.neck' if len(necks) == 1 else f'model.neck[{i}]'
        expected = getattr(module, 'in_channels', None)
        embed = getattr(module, 'decoder_embed', None)  # mmpretrain's MAE decoders: the last map's tokens in
        if expected is None and isinstance(embed, nn.Linear) and embed.in_features != channels[-1]:
            raise ValueError(_mismatch(f'{key}.embed_dim', embed.in_features, channels, source, channels[-1]))
        if isinstance(expected, (list, tuple)) and list(expected) != channels:
            raise ValueError(_mismatch(f'{key}.in_channels', list(expected), channels, source, channels))
        if isinstance(expected, int) and expected != channels[-1]:
            raise ValueError(_mismatch(f'{key}.in_channels', expected, channels, source, channels[-1]))
        channels = _neck_outputs(module, channels)
        if channels is None:
            return  # a neck whose outputs are not declared
        source = key
    problems = []  # every head at once: a changed backbone usually misfits several
    for name in HEADS:
        heads = getattr(model, name, None)
        if heads is None:
            continue
        listed = isinstance(heads, nn.ModuleList)
        for i, head in enumerate(heads if listed else [heads]):
            try:
                _check_head(head, channels, f'model.{name}' + (f'[{i}]' if listed else ''), source)
            except ValueError as err:
                problems.append(str(err))
    if problems:
        raise ValueError('; '.join(problems))


def _neck_outputs(neck: nn.Module, channels: list[int]) -> list[int] | None:
    out = getattr(neck, 'out_channels', None)
    if isinstance(out, (list, tuple)):
        return list(out)
    if isinstance(out, int) and isinstance(getattr(neck, 'num_outs', None), int):
        return [out] * neck.num_outs  # FPN
    if out is None and getattr(neck, 'in_channels', None) is None and next(neck.parameters(), None) is None:
        return channels  # pooling necks (GlobalAveragePooling) keep the channels
    return None


def _check_head(head: nn.Module, channels: list[int], key: str, source: str) -> None:
    expected = getattr(head, 'in_channels', None)
    index = getattr(head, 'in_index', None)
    if expected is None:
        return
    if isinstance(expected, (list, tuple)):  # mmseg multiple_select (UPerHead)
        index = list(index) if isinstance(index, (list, tuple)) else list(range(len(expected)))
        if max(index, default=-1) >= len(channels):
            raise ValueError(f'{key}.in_index={index} asks for map {max(index)}, but {source} returns '
                             f'{len(channels)} maps (channels {channels})')
        actual = [channels[i] for i in index]
        if list(expected) != actual:
            raise ValueError(_mismatch(f'{key}.in_channels', list(expected), channels, source, actual))
        return
    if getattr(head, 'input_transform', None) == 'resize_concat':
        return  # in_channels is the sum of the selected maps
    if isinstance(index, int):
        if index >= len(channels) or index < -len(channels):
            raise ValueError(f'{key}.in_index={index}, but {source} returns {len(channels)} maps '
                             f'(channels {channels})')
        actual = channels[index]
    elif len(set(channels)) == 1 or key == 'model.head':
        actual = channels[-1]  # FPN levels share a width; classifiers read the last map
    else:
        return
    if expected != actual:
        raise ValueError(_mismatch(f'{key}.in_channels', expected, channels, source, actual))


def _mismatch(key: str, expected, channels: list[int], source: str, fix) -> str:
    return (f'{key}={expected} does not match {source}, which returns channels {channels}: '
            f'set {key}={fix} in the config')
