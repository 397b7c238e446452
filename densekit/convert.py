"""Convert a release checkpoint (official, timm, mmseg/mmpretrain) into our
backbone layout, once, so that training starts from a plain file; or a whole
model (a toolbox zoo's checkpoint) into a config's model layout.

The conversion is each family's own ``checkpoint_filter`` (the one
``init_cfg=dict(type='Pretrained')`` runs), and for whole models
:func:`densekit.whole_model.to_model_layout` (the one every loader runs); this
module only builds the model, reports what matched and writes the result.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
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
    import densekit.backbones  # noqa: F401  (registers the families)
    name = family_or_type.removeprefix('densekit.')
    name = FAMILIES.get(name.lower(), name)
    if name not in FAMILIES.values():
        # suggested in the form typed: a family name, or a type name when capitalised
        forms = [(name.lower(), list(FAMILIES)), (name, list(FAMILIES.values()))]
        close = [c for typed, names in (forms[::-1] if name != name.lower() else forms)
                 for c in difflib.get_close_matches(typed, names, n=1, cutoff=0.6)]
        raise KeyError(f"unknown backbone '{family_or_type}': expected a family "
                       f'{sorted(FAMILIES)} or a type {sorted(FAMILIES.values())}'
                       + (f'. Did you mean {close[0]!r}?' if close else ''))
    if arch is not None:
        kwargs['arch'] = arch
    return MODELS.build(dict(type=f'densekit.{name}', **kwargs))


def describe_backbone(model: nn.Module, arch: str | None = None) -> str:
    """``SwinTransformer(arch=tiny)``: the class and ``arch``, else its
    constructor's default arch."""
    if arch is None:
        import inspect
        param = inspect.signature(type(model).__init__).parameters.get('arch')
        arch = param.default if param is not None and isinstance(param.default, str) else None
    return f'{type(model).__name__}(arch={arch})' if arch else type(model).__name__


def detect_prefix(state: dict) -> str | None:
    """``'backbone.'`` when ``state`` is a whole mmseg/mmdet/mmpretrain model
    (its backbone's keys under that prefix, beside a neck's or heads'), else None."""
    return 'backbone.' if any(k.startswith('backbone.') for k in state) else None


@dataclass
class Fit:
    """How a checkpoint's tensors meet a backbone once converted (nothing loaded).

    ``tensors``: in the checkpoint (after the prefix); ``ignored``: those the
    family's converter drops (a classifier head, buffers it recomputes);
    ``fit``: converted tensors the backbone takes as they are; ``reshaped``:
    converted keys the backbone has with another shape; ``unexpected``:
    converted keys the backbone lacks; ``missing``: backbone weights the
    checkpoint does not hold (not counting those a release lacks by design);
    ``weights``: the backbone's own tensor count."""
    tensors: int
    ignored: int
    fit: int
    reshaped: int
    unexpected: int
    missing: int
    weights: int

    @property
    def misfit(self) -> int:
        return self.reshaped + self.unexpected + self.missing

    def describe(self) -> str:
        """'of its 173 tensors 171 fit the backbone (2 ignored: not backbone weights);
        156 of the backbone's 333 weights are not in the checkpoint'"""
        parts = [f'of its {self.tensors} tensors {self.fit} fit the backbone']
        if self.ignored:
            parts[-1] += f' ({self.ignored} ignored: not backbone weights)'
        if self.reshaped:
            parts.append(f'{self.reshaped} have another shape')
        if self.unexpected:
            parts.append(f'{self.unexpected} have no place in it')
        if self.missing:
            parts.append(f"{self.missing} of the backbone's {self.weights} weights are not in the checkpoint")
        return '; '.join(parts)


