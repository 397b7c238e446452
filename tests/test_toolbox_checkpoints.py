"""Whole-model checkpoints of the mmseg, mmdet and mmpretrain zoos in our configs.

For each published model we have a config for, the toolbox's own model is built
from the config shipped in its wheel (``<package>/.mim/configs/...``), given
perturbed random weights (the published files cannot be downloaded here) and
saved as the zoo publishes it (``{'meta', 'state_dict'}``). That file loads into
our config through ``densekit.inference.init_model``, and the outputs equal the
toolbox model's (<= 1e-4, fp32): logits for segmentation and classification;
backbone + neck features and the final detections for detection. The other
entry points (tools/test.py, tools/infer.py, ``load_from``,
tools/convert_checkpoint.py) are covered on one pair per task.

Widths and depths are reduced identically in both configs (the same
architecture with small tensors); one pair per toolbox also runs at full size,
every pair (and every reduced one) with ``DENSEKIT_ZOO_FULL=1`` (``-s`` prints
the differences).
"""
from __future__ import annotations

import copy
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from tests.helpers import ROOT, run_main
from densekit.inference import init_model

SCOPE_PACKAGE = {'mmseg': 'mmseg', 'mmdet': 'mmdet', 'mmpretrain': 'mmpretrain'}


@dataclass
class Pair:
    toolbox: str  # default scope: mmseg | mmdet | mmpretrain
    published: str  # config path under <package>/.mim/configs
    ours: str  # our config under configs/
    toolbox_model: dict = field(default_factory=dict)  # reduced: merged into the toolbox's model
    ours_model: dict = field(default_factory=dict)  # reduced: the same, in our names
    shared: dict = field(default_factory=dict)  # reduced: merged into both (necks, heads)
    size: int = 64
    always: dict = field(default_factory=dict)  # merged into both, at full size too
    full_size_input: int = 0  # input size at full size, when not ``size``


def _swin(embed, depths, heads, window=7):
    """Reduced Swin: the toolbox's argument names, ours, and the head widths."""
    widths = [embed * 2 ** i for i in range(4)]
    heads_cfg = dict(decode_head=dict(in_channels=widths, channels=16), auxiliary_head=dict(in_channels=widths[2],
                                                                                            channels=8))
    return (dict(backbone=dict(embed_dims=embed, depths=list(depths), num_heads=list(heads), window_size=window)),
            dict(backbone=dict(arch=dict(_delete_=True, embed_dims=embed, depths=tuple(depths), num_heads=tuple(heads)),
                               window_size=window)),
            widths, heads_cfg)


# mmseg's and mmdet's Swin shift windows on maps no larger than the window,
# which the official Swin (and ours) does not: at 256 (window 7) or 416
# (window 12) the last map is larger, as at the published test sizes.
def _seg_swin(published, ours, depths, window=7, size=256):
    tb, ob, _, heads = _swin(16, depths, (1, 2, 2, 4), window)
    return Pair('mmseg', published, ours, tb, ob, heads, size)


def _det_swin(published, ours, depths, retina=False):
    tb, ob, widths, _ = _swin(16, depths, (1, 2, 2, 4))
    if retina:
        necks = dict(neck=dict(in_channels=widths[1:], out_channels=16),
                     bbox_head=dict(in_channels=16, feat_channels=16))
        always = dict(test_cfg=dict(score_thr=0.0, max_per_img=20))  # random weights score low
    else:
        necks = dict(neck=dict(in_channels=widths, out_channels=16),
                     rpn_head=dict(in_channels=16, feat_channels=16),
                     roi_head=dict(bbox_roi_extractor=dict(out_channels=16),
                                   bbox_head=dict(in_channels=16, fc_out_channels=32),
                                   mask_roi_extractor=dict(out_channels=16),
                                   mask_head=dict(in_channels=16, conv_out_channels=16)))
        always = dict(test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img=20)))  # random weights score low
    return Pair('mmdet', published, ours, tb, ob, necks, 256, always)


SWIN_SEG = 'swin/swin-{}-patch4-window{}-in1k{}-pre_upernet_8xb2-160k_ade20k-512x512.py'
SWIN_DET = 'swin/{}_coco.py'
VIT_MM = dict(backbone=dict(embed_dims=32, num_layers=4, num_heads=2, out_indices=(0, 1, 2, 3)))
VIT_OURS = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=32, depth=4, num_heads=2), out_indices=(0, 1, 2, 3)))
VIT_HEADS = dict(neck=dict(in_channels=[32] * 4, out_channels=32),
                 decode_head=dict(in_channels=[32] * 4, channels=16), auxiliary_head=dict(in_channels=32, channels=8))

