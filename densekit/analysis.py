"""Model complexity and training curves, for ``tools/analysis/``.

FLOPs follow mmengine's (fvcore's) convention, the one the papers use: one
fused multiply-add counts as one FLOP, so "FLOPs" here are multiply-adds
(Swin-T: 4.5G at 224x224). Element-wise ops (activations, additions,
softmax) are not counted; norms and upsampling are, as mmengine counts them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from torch import nn


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """Multiply-adds of ``F.scaled_dot_product_attention`` (mmengine 0.10 has
    no handle for it and would count attention as zero): ``q @ k^T`` and
    ``attn @ v``, for q (..., L, E), k (..., S, E), v (..., S, Ev)."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


@dataclass
class Complexity:
    """Parameters and FLOPs (multiply-adds) per top-level module; ``''`` is the whole model."""
    params: dict[str, int]
    flops: dict[str, int]
    input_shape: tuple[int, ...]

    def table(self) -> str:
        """A Markdown table: the whole model, then each top-level module."""
        names = [''] + [n for n in self.params if n and '.' not in n]
        rows = ['| module | params | FLOPs (multiply-adds) |', '|---|---:|---:|']
        for name in names:
            flops = self.flops.get(name, 0)
            rows.append(f'| {name or "model"} | {self.params[name] / 1e6:.2f} M | '
                        f'{flops / 1e9:.3f} G' + ('' if flops or not name else ' (not run at inference)') + ' |')
        return '\n'.join(rows)


def count_complexity(model: nn.Module, input_shape: Sequence[int]) -> Complexity:
    """Count ``model``'s parameters and the FLOPs of one forward on a zero
    input of ``input_shape`` (B, C, H, W), traced on CPU in eval mode.

    A toolbox model (mmseg/mmdet/mmpretrain) is called as ``model(x)``, its
    ``mode='tensor'`` forward: the inference path without post-processing.
    """
    model = model.eval()
    inputs = torch.zeros(*input_shape)
    analyzer = FlopAnalyzer(model, (inputs,)).set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings('none')
    with torch.no_grad():
        flops = dict(analyzer.by_module())
    return Complexity(dict(parameter_count(model)), flops, tuple(input_shape))


def build_model_from_config(cfg) -> nn.Module:
    """The config's model on CPU with random weights (no pretrained loading:
    counting needs only the architecture)."""
    from mmengine.registry import MODELS, init_default_scope

    from densekit.config import task_of
    task_of(cfg)  # a config without a toolbox scope fails here, with a clear message
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model
    if isinstance(model_cfg.get('backbone'), dict):
        model_cfg.backbone.init_cfg = None
    return MODELS.build(model_cfg)


# -- training curves ---------------------------------------------------------

# keys of mmengine's scalars.json that are bookkeeping, not curves
_BOOKKEEPING = {'step', 'iter', 'epoch', 'data_time', 'time', 'memory', 'base_lr'}


def find_scalars(work_dir: str | Path) -> Path:
    """The newest ``<work_dir>/<timestamp>/vis_data/scalars.json`` that
    mmengine's LocalVisBackend wrote."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise FileNotFoundError(f'work dir not found: {work_dir}')
    found = sorted(work_dir.glob('*/vis_data/scalars.json'))
    if not found:
        raise FileNotFoundError(f'{work_dir}: no */vis_data/scalars.json (written by mmengine\'s '
                                'LocalVisBackend during training); is this a training work dir?')
    return found[-1]  # timestamps sort chronologically


def read_scalars(path: str | Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Group a scalars.json into ``{'loss': {...}, 'lr': {...}, 'val': {...}}``,
    each ``{key: [(step, value), ...]}``. Training lines carry ``lr``;
    validation lines do not."""
    groups: dict[str, dict[str, list]] = {'loss': {}, 'lr': {}, 'val': {}}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f'{path}:{lineno}: not a JSON line ({err.msg})') from err
            step = record.get('step', record.get('iter'))
            training = 'lr' in record
            for key, value in record.items():
                if key in _BOOKKEEPING or not isinstance(value, (int, float)):
                    continue
                group = 'val' if not training else 'lr' if key == 'lr' else 'loss' if 'loss' in key else None
                if group:
                    groups[group].setdefault(key, []).append((step, float(value)))
    return groups


def plot_curves(scalars: dict[str, dict[str, list[tuple[int, float]]]], out: str | Path,
                title: str = '') -> Path:
    """Draw losses, learning rate and validation metrics over iterations as a PNG."""
    import matplotlib
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt

    panels = [(name, curves) for name, curves in (('loss', scalars['loss']), ('learning rate', scalars['lr']),
                                                  ('validation', scalars['val'])) if curves]
    if not panels:
        raise ValueError('no loss, learning-rate or validation values to plot')
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels):
        for key, points in curves.items():
            steps, values = zip(*points)
            ax.plot(steps, values, marker='o' if len(points) < 20 else None, label=key)
        ax.set_title(name)
        ax.set_xlabel('iteration')
        ax.legend(fontsize='small')
        ax.grid(alpha=.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
