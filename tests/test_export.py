"""ONNX export (densekit/export.py, tools/export.py), run in onnxruntime.

For a tiny instance of every family's shipped segmentation and classification
config (the shipped config with a small backbone arch and small heads), the
exported graph fed raw BGR pixels gives, in onnxruntime, what the toolbox's
own ``test_step`` (its data preprocessor included) gives in eager PyTorch, at
two input sizes within 1e-4; a detector's backbone + neck + RPN outputs
likewise. Then the ONNX path of tools/infer.py, and the errors for a module
that cannot be exported and for pixels of the wrong shape."""
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from tests.helpers import ROOT, TINY_SEG, perturb, run_tool

import densekit  # noqa: F401  (registries)

ort = pytest.importorskip('onnxruntime')

from densekit.export import ExportError, OnnxPredictor, export_model, run_onnx  # noqa: E402

CONFIGS = ROOT / 'configs'
SIZES = [(64, 64), (96, 80)]

# family -> (segmentation config, classification config or None, tiny backbone
# settings, segmentation-only backbone/neck settings)
TINY = {
    'swin': ('upernet_swin_ade20k', 'swin/swin-t_300e_imagenet',
             dict(arch=dict(embed_dims=16, depths=(2, 1, 1, 1), num_heads=(1, 2, 2, 4))), {}),
    'vit': ('vit/upernet_vit-b16_160k_ade20k', 'vit/vit-b16_300e_imagenet',
            dict(arch=dict(embed_dims=32, depth=4, num_heads=2)),
            dict(backbone=dict(out_indices=(0, 1, 2, 3)), neck=dict(in_channels=32, out_channels=32))),
    # MAE has no classification config: its fine-tuned classifier is ViT's
    'mae': ('mae/upernet_mae-vit-b16_100e_ade20k', None, dict(arch=dict(embed_dims=32, depth=4, num_heads=2)),
            dict(backbone=dict(out_indices=(0, 1, 2, 3)), neck=dict(in_channels=32))),
    'vitae': ('vitae/upernet_vitae-s_160k_ade20k', 'vitae/vitae-t_300e_imagenet',
              dict(arch=dict(embed_dims=(8, 8, 16), token_dims=(8, 16, 32), depth=1, num_heads=2, mlp_ratio=2.,
                             group=4)), {}),
    'levit': ('levit/upernet_levit-256_160k_ade20k', 'levit/levit-128s_1000e_imagenet',
              dict(arch=dict(embed_dims=(32, 48, 64), key_dim=8, num_heads=(2, 3, 4), depths=(1, 1, 1))), {}),
    'coatnet': ('coatnet/upernet_coatnet-0_160k_ade20k', 'coatnet/coatnet-0_300e_imagenet',
                dict(arch=dict(stem_width=16, embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1)),
                     pretrain_img_size=32), {}),
    'convmixer': ('convmixer/upernet_convmixer-1536-20_160k_ade20k', 'convmixer/convmixer-768-32_150e_imagenet',
                  dict(arch=dict(dim=16, depth=4, kernel_size=5, patch_size=7, act='gelu')),
                  dict(backbone=dict(out_indices=(0, 1, 2, 3)), neck=dict(in_channels=16, out_channels=16))),
}


def _channels(cfg: Config, size=(64, 64)) -> list[int]:
    """Channels of each map the backbone (+ neck) of ``cfg.model`` returns."""
    torch.manual_seed(0)
    backbone = MODELS.build(cfg.model.backbone)
    neck = MODELS.build(cfg.model.neck) if cfg.model.get('neck') else None
    with torch.no_grad():
        outs = backbone.eval()(torch.zeros(1, 3, *size))
        outs = neck.eval()(outs) if neck is not None else outs
    return [o.shape[1] for o in (outs if isinstance(outs, (tuple, list)) else [outs])]


