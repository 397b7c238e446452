"""ONNX export of a config's whole model, checked in onnxruntime, and the
ONNX inference path of ``tools/infer.py``.

    from densekit.export import export_onnx
    report = export_onnx('configs/upernet_swin_ade20k.py', 'iter_160000.pth', 'upernet_swin.onnx')

The graph takes ``pixels`` (N, 3, H, W) float32 in 0..255, in the channel
order the config's data preprocessor receives (BGR, as OpenCV reads images):
the channel swap and the normalisation are inside it. Its outputs:

* segmentation: ``seg_logits`` (N, classes, H, W), the decode head's logits
  resized to the input (mmseg's whole-image inference before the argmax);
* classification: ``scores`` (N, classes), the softmax of the head's logits
  (mmpretrain's ``pred_score``);
* detection: the raw outputs of backbone + neck + dense head (the RPN of a
  two-stage detector, the box head of a one-stage one) on the input padded
  to the preprocessor's ``pad_size_divisor``, as mmdet runs them: per level
  ``cls_score_<i>``, ``bbox_pred_<i>``. Box decoding, NMS and the RoI heads
  are data-dependent and stay outside the graph.

N, H and W are dynamic. The exporter is torch's TorchScript-based one
(``torch.onnx.export(dynamo=False)``): it captures our backbones in seconds,
where ``torch.export`` with dynamic H and W did not finish (see the closing
note of issue 22). A tracer records the Python branches of the example input:
a graph holds for inputs that take the same branches, which the check at a
second size verifies; size-dependent branches that a family takes at run
time are written as graph ops while tracing (Swin's unshifted single-window
maps: ``SwinBlock._traced_shifted_attention``).
"""
from __future__ import annotations

import copy
import io
import json
import os
import re
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# 18: the first opset whose Resize has the antialias of timm's bicubic resampling
OPSET = 18


class ExportError(ValueError):
    """A model that cannot be exported; the message names the operator and the module."""


# -- the deployed graph ----------------------------------------------------------


