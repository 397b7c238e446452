"""ViTDet-style attention in our ViT / MAE-ViT (window_size, global_attn_indexes,
use_rel_pos): parity with timm's SAM image encoder (the same design) on the
same weights, MAE checkpoints load into it, bad input, training, the config."""
from functools import partial
from pathlib import Path

import pytest
import torch
from timm.models.vision_transformer_sam import VisionTransformerSAM
from torch import nn

from densekit.backbones.mae import MAEViT
from densekit.backbones.vit import VisionTransformer
from tests.helpers import assert_checkpointing_matches

ROOT = Path(__file__).resolve().parents[2]
ARCH = dict(embed_dims=64, depth=4, num_heads=2)
WINDOWED = dict(window_size=4, global_attn_indexes=(1, 3), use_rel_pos=True)
ALL = (0, 1, 2, 3)


def _sam(img_size: int, window_size: int = 4, global_attn_indexes=(1, 3), use_rel_pos: bool = True):
    """timm's SAM image encoder at ARCH's widths, its random weights perturbed
    so that no norm, bias or relative position table is trivial."""
    torch.manual_seed(0)
    ref = VisionTransformerSAM(img_size=img_size, patch_size=16, embed_dim=64, depth=4, num_heads=2,
                               window_size=window_size, global_attn_indexes=global_attn_indexes,
                               use_rel_pos=use_rel_pos, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                               num_classes=0)
    for name, p in ref.named_parameters():
        p.data.add_(torch.randn_like(p) * (0.1 if 'rel_pos' in name else 0.02))
    return ref.eval()


def _trunk(ref: VisionTransformerSAM, x: torch.Tensor) -> list[torch.Tensor]:
    """SAM's block outputs as (B, C, h, w), before its neck (which ours lacks)."""
    return ref.forward_intermediates(x, indices=list(ALL), intermediates_only=True)


def _ours_from(ref: VisionTransformerSAM, img_size: int, **kwargs) -> VisionTransformer:
    ours = VisionTransformer(ARCH, img_size=img_size, out_indices=ALL, **kwargs).eval()
    report = ours.load_pretrained_state(ref.state_dict())
    assert not report.missing and not report.unexpected and not report.expected, report
    assert all(k.startswith('neck.') for k in report.ignored), report.ignored  # SAM's neck
    return ours