def tiny_model(family: str, task: str) -> tuple[torch.nn.Module, Config]:
    """The family's shipped config with the tiny backbone and small heads,
    built with non-trivial weights and BatchNorm statistics, in eval mode."""
    seg, cls, backbone, seg_extra = TINY[family]
    cfg = Config.fromfile(str(CONFIGS / f'{seg if task == "segmentation" else cls}.py'))
    cfg.model.backbone.update(backbone, init_cfg=None)
    for key in ('drop_path_rate', 'drop_rate'):
        if key in cfg.model.backbone:
            cfg.model.backbone[key] = 0.
    if task == 'segmentation':
        cfg.model.backbone.update(seg_extra.get('backbone', {}))
        if 'neck' in seg_extra:
            cfg.model.neck.update(seg_extra['neck'])
        for key in ('norm_cfg',):
            cfg.model.decode_head[key] = cfg.model.auxiliary_head[key] = dict(type='BN', requires_grad=True)
        if cfg.model.get('neck', {}).get('norm_cfg'):
            cfg.model.neck.norm_cfg = dict(type='BN', requires_grad=True)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        chans = _channels(cfg)
        if task == 'segmentation':
            cfg.model.decode_head.update(in_channels=chans, channels=16, num_classes=5)
            aux = cfg.model.auxiliary_head
            aux.update(in_channels=chans[aux.in_index], channels=8, num_classes=5)
        else:
            cfg.model.head.update(in_channels=chans[-1], num_classes=10)
            if 'hidden_channels' in cfg.model.head:
                cfg.model.head.hidden_channels = 16
            cfg.model.pop('teacher', None)
        model = MODELS.build(cfg.model)
    perturb(model)
    return model.eval(), cfg


def _image(size, seed) -> torch.Tensor:
    return torch.randint(0, 256, (3, *size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _eager(model, cfg, task: str, image: torch.Tensor) -> np.ndarray:
    """The toolbox's test_step on one BGR uint8 image (3, H, W): segmentation
    logits (classes, H, W) or classification scores (classes,)."""
    H, W = image.shape[1:]
    with DefaultScope.overwrite_default_scope(cfg.default_scope), torch.no_grad():
        if task == 'segmentation':
            from mmseg.structures import SegDataSample
            meta = dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W), padding_size=[0, 0, 0, 0])
            out = model.test_step(dict(inputs=[image], data_samples=[SegDataSample(metainfo=meta)]))[0]
            return out.seg_logits.data.numpy()
        return model.test_step(dict(inputs=[image], data_samples=None))[0].pred_score.numpy()


CASES = [(f, t) for f in TINY for t in ('segmentation', 'classification') if t == 'segmentation' or TINY[f][1]]


@pytest.mark.parametrize('family,task', CASES, ids=[f'{f}-{t[:3]}' for f, t in CASES])
def test_onnxruntime_matches_the_toolbox_at_two_sizes(family, task, tmp_path):
    model, cfg = tiny_model(family, task)
    path = tmp_path / f'{family}.onnx'
    report = export_model(model, task, path, size=SIZES[0], check_sizes=SIZES)
    assert max(report.parity.values()) <= 1e-4, report.parity
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    for i, size in enumerate(SIZES):
        image = _image(size, seed=10 + i)
        ref = _eager(model, cfg, task, image)
        got = run_onnx(sess, image[None].float().numpy())[0][0]
        assert got.shape == ref.shape, (got.shape, ref.shape)
        assert np.abs(got - ref).max() <= 1e-4, (size, np.abs(got - ref).max())


def test_detector_backbone_neck_and_rpn_outputs_match(tmp_path):
    cfg = Config.fromfile(str(ROOT / 'tests' / 'data' / 'tiny_mask-rcnn_swin.py'))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model).eval()
        report = export_model(model, 'detection', tmp_path / 'det.onnx', size=SIZES[0], check_sizes=SIZES)
        assert report.outputs[0] == 'cls_score_0' and len(report.outputs) == 10
        image = _image(SIZES[1], seed=3)
        with torch.no_grad():
            data = model.data_preprocessor(dict(inputs=[image], data_samples=None), False)
            cls_scores, bbox_preds = model.rpn_head(model.extract_feat(data['inputs']))
    got = run_onnx(str(tmp_path / 'det.onnx'), image[None].float().numpy())
    for g, r in zip(got, [*cls_scores, *bbox_preds]):
        assert np.abs(g - r.numpy()).max() <= 1e-4


