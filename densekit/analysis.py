"""Model complexity and training curves, for ``tools/analysis/``.

FLOPs follow mmengine's (fvcore's) convention, the one the papers use: one
fused multiply-add counts as one FLOP, so "FLOPs" here are multiply-adds
(Swin-T: 4.5G at 224x224). Element-wise ops (activations, additions,
softmax) are not counted; norms and upsampling are, as mmengine counts them.
"""
from __future__ import annotations

import json
import re
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
    proposals: int | None = None  # a two-stage detector: the proposals its RoI heads were counted at

    def note(self) -> str:
        """One line on what a detector's count covers ('' for other models)."""
        if not self.proposals:
            return ''
        return (f'Detector: backbone, neck and RPN at this input; the RoI heads at {self.proposals} proposals '
                '(model.test_cfg.rpn.max_per_img, the most the RPN passes on; the mask head on the first 100, '
                "as mmdet's RoI head does): an upper bound that does not depend on the weights")

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
    traced = _WithImageMeta(model, input_shape) if _is_detector(model) else model
    analyzer = FlopAnalyzer(traced, (inputs,)).set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings('none')
    with torch.no_grad():
        flops = dict(analyzer.by_module())
    if traced is not model:  # names relative to the detector, as parameter_count gives them
        flops = {('' if k in ('', 'model') else k[len('model.'):]): v for k, v in flops.items()
                 if k in ('', 'model') or k.startswith('model.')}
    proposals = traced.num_proposals if isinstance(traced, _WithImageMeta) else None
    return Complexity(dict(parameter_count(model)), flops, tuple(input_shape), proposals)


def _is_detector(model: nn.Module) -> bool:
    try:
        from mmdet.models.detectors import BaseDetector
    except ImportError:
        return False
    return isinstance(model, BaseDetector)