PAIRS = {
    # mmseg UPerNet
    'upernet-swin-t': _seg_swin(SWIN_SEG.format('tiny', 7, '', ''), 'upernet_swin_ade20k.py', (2, 2, 2, 2)),
    'upernet-swin-s': _seg_swin(SWIN_SEG.format('small', 7, '', ''), 'swin/upernet_swin-s_160k_ade20k.py',
                                (1, 1, 3, 1)),
    'upernet-swin-b': _seg_swin(SWIN_SEG.format('base', 7, '', ''), 'swin/upernet_swin-b_160k_ade20k.py', (1, 1, 2, 1)),
    'upernet-swin-b-w12': _seg_swin(SWIN_SEG.format('base', 12, '-384x384', ''),
                                    'swin/upernet_swin-b-w12_160k_ade20k.py',
                                    (1, 1, 2, 1), window=12, size=416),
    'upernet-vit-b16-mln': Pair('mmseg', 'vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py',
                                'vit/upernet_vit-b16-mln_160k_ade20k.py', VIT_MM, VIT_OURS, VIT_HEADS, 80),
    'upernet-vit-b16-ln-mln': Pair('mmseg', 'vit/vit_vit-b16-ln_mln_upernet_8xb2-160k_ade20k-512x512.py',
                                   'vit/upernet_vit-b16-ln-mln_160k_ade20k.py', VIT_MM, VIT_OURS, VIT_HEADS, 80),
    # DeiT-B differs from ViT-B in its pretraining only
    'upernet-deit-b16-mln': Pair('mmseg', 'vit/vit_deit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py',
                                 'vit/upernet_vit-b16-mln_160k_ade20k.py', VIT_MM, VIT_OURS, VIT_HEADS, 80),
    'upernet-deit-b16-ln-mln': Pair('mmseg', 'vit/vit_deit-b16-ln_mln_upernet_8xb2-160k_ade20k-512x512.py',
                                    'vit/upernet_vit-b16-ln-mln_160k_ade20k.py', VIT_MM, VIT_OURS, VIT_HEADS, 80),
    # mmdet
    'mask-rcnn-swin-t-1x': _det_swin(SWIN_DET.format('mask-rcnn_swin-t-p4-w7_fpn_1x'),
                                     'swin/mask-rcnn_swin-t_fpn_1x_coco.py', (1, 1, 2, 1)),
    'mask-rcnn-swin-t-ms-3x': _det_swin(SWIN_DET.format('mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x'),
                                        'swin/mask-rcnn_swin-t_fpn_ms-3x_coco.py', (1, 1, 2, 1)),
    'mask-rcnn-swin-s-ms-3x': _det_swin(SWIN_DET.format('mask-rcnn_swin-s-p4-w7_fpn_amp-ms-crop-3x'),
                                        'swin/mask-rcnn_swin-s_fpn_ms-3x_coco.py', (1, 1, 3, 1)),
    'retinanet-swin-t': _det_swin(SWIN_DET.format('retinanet_swin-t-p4-w7_fpn_1x'),
                                  'swin/retinanet_swin-t_fpn_1x_coco.py', (1, 1, 2, 1), retina=True),
}
for variant, depths in (('tiny', (1, 1, 2, 1)), ('small', (1, 1, 3, 1)), ('base', (1, 1, 2, 1))):
    PAIRS[f'swin-{variant[0]}-in1k'] = Pair(
        'mmpretrain', f'swin_transformer/swin-{variant}_16xb64_in1k.py', f'swin/swin-{variant[0]}_300e_imagenet.py',
        dict(backbone=dict(arch=dict(_delete_=True, embed_dims=16, depths=list(depths), num_heads=[1, 2, 2, 4]))),
        dict(backbone=dict(arch=dict(_delete_=True, embed_dims=16, depths=depths, num_heads=(1, 2, 2, 4)))),
        dict(head=dict(in_channels=128, num_classes=10)), 224)  # small maps: windows shrink as in Swin's
PAIRS['vit-b16-in1k'] = Pair(
    'mmpretrain', 'vision_transformer/vit-base-p16_32xb128-mae_in1k.py', 'vit/vit-b16_300e_imagenet.py',
    dict(backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=128))),
    dict(backbone=dict(arch=dict(_delete_=True, embed_dims=32, depth=3, num_heads=2))),
    dict(head=dict(in_channels=32, num_classes=10)), 224)  # the position grid it was trained at