class AdaptiveAvgPool2dMatmul(nn.Module):
    """``nn.AdaptiveAvgPool2d(output_size)`` as two averaging matrices built
    from the input's H and W: (N, C, H, W) -> (N, C, h, w), the same bins
    (``floor(i H / h)`` to ``ceil((i + 1) H / h)``). Why: ONNX has no adaptive
    pooling, and the exporter converts one only when H, W are fixed multiples
    of the output (mmseg's PPM pools to 1, 2, 3, 6 bins)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    @staticmethod
    def _bins(size, bins: int, like: torch.Tensor) -> torch.Tensor:
        i = torch.arange(bins, device=like.device)
        start = torch.div(i * size, bins, rounding_mode='floor')
        end = torch.div((i + 1) * size + bins - 1, bins, rounding_mode='floor')
        pos = torch.arange(size, device=like.device)
        inside = (pos[None] >= start[:, None]) & (pos[None] < end[:, None])
        return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)  # (bins, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        h, w = (s if s is not None else d for s, d in zip(self.output_size, (H, W)))
        return torch.einsum('ih,nchw,jw->ncij', self._bins(H, h, x), x, self._bins(W, w, x))


def exportable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose modules ONNX cannot express for every input
    size are replaced by equivalent ones (:class:`AdaptiveAvgPool2dMatmul`
    for adaptive average pools to more than one bin)."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size not in (1, (1, 1)):
            parent, _, child = name.rpartition('.')
            setattr(model.get_submodule(parent) if parent else model, child,
                    AdaptiveAvgPool2dMatmul(module.output_size))
    return model



class DeployModel(nn.Module):
    """A toolbox model as the exported graph runs it: raw pixels (N, 3, H, W)
    float32 0..255 in the data preprocessor's input channel order -> the
    outputs listed in the module docstring (a tuple of tensors). Holds an
    :func:`exportable` copy of the model."""

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.model, self.task = exportable(model), task
        pre = model.data_preprocessor
        # mmseg: channel_conversion; mmdet/mmengine: _channel_conversion; mmpretrain: to_rgb
        swap = any(getattr(pre, a, False) for a in ('channel_conversion', '_channel_conversion', 'to_rgb'))
        self.register_buffer('channel_order', torch.tensor([2, 1, 0] if swap else [0, 1, 2]), persistent=False)
        normalize = getattr(pre, '_enable_normalize', False)
        self.register_buffer('mean', pre.mean.view(1, -1, 1, 1).float() if normalize else torch.zeros(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('std', pre.std.view(1, -1, 1, 1).float() if normalize else torch.ones(1, 3, 1, 1),
                             persistent=False)
        # mmdet pads the normalised batch to a multiple (its features and head outputs are of that size)
        self.pad_divisor = getattr(pre, 'pad_size_divisor', 1) if task == 'detection' else 1
        self.pad_value = float(getattr(pre, 'pad_value', 0))

    def output_names(self) -> list[str]:
        if self.task == 'segmentation':
            return ['seg_logits']
        if self.task == 'classification':
            return ['scores']
        levels = len(self._dense_head().prior_generator.strides)
        return [f'{kind}_{i}' for kind in ('cls_score', 'bbox_pred') for i in range(levels)]

    def _dense_head(self) -> nn.Module:
        return self.model.rpn_head if getattr(self.model, 'with_rpn', False) else self.model.bbox_head

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = (pixels.index_select(1, self.channel_order) - self.mean) / self.std
        if self.task == 'segmentation':
            logits = self.model.decode_head(self.model.extract_feat(x))
            return (F.interpolate(logits, size=pixels.shape[2:], mode='bilinear',
                                  align_corners=self.model.decode_head.align_corners),)
        if self.task == 'classification':
            return (F.softmax(self.model(x, mode='tensor'), dim=1),)
        if self.pad_divisor > 1:
            d = self.pad_divisor
            H, W = x.shape[-2:]
            x = F.pad(x, (0, (d - W % d) % d, 0, (d - H % d) % d), value=self.pad_value)
        cls_scores, bbox_preds = self._dense_head()(self.model.extract_feat(x))[:2]
        return (*cls_scores, *bbox_preds)


# -- export ----------------------------------------------------------------------


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how far onnxruntime's outputs are
    from eager PyTorch (max absolute difference per input shape)."""
    path: str
    task: str
    outputs: list[str]
    parity: dict[str, float] = field(default_factory=dict)  # 'NxCxHxW' -> max |ort - eager|

    def lines(self) -> list[str]:
        return [f'{self.path}: {self.task}, outputs {", ".join(self.outputs)}',
                *(f'  onnxruntime vs eager at {shape}: max abs diff {d:.2e}' for shape, d in self.parity.items())]


def default_size(cfg) -> tuple[int, int]:
    """The config's ``crop_size`` (segmentation), else 224 x 224."""
    crop = cfg.get('crop_size')
    return tuple(crop) if crop else (224, 224)