def test_swin_map_that_fits_one_window_at_the_checked_size(tmp_path, monkeypatch):
    """Swin leaves a map that fits in one window unshifted (a branch on the
    size): with window 4, stage 3's map is 4 x 4 at 64 px (unshifted) but 6 x 6
    at the traced 96 px (shifted); one graph must hold at both, as the demo's
    window 4 at 128 px does. Stage 3 has a shifted (second) block."""
    seg, cls, _, extra = TINY['swin']
    backbone = dict(arch=dict(embed_dims=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4)), window_size=4)
    monkeypatch.setitem(TINY, 'swin', (seg, cls, backbone, extra))
    model, _ = tiny_model('swin', 'segmentation')
    report = export_model(model, 'segmentation', tmp_path / 'swin.onnx', size=(64, 64))
    assert max(report.parity.values()) <= 1e-4, report.parity


def test_refused_export_leaves_no_file(tmp_path):
    model, _ = tiny_model('convmixer', 'classification')
    out = tmp_path / 'm.onnx'
    with pytest.raises(ExportError, match=f'{out} was not written'):
        export_model(model, 'classification', out, size=SIZES[0], tolerance=-1.0)  # refuses any difference
    assert list(tmp_path.iterdir()) == []


class _Unexportable(torch.nn.Module):
    def forward(self, x):
        return (torch.linalg.svd(x[-1].flatten(2))[1],)


def test_unexportable_module_is_named_with_its_operator(tmp_path):
    model, _ = tiny_model('convmixer', 'classification')
    model.neck = _Unexportable()  # last map (N, C, H, W) -> its singular values (N, C)
    with pytest.raises(ExportError) as err:
        export_model(model, 'classification', tmp_path / 'bad.onnx', size=SIZES[0])
    msg = str(err.value)
    assert 'aten::linalg_svd' in msg and 'module model.neck (_Unexportable)' in msg, msg
    assert '\n' not in msg


def test_infer_onnx_path_gives_the_checkpoint_results(tmp_path):
    """tools/infer.py with the .onnx of a tiny segmentor: the same overlay
    file and the same predicted classes as the checkpoint path."""
    from mmseg.apis import init_model

    from densekit.config import load_config
    from densekit.export import export_onnx
    from densekit.inference import inference
    cfg = load_config(str(TINY_SEG))
    model = init_model(cfg, device='cpu')
    ckpt = tmp_path / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    images = tmp_path / 'images'
    images.mkdir()
    import cv2
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / 'a.png'), rng.integers(0, 256, (70, 90, 3), dtype=np.uint8))
    onnx_path = tmp_path / 'tiny.onnx'
    export_onnx(str(TINY_SEG), str(ckpt), onnx_path)
    ref = inference(str(TINY_SEG), str(ckpt), [images], progress=False)[0]
    got = OnnxPredictor(str(TINY_SEG), onnx_path).predict(cv2.imread(str(images / 'a.png')))
    assert torch.equal(got.pred_sem_seg.data, ref.pred_sem_seg.data)
    assert np.abs(got.seg_logits.data.numpy() - ref.seg_logits.data.numpy()).max() <= 1e-4
    proc = run_tool('infer', str(TINY_SEG), str(onnx_path), str(images), '--out', str(tmp_path / 'out'))
    assert (tmp_path / 'out' / 'a.png').is_file(), proc.stdout


def test_wrong_channels_or_rank_get_one_line(tmp_path):
    model, cfg = tiny_model('convmixer', 'classification')
    path = tmp_path / 'm.onnx'
    export_model(model, 'classification', path, size=SIZES[0])
    for bad in (np.zeros((1, 4, 64, 64), np.float32), np.zeros((3, 64, 64), np.float32)):
        with pytest.raises(ValueError, match=r'the ONNX model takes \(N, 3, H, W\)') as err:
            run_onnx(str(path), bad)
        assert '\n' not in str(err.value)
    config = tmp_path / 'cls.py'
    config.write_text(cfg.pretty_text)
    predictor = OnnxPredictor(str(config), path)
    with pytest.raises(ValueError, match=r'image of shape \(64, 64, 4\); the ONNX model takes H x W x 3'):
        predictor.predict(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match=r'image of shape \(64, 64\)'):
        predictor.predict(np.zeros((64, 64), np.uint8))
    top = predictor.predict(np.zeros((64, 64, 3), np.uint8), topk=3)['topk']
    assert len(top) == 3 and json.dumps(top)