for arch in ('128s', '128', '192', '256', '384'):  # published widths, at 64x64 (bias tables built for it)
    PAIRS[f'levit-{arch}-in1k'] = Pair('mmpretrain', f'levit/levit-{arch}_8xb256_in1k.py', f'levit/levit-{arch}_1000e_imagenet.py',
                                       dict(backbone=dict(img_size=64)), dict(backbone=dict(img_size=64)),
                                       dict(head=dict(num_classes=10)), 64, full_size_input=224)
for arch in ('768-32', '1024-20', '1536-20'):
    embed, depth, patch, kernel, act = {'768-32': (16, 3, 7, 7, 'relu'), '1024-20': (24, 2, 14, 9, 'gelu'),
                                        '1536-20': (32, 2, 7, 9, 'gelu')}[arch]
    PAIRS[f'convmixer-{arch}-in1k'] = Pair(
        'mmpretrain', f'convmixer/convmixer-{arch}_10xb64_in1k.py', f'convmixer/convmixer-{arch}_150e_imagenet.py',
        dict(backbone=dict(arch=dict(_delete_=True, embed_dims=embed, depth=depth, patch_size=patch,
                                     kernel_size=kernel))),
        dict(backbone=dict(arch=dict(_delete_=True, dim=embed, depth=depth, patch_size=patch, kernel_size=kernel,
                                     act=act))),
        dict(head=dict(in_channels=embed, num_classes=10)), 56)
ALL = os.environ.get('DENSEKIT_ZOO_FULL') == '1'
FULL_SIZE = set(PAIRS) if ALL else {'upernet-swin-t', 'mask-rcnn-swin-t-1x', 'swin-t-in1k'}
# LeViT-128/192/256 run the code of LeViT-128S and -384 at other widths (published
# widths: the slowest reduced pairs): with DENSEKIT_ZOO_FULL=1 only
REDUCED = set(PAIRS) if ALL else set(PAIRS) - {'levit-128-in1k', 'levit-192-in1k', 'levit-256-in1k'}


def _published_config(pair: Pair) -> str:
    package = importlib.import_module(SCOPE_PACKAGE[pair.toolbox])
    return str(Path(package.__file__).parent / '.mim' / 'configs' / pair.published)


def _without_syncbn(node):
    # SyncBN needs a process group only in training; BN holds the same tensors
    if isinstance(node, dict):
        return {k: 'BN' if k == 'type' and v == 'SyncBN' else _without_syncbn(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_without_syncbn(v) for v in node)
    return node


def _config(path: str, *parts: dict) -> Config:
    cfg = Config.fromfile(path)
    for part in parts:
        cfg.merge_from_dict({'model': copy.deepcopy(part)})  # merging pops _delete_ from it
    cfg.model = _without_syncbn(cfg.model.to_dict())
    cfg.model.pop('pretrained', None)
    cfg.model.backbone.pop('init_cfg', None)
    cfg.model.get('backbone', {}).pop('pretrained', None)
    return cfg


def _perturbed_state(model: torch.nn.Module) -> dict:
    """Every floating tensor moved off its init (norms off 1/0, BN statistics
    off 0/1), so that a weight dropped or misplaced shows in the outputs.
    Random weights keep their scale (noise of half their spread), so that the
    activations stay as large as a trained model's, not larger."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            spread = value.std().item() if value.numel() > 1 else 0.
            value = value + (0.5 * spread if spread > 0 else 0.05) * torch.randn(value.shape, generator=gen)
            value = value.abs() + 0.5 if key.endswith('running_var') else value
        state[key] = value
    return state


def toolbox_checkpoint(pair: Pair, path: Path, full: bool = False) -> torch.nn.Module:
    """Build the toolbox's model of ``pair``, perturb it, save it to ``path`` as its zoo does; return it."""
    from mmengine.registry import MODELS, init_default_scope
    cfg = _config(_published_config(pair), *([] if full else [pair.toolbox_model, pair.shared]), pair.always)
    init_default_scope(pair.toolbox)
    with DefaultScope.overwrite_default_scope(pair.toolbox):
        model = MODELS.build(cfg.model)
    model.load_state_dict(_perturbed_state(model))
    model.cfg = cfg  # what the toolbox's inference API reads its test pipeline from
    torch.save({'meta': {f'{pair.toolbox}_version': 'zoo', 'config': cfg.pretty_text},
                'state_dict': model.state_dict()}, path)
    return model.eval()


def our_config(pair: Pair, full: bool = False) -> Config:
    return _config(str(ROOT / 'configs' / pair.ours), *([] if full else [pair.ours_model, pair.shared]), pair.always)


def _input(pair: Pair, full: bool = False) -> torch.Tensor:
    size = pair.full_size_input or pair.size if full else pair.size
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))


