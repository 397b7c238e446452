"""Convert a release checkpoint (official, timm, mmseg/mmpretrain) into our
backbone layout, once, so that training starts from a plain file; or a whole
model (a toolbox zoo's checkpoint) into a config's model layout.

The conversion is each family's own ``checkpoint_filter`` (the one
``init_cfg=dict(type='Pretrained')`` runs), and for whole models
:func:`densekit.whole_model.to_model_layout` (the one every loader runs); this
module only builds the model, reports what matched and writes the result.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from mmengine.registry import MODELS
from torch import nn

from .checkpoint import LoadReport, extract_state_dict, load_file, load_state
from .whole_model import release_state_dict, to_model_layout

# Family names users type, to our registered type names.
FAMILIES = {
    'swin': 'SwinTransformer', 'vit': 'VisionTransformer', 'mae': 'MAEViT', 'vitae': 'ViTAE',
    'levit': 'LeViT', 'coatnet': 'CoAtNet', 'convmixer': 'ConvMixer',
}


def build_backbone(family_or_type: str, arch: str | None = None, **kwargs) -> nn.Module:
    """Our backbone for a family name (``swin``) or a type (``SwinTransformer``,
    ``densekit.SwinTransformer``), with ``arch`` and constructor ``kwargs``."""
    import backbones  # noqa: F401  (registers the families)
    name = family_or_type.removeprefix('densekit.')
    name = FAMILIES.get(name.lower(), name)
    if name not in FAMILIES.values():
        raise KeyError(f"unknown backbone '{family_or_type}': expected a family "
                       f'{sorted(FAMILIES)} or a type {sorted(FAMILIES.values())}')
    if arch is not None:
        kwargs['arch'] = arch
    return MODELS.build(dict(type=f'densekit.{name}', **kwargs))


def convert_checkpoint(model: nn.Module, src: str | os.PathLike, dst: str | os.PathLike,
                       prefix: str | None = None, strict: bool = False,
                       progress: bool = True) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    """Convert ``src`` into ``model``'s layout and write it to ``dst``.

    ``dst`` ending in ``.safetensors`` is written with safetensors, anything
    else as ``{'state_dict': ..., 'meta': {...}}`` holding only tensors, strings
    and numbers, so that it loads with ``torch.load(weights_only=True)``.
    Only the tensors that fit the model are written: loading the file into the
    same backbone leaves exactly the report's missing keys at their init.

    Returns the load report and the converted state dict.
    """
    state = extract_state_dict(load_file(src), prefix)
    if not state:
        raise ValueError(f'{src}: no weights found' + (f" under prefix '{prefix}'" if prefix else ''))
    converted = model.checkpoint_filter(state, model)
    report = load_state(model, state, lambda *_: converted, str(src), strict=strict)
    own = model.state_dict().keys()
    out = {}
    # clone each tensor into its own contiguous storage: safetensors refuses
    # shared or strided views, and a view would pickle its whole base tensor
    for key, value in _progress(converted.items(), progress, desc='converting'):
        if value is not None and key in own:
            out[key] = value.detach().contiguous().clone()
    meta = {'source': str(src), 'type': type(model).__name__, 'prefix': prefix or '',
            'missing': ','.join(report.missing), 'ignored': ','.join(report.ignored)}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.suffix == '.safetensors':
        from safetensors.torch import save_file
        save_file(out, str(dst), metadata=meta)
    else:
        torch.save({'state_dict': out, 'meta': meta}, dst)
    return report, out


def build_model(config: str) -> nn.Module:
    """The whole model of a config (segmentor, detector or classifier), not
    initialised: no pretrained file is read."""
    from mmengine.registry import DefaultScope

    from .config import load_config, task_of
    import backbones, heads, necks  # noqa: F401,E401  (register our modules)
    cfg = load_config(config)
    task_of(cfg)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def convert_whole_model(config: str, src: str | os.PathLike, dst: str | os.PathLike,
                        strict: bool = False) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    """Convert the whole-model checkpoint ``src`` (an mmseg/mmdet/mmpretrain
    zoo file, an official/timm classifier release, or ours) into the layout of
    ``config``'s model and write ``{'state_dict', 'meta'}`` to ``dst`` (with
    the source's ``meta`` entries that are plain data, e.g. ``dataset_meta``).

    ``strict``: fail unless every weight of the model is in the checkpoint and
    every converted key is in the model. Returns the report and the state dict.
    """
    model = build_model(config)
    raw = load_file(src)
    state = extract_state_dict(release_state_dict(raw))
    if not state:
        raise ValueError(f'{src}: no weights found')
    converted = to_model_layout(model, state)
    report = load_state(model, converted, lambda sd, _: sd, str(src), strict=strict)
    own = model.state_dict().keys()
    out = {k: v.detach().contiguous().clone() for k, v in converted.items() if k in own}
    meta = {k: v for k, v in (raw.get('meta') or {}).items() if k in ('dataset_meta', 'mmseg_version',
                                                                     'mmdet_version', 'mmpretrain_version')}
    meta.update(source=str(src), config=str(config), missing=','.join(report.missing),
                unexpected=','.join(report.unexpected))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': out, 'meta': meta}, dst)
    return report, out


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm
    items = list(items)
    return tqdm(items, desc=desc, unit='tensor', total=len(items))