@pytest.mark.parametrize('img_size, size, window, global_blocks', [
    (64, (64, 64), 4, (1, 3)),   # a 4x4 map: windows divide it
    (80, (80, 80), 4, (1, 3)),   # a 5x5 map, padded to 8x8 in the window blocks
    (64, (96, 80), 4, (1, 3)),   # another size than built: position embedding and global tables resampled
    (64, (64, 64), 0, ()),       # global attention everywhere, relative position bias (SAM without windows)
], ids=['divides', 'pads', 'other-size', 'global-rel-pos'])
def test_matches_timm_sam_encoder(img_size, size, window, global_blocks):
    """SAM's weights, converted, give its block outputs (fp32, eval, <= 1e-4)."""
    ref = _sam(img_size, window, global_blocks)
    ours = _ours_from(ref, img_size, window_size=window, global_attn_indexes=global_blocks, use_rel_pos=True)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected, got = _trunk(ref, x), ours(x)
    assert len(got) == 4
    for e, g in zip(expected, got):
        assert g.shape == e.shape == (2, 64, size[0] // 16, size[1] // 16)
        assert (g - e).abs().max().item() <= 1e-4


@pytest.mark.parametrize('img_size, window', [(64, 4), (80, 4), (64, 3)], ids=['divides', 'pads', 'pads-3'])
def test_matches_mmpretrain_vit_sam(img_size, window):
    """mmpretrain's SAM image encoder (``ViTSAM``), an implementation of its
    own (written-out attention and relative positions, mmpretrain's key
    layout), on the same random weights: its block outputs (fp32, eval, <= 1e-4)."""
    from mmpretrain.models.backbones import ViTSAM
    torch.manual_seed(0)
    ref = ViTSAM(arch=dict(embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=256,
                           global_attn_indexes=[1, 3]), img_size=img_size, patch_size=16, out_channels=0,
                 out_indices=list(ALL), window_size=window, use_rel_pos=True)
    ref.eval()  # its train() returns None
    for name, p in ref.named_parameters():
        p.data.add_(torch.randn_like(p) * (0.1 if 'rel_pos' in name else 0.02))
    assert 'layers.0.ffn.layers.0.0.weight' in ref.state_dict()
    ours = VisionTransformer(ARCH, img_size=img_size, out_indices=ALL, window_size=window,
                             global_attn_indexes=(1, 3), use_rel_pos=True).eval()
    report = ours.load_pretrained_state(ref.state_dict(), strict=True)
    assert report.loaded == len(ours.state_dict())
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        for e, g in zip(ref(x), ours(x)):
            assert g.shape == e.shape == (2, 64, img_size // 16, img_size // 16)
            assert (g - e).abs().max().item() <= 1e-4


def test_checkpoint_of_another_size_is_resampled_on_load():
    """SAM built for 64x64 and run at 128x128 resamples its position embedding
    and interpolates its global blocks' relative position tables at run time;
    ours built for 128x128 does both once, on load, and gives the same maps."""
    ref = _sam(64)
    ours = _ours_from(ref, 128, **WINDOWED)
    assert ours.blocks[1].attn.rel_pos_h.shape == (15, 32) and ref.blocks[1].attn.rel_pos_h.shape == (7, 32)
    assert ours.blocks[0].attn.rel_pos_h.shape == (7, 32)  # a window block's table: the window's size
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        for e, g in zip(_trunk(ref, x), ours(x)):
            assert (g - e).abs().max().item() <= 1e-4


def test_official_sam_release_layout_loads():
    """segment-anything's files: ``image_encoder.`` keys, ``mlp.lin1``/``lin2``,
    beside the prompt encoder and mask decoder (ignored)."""
    ref = _sam(64)
    state = {'image_encoder.' + k.replace('mlp.fc', 'mlp.lin'): v for k, v in ref.state_dict().items()}
    state['prompt_encoder.pe_layer.positional_encoding_gaussian_matrix'] = torch.zeros(2, 128)
    state['mask_decoder.iou_token.weight'] = torch.zeros(1, 256)
    ours = VisionTransformer(ARCH, img_size=64, out_indices=ALL, **WINDOWED)
    report = ours.load_pretrained_state(state)
    assert not report.missing and not report.unexpected
    assert {'prompt_encoder.pe_layer.positional_encoding_gaussian_matrix',
            'mask_decoder.iou_token.weight', 'neck.0.weight'} <= set(report.ignored)
    for name, p in ours.state_dict().items():  # SAM keeps the position embedding as a (1, h, w, C) map
        assert torch.equal(p, ref.state_dict()[name].reshape(p.shape)), name


def _official_mae_release(model: MAEViT) -> dict:
    """``mae_pretrain_vit_*.pth`` as released: {'model': encoder + decoder}."""
    C = model.pos_embed.shape[-1]
    return {'model': {**model.state_dict(), 'mask_token': torch.zeros(1, 1, 16),
                      'decoder_embed.weight': torch.zeros(16, C), 'decoder_pos_embed': torch.zeros(1, 17, 16)}}


def test_mae_release_loads_into_windowed_model(tmp_path):
    """The MAE pretraining release (class token, 1 + N positions, no relative
    position tables) fills every tensor of the windowed MAE-ViT but the tables,
    which stay at their zero init and are reported as expected, not missing;
    the class token and its position are dropped, as ViTDet does."""
    torch.manual_seed(0)
    src = MAEViT(ARCH, img_size=64)
    src.init_weights()
    path = tmp_path / 'mae_pretrain_vit_tiny.pth'
    torch.save(_official_mae_release(src), path)
    model = MAEViT(ARCH, img_size=64, out_indices=(3,), **WINDOWED,
                   init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    report = model.load_pretrained(str(path))
    assert not report.missing and not report.unexpected
    assert report.expected == sorted(f'blocks.{i}.attn.rel_pos_{a}' for i in ALL for a in 'hw')
    assert {'cls_token', 'mask_token', 'decoder_embed.weight', 'decoder_pos_embed'} <= set(report.ignored)
    assert 'expected' in str(report)
    assert torch.equal(model.pos_embed, src.pos_embed[:, 1:])
    for name, p in model.state_dict().items():
        if 'rel_pos' in name:
            assert not p.any(), name
        elif name != 'pos_embed':
            assert torch.equal(p, src.state_dict()[name]), name
    model.init_weights()  # through init_cfg, as mmengine's Runner loads it
    assert torch.equal(model.blocks[2].mlp.fc1.weight, src.blocks[2].mlp.fc1.weight)


def test_mmpretrain_mae_checkpoint_loads_into_windowed_model():
    """mmpretrain's MAE encoder (``mmpretrain.models.selfsup.MAEViT``, its own
    layout: ``layers.N``, ``ln1``, ``patch_embed.projection``) at another
    pretraining size (32x32) loads into the windowed model at 64x64."""
    from mmpretrain.models.selfsup.mae import MAEViT as MMPretrainMAEViT
    torch.manual_seed(0)
    src = MMPretrainMAEViT(arch=dict(embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=256),
                           img_size=32, patch_size=16)
    src.init_weights()
    state = src.state_dict()
    assert 'layers.0.attn.qkv.weight' in state and 'patch_embed.projection.weight' in state
    model = MAEViT(ARCH, img_size=64, out_indices=(3,), out_norm='last', **WINDOWED)
    report = model.load_pretrained_state(state)
    assert not report.missing and not report.unexpected
    assert len(report.expected) == 8 and 'cls_token' in report.ignored
    assert torch.equal(model.blocks[3].attn.qkv.weight, state['layers.3.attn.qkv.weight'])
    assert torch.equal(model.blocks[0].mlp.fc2.bias, state['layers.0.ffn.layers.1.bias'])
    assert torch.equal(model.norm.weight, state['ln1.weight'])
    assert model.pos_embed.shape == (1, 16, 64)  # the 2x2 grid without its class row, resampled to 4x4


def test_gradients_match_timm_sam_and_reach_every_parameter():
    """A training step's parameter gradients equal SAM's (fp32, <= 1e-4), every
    parameter receives one (relative position tables of window and global
    blocks included), and gradient checkpointing gives the same gradients."""
    ref = _sam(80)
    ours = _ours_from(ref, 80, **WINDOWED)
    x = torch.randn(2, 3, 80, 80)  # 5x5 map: padded windows
    for m, outs in ((ours, lambda: ours(x)), (ref, lambda: _trunk(ref, x))):
        m.train()
        sum(o.square().mean() for o in outs()).backward()
    theirs = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name
        assert (p.grad - theirs[name].grad.reshape(p.shape)).abs().max().item() <= 1e-4, name
    cp = VisionTransformer(ARCH, img_size=80, out_indices=ALL, with_cp=True, **WINDOWED)
    cp.load_state_dict(ours.state_dict())
    plain = VisionTransformer(ARCH, img_size=80, out_indices=ALL, **WINDOWED)
    plain.load_state_dict(ours.state_dict())
    assert_checkpointing_matches(plain, cp, x)


@pytest.mark.parametrize('size', [(97, 61), (33, 35), (224, 160)])
def test_window_that_does_not_divide_the_map_pads(size):
    """Windows of 3 on 7x4, 3x3 and 14x10 maps: padded, never refused."""
    model = MAEViT(ARCH, window_size=3, global_attn_indexes=(3,), use_rel_pos=True, out_indices=(0, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    for out in outs:
        assert out.shape == (1, 64, -(-size[0] // 16), -(-size[1] // 16)) and torch.isfinite(out).all()


def test_bad_attention_options_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r'window_size must be an int >= 0.*got -2'):
        VisionTransformer(ARCH, window_size=-2)
    with pytest.raises(ValueError, match=r'global_attn_indexes \(1, 4\) must be blocks in 0\.\.3; \[4\]'):
        VisionTransformer(ARCH, window_size=4, global_attn_indexes=(1, 4))
    with pytest.raises(ValueError, match=r'global_attn_indexes=\(1,\) needs window_size > 0'):
        VisionTransformer(ARCH, global_attn_indexes=(1,))
    with pytest.raises(ValueError, match=r"out_type='cls_token' needs a class token.*out_type='featmap'"):
        VisionTransformer(ARCH, window_size=4, out_type='cls_token')


def test_windowed_model_has_no_class_token_and_freezes_its_embeddings():
    model = MAEViT(ARCH, img_size=64, frozen_stages=1, **WINDOWED)
    model.init_weights()
    names = dict(model.named_parameters())
    assert 'cls_token' not in names and model.pos_embed.shape == (1, 16, 64)
    assert not names['pos_embed'].requires_grad and not names['blocks.0.attn.rel_pos_h'].requires_grad
    assert names['blocks.1.attn.rel_pos_h'].requires_grad
    # layer-wise lr decay: a block's tables at the block's depth
    assert model.get_layer_depth('backbone.blocks.1.attn.rel_pos_w') == (2, 6)


def _det_batch(num_classes: int, side: int = 64) -> dict:
    """Two images with two boxes and masks each."""
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    boxes = torch.tensor([[8., 16., 40., 48.], [30., 4., 60., 30.]])
    masks = np.zeros((2, side, side), np.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        m[y1:y2, x1:x2] = 1
    samples = []
    for _ in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(side, side), ori_shape=(side, side), scale_factor=(1., 1.)))
        s.gt_instances = InstanceData(bboxes=boxes, labels=torch.randint(0, num_classes, (2,)),
                                      masks=BitmapMasks(masks, side, side))
        samples.append(s)
    return dict(inputs=[torch.randint(0, 255, (3, side, side), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)


def test_vitdet_config_builds_and_runs_with_a_tiny_override():
    """configs/mae/mask-rcnn_vitdet-b_lsj-100e_coco.py as published (ViT-B at
    1024, windows of 14, global blocks 2/5/8/11, relative positions, LSJ,
    layer decay 0.7), then built with a tiny backbone: one loss forward and
    backward, one predict."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope

    from densekit.config import load_config
    cfg = load_config(str(ROOT / 'configs' / 'mae' / 'mask-rcnn_vitdet-b_lsj-100e_coco.py'))
    b = cfg.model.backbone
    assert (b.type, b.arch, b.img_size, b.window_size, b.global_attn_indexes, b.use_rel_pos, b.out_indices) == (
        'densekit.MAEViT', 'base', 1024, 14, (2, 5, 8, 11), True, (11,))
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.7 and cfg.train_cfg.max_iters == 184375
    resize = next(t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomResize')
    assert resize.scale == (1024, 1024) and resize.ratio_range == (0.1, 2.0)
    assert cfg.model.roi_head.bbox_head.type == 'Shared4Conv1FCBBoxHead'

    init_default_scope(cfg.default_scope)
    cfg.model.backbone.update(arch=dict(embed_dims=32, depth=4, num_heads=2), img_size=64, window_size=2,
                              global_attn_indexes=(1, 3), out_indices=(3,), init_cfg=None)
    cfg.model.neck.in_channels = 32
    # few RoIs: the 4conv1fc box head's CPU time grows with them; the wiring is the same
    cfg.model.train_cfg.rcnn.sampler.num = 32
    cfg.model.test_cfg.rpn.update(nms_pre=100, max_per_img=32)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert model.backbone.blocks[1].window_size == 0 and model.backbone.blocks[0].window_size == 2
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    batch = _det_batch(cfg.model.roi_head.bbox_head.num_classes)
    model.train()
    losses = model.train_step(batch, optim)
    assert {'loss_rpn_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert model.backbone.blocks[0].attn.rel_pos_h.any()  # trained from its zero init
    model.eval()
    with torch.no_grad():
        results = model.test_step(batch)
    assert len(results) == 2 and results[0].pred_instances.bboxes.shape[-1] == 4