def _det_samples(x: torch.Tensor) -> list:
    from mmdet.structures import DetDataSample
    h, w = x.shape[-2:]
    return [DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                        batch_input_shape=(h, w), scale_factor=(1., 1.)))]


def max_difference(pair: Pair, ref: torch.nn.Module, ours: torch.nn.Module, full: bool = False) -> dict[str, float]:
    """Largest difference of the outputs, per kind: logits absolute; detection
    features relative to each map's largest value (if above 1), boxes in
    image widths, scores absolute, masks the share of pixels that differ
    (the same detections, labels and order are asserted)."""
    x = _input(pair, full)
    with torch.no_grad():
        if pair.toolbox != 'mmdet':
            return {'logits': (ref(x, mode='tensor') - ours(x, mode='tensor')).abs().max().item()}
        # relative to the largest value of each map: FPN maps of random weights run large
        diffs = {'features': max(((a - b).abs().max() / a.abs().max().clamp(min=1)).item()
                                 for a, b in zip(ref.extract_feat(x), ours.extract_feat(x)))}
        a = ref.predict(x, _det_samples(x), rescale=False)[0].pred_instances
        b = ours.predict(x, _det_samples(x), rescale=False)[0].pred_instances
    assert len(a) == len(b) and len(a) > 0 and torch.equal(a.labels, b.labels)
    diffs['boxes'] = (a.bboxes - b.bboxes).abs().max().item() / x.shape[-1]  # in image widths
    diffs['scores'] = (a.scores - b.scores).abs().max().item()
    if 'masks' in a:
        diffs['masks'] = (a.masks.float() - b.masks.float()).abs().mean().item()  # binary: share that differs
    return diffs


def check_pair(pair: Pair, tmp_path: Path, full: bool = False) -> dict[str, float]:
    path = tmp_path / 'zoo.pth'
    ref = toolbox_checkpoint(pair, path, full)
    ours = init_model(our_config(pair, full), str(path)).model
    diffs = max_difference(pair, ref, ours, full)
    size = _input(pair, full).shape[-1]
    print(f'{pair.published} -> configs/{pair.ours} ({"full size" if full else "reduced"}, '
          f'{size}x{size}): ' + ', '.join(f'{k} {v:.1e}' for k, v in diffs.items()))
    limits = {'masks': 1e-3}
    assert all(v <= limits.get(k, 1e-4) for k, v in diffs.items()), diffs
    return diffs


@pytest.mark.parametrize('name', sorted(REDUCED))
def test_zoo_checkpoint_gives_the_toolbox_outputs(name, tmp_path):
    check_pair(PAIRS[name], tmp_path)


@pytest.mark.parametrize('name', sorted(FULL_SIZE))
def test_zoo_checkpoint_full_size(name, tmp_path):
    check_pair(PAIRS[name], tmp_path, full=True)


# -- the other entry points, on the reduced UPerNet Swin-T -------------------------

def _config_file(pair: Pair, tmp_path: Path) -> Path:
    """Our config of ``pair``, reduced, as a file the tools can read."""
    path = tmp_path / f'reduced_{pair.ours}'
    path.write_text(f"_base_ = [{str(ROOT / 'configs' / pair.ours)!r}]\n"
                    f'model = {dict(**pair.ours_model, **pair.shared)!r}\n'
                    'test_dataloader = dict(num_workers=0, persistent_workers=False)\n'
                    'val_dataloader = dict(num_workers=0, persistent_workers=False)\n')
    return path


@pytest.fixture(scope='module')
def seg_zoo(tmp_path_factory):
    """(pair, zoo checkpoint path, the toolbox's model on it, our reduced config file)."""
    tmp = tmp_path_factory.mktemp('zoo')
    pair = PAIRS['upernet-swin-t']
    ref = toolbox_checkpoint(pair, tmp / 'upernet_swin_zoo.pth')
    return pair, tmp / 'upernet_swin_zoo.pth', ref, _config_file(pair, tmp)