def export_model(model: nn.Module, task: str, out: str | os.PathLike, size: tuple[int, int] = (224, 224),
                 meta: dict | None = None, check_sizes: Sequence[tuple[int, int]] | None = None,
                 tolerance: float | None = 1e-4) -> ExportReport:
    """Export a built toolbox ``model`` (eval mode) for ``task`` to ``out``,
    traced at batch 2 and 32 px above ``size`` (H, W), then run it in
    onnxruntime at each of ``check_sizes`` (default: ``size`` and 32 px
    larger) against eager PyTorch.

    ``meta`` (JSON-serialisable: classes, palette) is stored in the ONNX
    model's metadata for :class:`OnnxPredictor`. Raises :class:`ExportError`
    naming the operator and module that cannot be exported, or the shape at
    which the outputs differ by more than ``tolerance`` (None: no limit);
    ``out`` is written only once the check passes (a refused export leaves
    no file, and an older ``out`` as it was)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # written beside ``out`` and renamed once checked: a refused export leaves no file
    tmp = out.with_name(f'.{out.name}.{os.getpid()}.tmp')
    try:
        report = _export_checked(model, task, tmp, size, meta, check_sizes, tolerance)
        os.replace(tmp, out)
    except ExportError as err:
        raise ExportError(f'{str(err).replace(str(tmp), str(out))}; {out} was not written') from err
    finally:
        tmp.unlink(missing_ok=True)
    report.path = str(out)
    return report


def _export_checked(model, task, out: Path, size, meta, check_sizes, tolerance) -> ExportReport:
    deploy = DeployModel(model.eval(), task).eval()
    names = deploy.output_names()
    H, W = size
    # traced 32 px above ``size``: a map at its pretraining size skips the bias or
    # position resampling, and a trace of that branch would hold at that size only
    example = _pixels((2, 3, H + 32, W + 32), seed=0)
    _trace_to_onnx(deploy, example, names, out)
    _set_metadata(out, dict(meta or {}, task=task, densekit_input='pixels (N, 3, H, W) float32 0-255, BGR'))
    report = ExportReport(str(out), task, names)
    sess = session(out)
    for i, (h, w) in enumerate(check_sizes or [size, (H + 32, W + 32)]):
        x = _pixels((1 + i % 2, 3, h, w), seed=1 + i)
        with torch.no_grad():
            ref = deploy(x)
        got = run_onnx(sess, x.numpy())
        diff = max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref))
        report.parity['x'.join(map(str, x.shape))] = diff
        if tolerance is not None and not diff <= tolerance:
            raise ExportError(f'{out}: onnxruntime differs from eager PyTorch by {diff:.2e} (> {tolerance}) at '
                              f'input {tuple(x.shape)}; the traced graph does not hold at this size')
    return report


def export_onnx(config: str, checkpoint: str | None, out: str | os.PathLike, size: tuple[int, int] | None = None,
                check_sizes: Sequence[tuple[int, int]] | None = None, tolerance: float | None = 1e-4,
                cfg_options: dict | None = None) -> ExportReport:
    """Build ``config``'s model, load ``checkpoint`` (which must fit it; None:
    random weights), export it to ``out`` and check it in onnxruntime
    (:func:`export_model`). ``size`` (H, W): the traced input, default the
    config's crop size or 224 x 224."""
    from .config import load_config
    from .inference import init_model
    cfg = load_config(config, cfg_options)
    predictor = init_model(cfg, checkpoint, 'cpu')
    meta = {}
    dataset_meta = getattr(predictor.model, 'dataset_meta', None) or {}
    if predictor.task == 'classification':  # the names that fit the head (init_model's choice)
        dataset_meta = {'classes': predictor.classifier.classes}
    for key in ('classes', 'palette'):
        if dataset_meta.get(key) is not None:
            meta[key] = [list(v) if isinstance(v, (list, tuple)) else v for v in dataset_meta[key]]
    if predictor.task == 'segmentation' and cfg.model.get('test_cfg', {}).get('mode') == 'slide':
        meta['note'] = 'whole-image inference (the config tests with a sliding window)'
    return export_model(predictor.model, predictor.task, out, tuple(size or default_size(cfg)), meta,
                        check_sizes, tolerance)