def fit_of(model: nn.Module, state: dict) -> Fit:
    """:class:`Fit` of ``state`` converted for ``model``; nothing is loaded."""
    converted = {k: v for k, v in model.checkpoint_filter(state, model).items() if v is not None}
    pruned = tuple(f'{n}.' for n in getattr(model, 'pruned_modules', ()))
    dropped = 0
    if pruned:  # modules not built for out_indices: their weights are not the checkpoint's fault
        kept = {k: v for k, v in converted.items() if not k.startswith(pruned)}
        dropped, converted = len(converted) - len(kept), kept
    own = {k: v.shape for k, v in model.state_dict().items()}
    lacks = tuple(model.release_lacks()) if hasattr(model, 'release_lacks') else ()
    fit = sum(k in own and tuple(v.shape) == tuple(own[k]) for k, v in converted.items())
    unexpected = sum(k not in own for k in converted)
    missing = sum(k not in converted and not (lacks and k.startswith(lacks)) for k in own)
    return Fit(tensors=len(state), ignored=max(0, len(state) - len(converted) - dropped) + dropped, fit=fit,
               reshaped=len(converted) - fit - unexpected, unexpected=unexpected, missing=missing,
               weights=len(own))


def fit_counts(model: nn.Module, state: dict) -> tuple[int, int]:
    """(tensors that fit, tensors that do not: missing, unexpected or of
    another shape, not counting those a release lacks by design) when
    ``state`` is converted for ``model``; nothing is loaded."""
    fit = fit_of(model, state)
    return fit.fit, fit.misfit


def suggest_arch(family_or_type: str, state: dict, **kwargs) -> str | None:
    """The ``arch`` of the family that ``state`` fits best (most tensors
    placed, then fewest misfits), built on the meta device (no memory, no
    init); None when no arch fits every tensor."""
    name = FAMILIES.get(family_or_type.removeprefix('densekit.').lower(), family_or_type.removeprefix('densekit.'))
    cls = MODELS.get(f'densekit.{name}')
    best, best_score = None, None
    for arch in getattr(cls, 'arch_settings', {}):
        try:
            with torch.device('meta'):
                candidate = build_backbone(family_or_type, arch, **kwargs)
            fit, misfit = fit_counts(candidate, state)
        except Exception:  # noqa: BLE001 (an arch the options do not suit: not a candidate)
            continue
        if misfit == 0 and (best_score is None or fit > best_score):
            best, best_score = arch, fit
    return best


def convert_checkpoint(model: nn.Module, src: str | os.PathLike, dst: str | os.PathLike,
                       prefix: str | None = None, strict: bool = False,
                       progress: bool = True, allow_partial: bool = True,
                       family: str | None = None,
                       arch_options: dict | None = None,
                       arch: str | None = None) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    """Convert ``src`` into ``model``'s layout and write it to ``dst``.

    Without ``prefix``, a whole mmseg/mmdet/mmpretrain model is recognised
    (:func:`detect_prefix`) and its ``backbone.`` weights converted; a pickled
    whole ``nn.Module`` (loadable only with ``DENSEKIT_TRUST_CHECKPOINTS=1``)
    gives its ``state_dict()``. With ``allow_partial=False`` a checkpoint that
    leaves backbone weights missing or has tensors the backbone cannot place
    is refused (``ValueError``) before anything is written, naming the
    ``arch`` of ``family`` it fits (built with ``arch_options``) if any;
    ``arch`` is the one ``model`` was built with, for that message.

    ``dst`` ending in ``.safetensors`` is written with safetensors, anything
    else as ``{'state_dict': ..., 'meta': {...}}`` holding only tensors, strings
    and numbers, so that it loads with ``torch.load(weights_only=True)``.
    Only the tensors that fit the model are written: loading the file into the
    same backbone leaves exactly the report's missing keys at their init.

    Returns the load report and the converted state dict.
    """
    raw = extract_state_dict(load_file(src))
    if prefix is None:
        prefix = detect_prefix(raw)
    state = extract_state_dict(raw, prefix)
    if not state:
        raise ValueError(f'{src}: no weights found' + (f" under prefix '{prefix}'" if prefix else ''))
    if not allow_partial:
        fit = fit_of(model, state)
        if fit.misfit:
            fits = suggest_arch(family or type(model).__name__, state, **(arch_options or {}))
            hint = (f'it fits --arch {fits}' if fits else
                    'no arch of this family fits it (another family, or an intermediate checkpoint?)')
            raise ValueError(f'{src} does not fit {describe_backbone(model, arch)}: '
                             f'{fit.describe()}. '
                             f'{hint[0].upper()}{hint[1:]}; --allow-partial writes the partial conversion')
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
    import densekit.backbones, densekit.heads, densekit.necks  # noqa: F401,E401  (register our modules)
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