def test_tools_test_evaluates_a_zoo_checkpoint(seg_zoo, synthetic_ade, capsys):
    """tools/test.py loads it strictly (a weight that did not fit would fail)."""
    _, ckpt, _, config = seg_zoo
    out, _ = run_main(capsys, 'test', str(config), str(ckpt), '--work-dir', str(ckpt.parent / 'work'),
                      '--cfg-options', f'data_root={synthetic_ade}')
    assert 'mIoU' in out


def test_tools_infer_predicts_as_the_toolbox(seg_zoo, synthetic_ade, capsys, tmp_path):
    """tools/infer.py writes its overlay; the prediction through our config
    is the toolbox's (its model, its own config's test pipeline), pixel for pixel."""
    from mmseg.apis import inference_model
    _, ckpt, ref, config = seg_zoo
    image = sorted((synthetic_ade / 'images' / 'validation').iterdir())[0]
    run_main(capsys, 'infer', str(config), str(ckpt), str(image), '--out', str(tmp_path))
    assert (tmp_path / f'{image.stem}.png').is_file()
    ours = init_model(str(config), str(ckpt)).predict(str(image))
    with DefaultScope.overwrite_default_scope('mmseg'):
        expected = inference_model(ref, str(image))
    assert torch.equal(ours.pred_sem_seg.data, expected.pred_sem_seg.data)


def test_load_from_fine_tunes_from_a_zoo_checkpoint(seg_zoo, tmp_path):
    """``load_from`` (mmengine's Runner, as tools/train.py runs it) converts it too."""
    from mmengine.runner import Runner
    pair, ckpt, ref, config = seg_zoo
    cfg = Config.fromfile(str(config))
    cfg.model = _without_syncbn(cfg.model.to_dict())
    cfg.model['backbone'].pop('init_cfg', None)
    cfg.update(load_from=str(ckpt), work_dir=str(tmp_path))
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    assert max_difference(pair, ref, runner.model.eval())['logits'] <= 1e-4


def test_convert_checkpoint_writes_the_whole_model_in_our_layout(seg_zoo, capsys, tmp_path):
    pair, ckpt, ref, config = seg_zoo
    out, _ = run_main(capsys, 'convert_checkpoint', str(config), str(ckpt), str(tmp_path / 'ours.pth'))
    assert 'wrote' in out
    converted = torch.load(tmp_path / 'ours.pth', weights_only=True)
    ours = init_model(str(config), str(tmp_path / 'ours.pth')).model
    assert set(converted['state_dict']) == set(ours.state_dict())
    assert max_difference(pair, ref, ours)['logits'] <= 1e-4


def test_mae_pretrained_encoder_gives_the_toolbox_features(tmp_path):
    """mmpretrain's MAE pretraining checkpoint (mae_vit-base-p16_8xb512-amp-coslr-300e_in1k,
    reduced): its encoder loads into our MAEViT (``prefix='backbone.'``, decoder
    and neck ignored) and gives mmpretrain's unmasked features after the final norm."""
    from densekit.backbones.mae import MAEViT
    pair = Pair('mmpretrain', 'mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py', '',
                dict(backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=3, num_heads=2,
                                             feedforward_channels=128)),
                     neck=dict(embed_dim=32, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)))
    ref = toolbox_checkpoint(pair, tmp_path / 'mae.pth').backbone
    ours = MAEViT(dict(embed_dims=32, depth=3, num_heads=2), out_indices=(2,), out_norm='last',
                  init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'mae.pth'), prefix='backbone.'))
    ours.init_weights()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens = ref(x, mask=None)[-1][:, 1:]  # (B, 1 + N, C) 'raw' tokens, class token first
        ours_map = ours.eval()(x)[-1]
    assert (ours_map.flatten(2).transpose(1, 2) - tokens).abs().max() <= 1e-4


def test_checkpoint_of_another_variant_says_so(seg_zoo, tmp_path):
    """A zoo checkpoint of (reduced) Swin-S in the (reduced) Swin-T config: the
    first line of the error says it is another variant, and which."""
    _, _, _, config = seg_zoo
    small = _seg_swin(SWIN_SEG.format('small', 7, '', ''), 'swin/upernet_swin-s_160k_ade20k.py', (2, 2, 4, 2))
    toolbox_checkpoint(small, tmp_path / 'swin_s.pth')
    with pytest.raises(ValueError, match=r'swin_s.pth does not fit the model of .*: the checkpoint is another '
                       r'variant of SwinTransformer: blocks per stage \(2, 2, 4, 2\), the config has \(2, 2, 2, 2\):'):
        init_model(str(config), str(tmp_path / 'swin_s.pth'))