def _pixels(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 255


def _bicubic_antialias(g, input, output_size, align_corners, *scales):
    """``aten::_upsample_bicubic2d_aa`` (``F.interpolate(mode='bicubic',
    antialias=True)``: timm's position-embedding and LeViT's bias resampling)
    as ONNX Resize: PyTorch's antialiased cubic is PIL's (a = -0.5, taps outside
    the input dropped and the weights renormalised)."""
    from torch.onnx._internal.torchscript_exporter import symbolic_helper as sh
    align = sh._maybe_get_const(align_corners, 'b')
    lead = sh._slice_helper(g, g.op('Shape', input), axes=[0], starts=[0], ends=[2])
    sizes = g.op('Concat', lead, g.op('Cast', output_size, to_i=7), axis_i=0)  # 7: INT64
    empty = sh._optional_input_placeholder_tensor(g)
    return g.op('Resize', input, empty, empty, sizes, mode_s='cubic', cubic_coeff_a_f=-0.5, antialias_i=1,
                exclude_outside_i=1, coordinate_transformation_mode_s='align_corners' if align else 'half_pixel')


def register_symbolics() -> None:
    """Give the TorchScript-based exporter the conversions it lacks for our
    models (a global registration, made by the export functions)."""
    torch.onnx.register_custom_op_symbolic('aten::_upsample_bicubic2d_aa', _bicubic_antialias, OPSET)


def _trace_to_onnx(deploy: nn.Module, example: torch.Tensor, names: list[str], out) -> None:
    register_symbolics()
    axes = {'pixels': {0: 'batch', 2: 'height', 3: 'width'}, **{n: {0: 'batch'} for n in names}}
    if deploy.task == 'segmentation':
        axes['seg_logits'] = {0: 'batch', 2: 'height', 3: 'width'}
    try:
        # the exporter prints the whole graph when an operator has no conversion
        with torch.no_grad(), redirect_stdout(io.StringIO()):
            torch.onnx.export(deploy, (example,), str(out), dynamo=False, opset_version=OPSET,
                              input_names=['pixels'], output_names=names, dynamic_axes=axes)
    except torch.onnx.errors.OnnxExporterError as err:
        raise ExportError(_explain(deploy, example, err)) from err
    except RuntimeError as err:  # e.g. a Python autograd.Function without a symbolic
        raise ExportError(_explain(deploy, example, err)) from err


def _explain(deploy: nn.Module, example: torch.Tensor, err: Exception) -> str:
    """The operator in ``err`` and the module (and source line) that produced
    it, found in a plain trace of the same model."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    found = re.search(r"operator '([\w:.]+)'", text) or re.search(r'\b((?:aten|prim|onnx)::\w+)', text)
    op = found.group(1) if found else None
    where = 'an unknown module'
    if op:
        with torch.no_grad():
            graph = torch.jit.trace(deploy, (example,), check_trace=False).inlined_graph
        modules = dict(deploy.named_modules())
        for node in graph.nodes():
            if node.kind() == op or (op.startswith('prim::PythonOp') and node.kind() == 'prim::PythonOp'):
                scope = node.scopeName().split('/')[-1].removeprefix('__module.')
                module = modules.get(scope)
                source = next((line.strip() for line in node.sourceRange().splitlines()
                               if re.search(r'\(\d+\): ', line) and 'torch/nn/modules' not in line), '')
                where = (f'module {scope or "(top level)"} ({type(module).__name__ if module is not None else "?"})'
                         + (f' at {source}' if source else ''))
                break
    return (f'ONNX export failed: {text.rstrip(".")}; operator {op or "?"} comes from {where}. '
            'Fix: rewrite that module with supported operators or register a symbolic '
            '(torch.onnx.register_custom_op_symbolic)')


def _set_metadata(path, meta: dict) -> None:
    import onnx
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    onnx.save(model, str(path))


# -- onnxruntime ------------------------------------------------------------------


def session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session with all graph optimisations (BatchNorm
    folded into the convolutions, fused attention and GELU where matched)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=['CPUExecutionProvider'])


def check_pixels(pixels: np.ndarray, sess, source: str = 'input') -> None:
    """Raise a one-line ValueError unless ``pixels`` is (N, C, H, W) with the
    model's C."""
    expected = sess.get_inputs()[0].shape  # ['batch', 3, 'height', 'width']
    if pixels.ndim != 4 or pixels.shape[1] != expected[1]:
        raise ValueError(f'{source}: got an array of shape {tuple(pixels.shape)}; the ONNX model takes '
                         f'(N, {expected[1]}, H, W) float32 pixels (images: H x W x {expected[1]}, BGR)')


def run_onnx(path_or_session, pixels: np.ndarray) -> list[np.ndarray]:
    """The exported model's outputs for ``pixels`` (N, 3, H, W) float32 0..255."""
    sess = session(path_or_session) if isinstance(path_or_session, (str, os.PathLike)) else path_or_session
    check_pixels(pixels, sess)
    return sess.run(None, {'pixels': np.ascontiguousarray(pixels, dtype=np.float32)})


class OnnxPredictor:
    """An exported model with the config's test pipeline around it: the same
    results as :class:`densekit.inference.Predictor` (segmentation: a
    ``SegDataSample`` at the image size; classification: top-k)."""

    def __init__(self, config: str, onnx_path: str | os.PathLike):
        from .config import load_config, task_of
        self.cfg = load_config(config)
        self.task = task_of(self.cfg)
        self.path = str(onnx_path)
        if not Path(self.path).is_file():
            raise FileNotFoundError(f'ONNX model not found: {self.path}')
        self.sess = session(self.path)
        props = self.sess.get_modelmeta().custom_metadata_map
        exported = props.get('task')
        if exported != self.task:
            raise ValueError(f'{self.path}: exported for {exported!r}, but {config} is a {self.task} config; '
                             'give the config the model was exported from')
        if self.task == 'detection':
            raise ValueError(f'{self.path}: an exported detector outputs raw head tensors (no NMS in the graph); '
                             'run tools/infer.py with the checkpoint for boxes and masks')
        self.classes = json.loads(props['classes']) if 'classes' in props else None
        self.palette = json.loads(props['palette']) if 'palette' in props else None
        self.pipeline = self._pipeline()

    def _pipeline(self):
        from mmengine.dataset import Compose
        from mmengine.registry import DefaultScope
        cfg = self.cfg
        steps = [dict(s) for s in (cfg.get('test_pipeline') or cfg.test_dataloader.dataset.pipeline)]
        # arrays go in as 'img' (as mmseg's inference_model and mmpretrain's inferencer do)
        steps = [s for s in steps[1:] if s['type'] != 'LoadAnnotations']
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            return Compose(steps)

    def predict(self, image: np.ndarray, topk: int = 5, source: str = 'image') -> Any:
        """``image`` (H, W, 3) uint8 BGR -> a ``SegDataSample`` (``pred_sem_seg``
        1 x H x W, ``seg_logits``) or ``{'topk': [{'label', 'class', 'score'}, ...]}``."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, 'shape', type(image).__name__)
            raise ValueError(f'{source}: image of shape {shape}; the ONNX model takes H x W x 3 BGR images '
                             '(as cv2.imread reads them)')
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope(self.cfg.default_scope):
            data = self.pipeline(dict(img=image, img_shape=image.shape[:2], ori_shape=image.shape[:2]))
        pixels = data['inputs'][None].float().numpy()
        check_pixels(pixels, self.sess, source)
        out = self.sess.run(None, {'pixels': pixels})[0]
        if self.task == 'classification':
            scores = torch.from_numpy(out[0])
            values, labels = scores.topk(min(topk, scores.numel()))
            return {'topk': [{'label': int(i), 'class': self.classes[i] if self.classes else str(int(i)),
                              'score': float(v)} for v, i in zip(values, labels)]}
        return self._segmentation(out, data['data_samples'].metainfo, image.shape[:2])

    def _segmentation(self, logits: np.ndarray, meta: dict, size: tuple[int, int]):
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        align = self.cfg.model.decode_head.get('align_corners', False)
        # mmseg's postprocess_result: resize the logits to the original image, then argmax
        logits = F.interpolate(torch.from_numpy(logits), size=size, mode='bilinear', align_corners=align)[0]
        sample = SegDataSample(metainfo=dict(meta, ori_shape=size))
        sample.seg_logits = PixelData(data=logits)
        sample.pred_sem_seg = PixelData(data=logits.argmax(0, keepdim=True))
        return sample

    def draw(self, image: str, result: Any, out_file: str | os.PathLike, opacity: float = 0.5) -> None:
        """Write the segmentation overlay on ``image`` as a PNG."""
        import mmcv
        from mmseg.visualization import SegLocalVisualizer
        vis = SegLocalVisualizer.get_instance('densekit_onnx_seg')
        vis.alpha = opacity
        vis.set_dataset_meta(self.classes, [tuple(p) for p in self.palette] if self.palette else None)
        vis.add_datasample('result', mmcv.imread(image, channel_order='rgb'), result, draw_gt=False,
                           out_file=str(out_file))


def onnx_inference(config: str, onnx_path: str, images: Sequence[str | os.PathLike],
                   out_dir: str | os.PathLike | None = None, topk: int = 5, opacity: float = 0.5,
                   progress: bool = True, skipped: list | None = None) -> list[Any]:
    """:func:`densekit.inference.inference` for an exported model: the same
    files (``<image stem>.png`` overlays, ``topk.json``) and the same skipping
    of unreadable files, from onnxruntime."""
    from .inference import predict_files
    predictor = OnnxPredictor(config, onnx_path)
    return predict_files(images, lambda image, path: predictor.predict(image, topk, source=str(path)),
                         lambda path, result, out_file: predictor.draw(str(path), result, out_file, opacity),
                         predictor.task, out_dir, progress, skipped)