class _WithImageMeta(nn.Module):
    """Calls an mmdet detector's ``mode='tensor'`` forward with data samples
    carrying the image size: two-stage detectors (Mask R-CNN) need them for
    their proposals (without: ``TypeError: 'NoneType' object is not iterable``).

    How many proposals survive the RPN's NMS depends on the weights and the
    image, and the RoI heads' FLOPs with them; here the RPN's convolutions run
    (and count) but its proposals are replaced by :attr:`num_proposals` fixed
    boxes, its ``test_cfg.rpn.max_per_img`` (the most it passes on, 1000 in
    the COCO recipes), so the count is that upper bound, whatever the weights.
    mmdet's ``StandardRoIHead.forward`` runs the mask head on the first 100."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int]):
        super().__init__()
        from mmdet.structures import DetDataSample
        size = tuple(input_shape[-2:])
        self.model, self.size = model, size
        self.samples = [DetDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size,
                                                    batch_input_shape=size, scale_factor=(1., 1.)))
                        for _ in range(input_shape[0])]
        test_cfg = getattr(model, 'test_cfg', None) or {}
        rpn_cfg = test_cfg.get('rpn') if isinstance(test_cfg, dict) else None
        self.num_proposals = (rpn_cfg.get('max_per_img') if isinstance(rpn_cfg, dict) else None) \
            if getattr(model, 'with_rpn', False) else None

    def forward(self, inputs: torch.Tensor):
        if not self.num_proposals:
            return self.model(inputs, self.samples, mode='tensor')
        rpn = self.model.rpn_head
        rpn.predict = self._fixed_proposals  # an instance attribute over the class's method, removed below
        try:
            # the RPN's outputs returned too: the tracer drops what no output uses
            return self.model(inputs, self.samples, mode='tensor'), self._rpn_outputs
        finally:
            del rpn.predict

    def _fixed_proposals(self, x, batch_data_samples, rescale: bool = False) -> list:
        """The RPN's forward (counted), then :attr:`num_proposals` boxes of a
        quarter of the image each, spread evenly over it."""
        from mmengine.structures import InstanceData
        self._rpn_outputs = self.model.rpn_head(x)
        (h, w), n = self.size, self.num_proposals
        t = torch.linspace(0, 1, n)
        boxes = torch.stack([t * w / 2, t.flip(0) * h / 2, t * w / 2 + w / 2, t.flip(0) * h / 2 + h / 2], 1)
        return [InstanceData(bboxes=boxes, scores=torch.ones(n), labels=torch.zeros(n, dtype=torch.long))
                for _ in batch_data_samples]


def default_input_shape(cfg) -> tuple[int, int]:
    """(H, W) to count a config's model at: a detector's test scale (the test
    pipeline's ``Resize`` scale, padded as its data preprocessor pads, e.g.
    1333x800 -> 800x1344), else ``crop_size``, else 224x224."""
    dataloader = cfg.get('test_dataloader') or {}
    pipeline = (dataloader.get('dataset') or {}).get('pipeline') or []
    resize = next((t for t in pipeline if isinstance(t, dict) and t.get('type', '').split('.')[-1] == 'Resize'
                   and t.get('scale')), None)
    if cfg.get('default_scope') == 'mmdet' and resize is not None:
        scale = resize['scale']
        width, height = (scale, scale) if isinstance(scale, int) else scale[:2]
        divisor = (cfg.model.get('data_preprocessor') or {}).get('pad_size_divisor', 1)
        return (-(-height // divisor) * divisor, -(-width // divisor) * divisor)
    return tuple(cfg.get('crop_size') or (224, 224))


def build_model_from_config(cfg) -> nn.Module:
    """The config's model on CPU with random weights (no pretrained loading:
    counting needs only the architecture), its channel wiring checked.

    Raises:
        ValueError: a neck or head ``in_channels`` unset or not matching the backbone."""
    from mmengine.registry import MODELS, init_default_scope

    from densekit.config import task_of
    task_of(cfg)  # a config without a toolbox scope fails here, with a clear message
    from densekit.wiring import check_widths_set, check_wiring
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model
    if isinstance(model_cfg.get('backbone'), dict):
        model_cfg.backbone.init_cfg = None
    check_widths_set(model_cfg)
    model = MODELS.build(model_cfg)
    check_wiring(model)  # the widths before the count: a misfit would fail inside a head
    return model


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
    each ``{key: [(iteration, value), ...]}``. Training lines carry ``lr``;
    validation lines do not. In epoch-based runs mmengine steps validation
    lines by epoch; they are placed at the epoch's last iteration."""
    groups: dict[str, dict[str, list]] = {'loss': {}, 'lr': {}, 'val': {}}
    per_epoch = 0  # iterations per epoch, seen in epoch-based training lines
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
            if training and isinstance(record.get('epoch'), int) and record['epoch'] > 0:
                per_epoch = max(per_epoch, -(-int(record.get('iter', step)) // record['epoch']))
            for key, value in record.items():
                if key in _BOOKKEEPING or not isinstance(value, (int, float)):
                    continue
                group = 'val' if not training else 'lr' if key == 'lr' else 'loss' if 'loss' in key else None
                if group:
                    groups[group].setdefault(key, []).append((step, float(value)))
    if not per_epoch:  # mmengine's epoch-based training lines carry no epoch: its text log says how long one is
        per_epoch = _iterations_per_epoch(Path(path).parent.parent)
    if per_epoch:  # epoch-based: validation lines count epochs; put them on the iteration axis
        groups['val'] = {key: [(epoch * per_epoch, value) for epoch, value in points]
                         for key, points in groups['val'].items()}
    return groups


def _iterations_per_epoch(run_dir: Path) -> int:
    """Iterations per epoch from ``run_dir/<timestamp>.log`` ("Epoch(train) [1][ 25/100]"), or 0
    (an iteration-based run, or no log)."""
    log = run_dir / f'{run_dir.name}.log'
    if not log.is_file():
        return 0
    found = re.search(r'Epoch\(train\)\s*\[\d+\]\[\s*\d+/(\d+)\]', log.read_text(errors='replace'))
    return int(found[1]) if found else 0


def _common_prefix(keys: list[str]) -> str:
    """The shared ``group/`` prefix of several keys (``coco/``), or ''."""
    if len(keys) < 2:
        return ''
    prefix = keys[0].rsplit('/', 1)[0] + '/' if '/' in keys[0] else ''
    return prefix if prefix and all(k.startswith(prefix) for k in keys) else ''


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
    most = max(len(curves) for _, curves in panels)
    legend_rows = -(-most // 3) if most > 6 else 0  # long legends (COCO's metrics) go below the panel
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8 + 0.22 * legend_rows), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels):
        prefix = _common_prefix(list(curves))
        for key, points in curves.items():
            steps, values = zip(*points)
            ax.plot(steps, values, marker='o' if len(points) < 20 else None, label=key[len(prefix):])
        ax.set_title(f'{name} ({prefix.rstrip("/_")})' if prefix else name)
        ax.set_xlabel('iteration')
        if len(curves) > 6:
            ax.legend(fontsize='x-small', ncol=3, loc='upper center', bbox_to_anchor=(0.5, -0.16))
        else:
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
