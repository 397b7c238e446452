"""MAE-ViT: the pretraining release and timm's .mae weights load; layer-wise lr decay."""
import math

import pytest
import timm
import torch
from mmengine.optim import build_optim_wrapper
from torch import nn

from densekit.backbones.mae import LayerDecayOptimWrapperConstructor, MAEViT, sincos_pos_embed_2d
from densekit.backbones.vit import VisionTransformer

SMALL = dict(embed_dims=32, depth=6, num_heads=2)


def _official_release(encoder: dict, dec: int = 16) -> dict:
    """``mae_pretrain_vit_*.pth`` as released: {'model': encoder + decoder}."""
    C = encoder['cls_token'].shape[-1]
    N = encoder['pos_embed'].shape[1]
    decoder = {'mask_token': torch.zeros(1, 1, dec), 'decoder_embed.weight': torch.zeros(dec, C),
               'decoder_embed.bias': torch.zeros(dec), 'decoder_pos_embed': torch.zeros(1, N, dec),
               'decoder_blocks.0.norm1.weight': torch.ones(dec), 'decoder_norm.weight': torch.ones(dec),
               'decoder_pred.weight': torch.zeros(16 * 16 * 3, dec)}
    return {'model': {**encoder, **decoder}}


def test_is_a_vit_specialisation_with_mae_defaults():
    model = MAEViT()
    assert isinstance(model, VisionTransformer) and type(model).forward is VisionTransformer.forward
    assert model.out_indices == (3, 5, 7, 11) and model.level_strides == (16,) * 12
    with torch.device('meta'):
        assert MAEViT('large').out_indices == (7, 11, 15, 23) and MAEViT(SMALL).out_indices == (5,)
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)


def test_loads_official_release_and_ignores_decoder(tmp_path):
    src = MAEViT(SMALL, out_norm='last')
    src.init_weights()
    path = tmp_path / 'mae_pretrain_vit_base.pth'
    torch.save(_official_release(src.state_dict()), path)
    model = MAEViT(SMALL, out_indices=(1, 5), out_norm='last',
                   init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    report = model.load_pretrained(str(path))
    assert not report.missing and not report.unexpected
    assert report.ignored == sorted(['mask_token', 'decoder_embed.weight', 'decoder_embed.bias',
                                     'decoder_pos_embed', 'decoder_blocks.0.norm1.weight',
                                     'decoder_norm.weight', 'decoder_pred.weight'])
    for name, p in model.state_dict().items():
        assert torch.equal(p, src.state_dict()[name]), name
    # without a final norm in use, the release's encoder norm is reported, not loaded
    report = MAEViT(SMALL).load_pretrained(str(path))
    assert 'norm.weight' in report.ignored and not report.missing


def test_matches_timm_mae_vit_base():
    """timm's vit_base_patch16_224.mae layout (no classifier), random init: <= 1e-4."""
    torch.manual_seed(0)
    ref = timm.create_model('vit_base_patch16_224.mae', pretrained=False).eval()
    for p in ref.parameters():
        p.data.add_(torch.randn_like(p) * 0.02)
    model = MAEViT('base', out_indices=(3, 11), drop_path_rate=0.).eval()
    report = model.load_pretrained_state(ref.state_dict())
    assert not report.missing and not report.unexpected and report.ignored == ['norm.bias', 'norm.weight']
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=[3, 11], intermediates_only=True)
        got = model(x)
    for e, g in zip(expected, got):
        assert (g - e).abs().max().item() <= 1e-4


def test_random_init_uses_mae_sincos_position_embedding():
    model = MAEViT(SMALL, img_size=64)
    model.init_weights()
    pos = model.pos_embed.data
    assert torch.equal(pos, sincos_pos_embed_2d(32, (4, 4)))
    assert torch.all(pos[0, 0] == 0)  # class token
    # token (row 1, column 2): width first (sin, cos), then height, 8 frequencies each
    omega = 1. / 10000 ** (torch.arange(8, dtype=torch.float64) / 8)
    expected = torch.cat([torch.sin(2 * omega), torch.cos(2 * omega), torch.sin(omega), torch.cos(omega)])
    assert torch.allclose(pos[0, 1 + 1 * 4 + 2], expected.float())


class _Segmentor(nn.Module):
    """The shape of an mmseg EncoderDecoder: backbone, neck, decode head."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(32, 16, 1)
        self.decode_head = nn.Sequential(nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8))


def _optim_wrapper(model, rate=0.65, lr=1e-4, wd=0.05):
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=lr, weight_decay=wd),
               constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay_rate=rate))
    return build_optim_wrapper(model, cfg)


def test_layer_decay_lrs_follow_the_formula():
    """lr(block i) = base_lr * decay ** (L - i), embeddings one step below
    block 0, heads at base_lr; no weight decay on norms, biases, pos_embed, cls_token."""
    L, rate, lr = SMALL['depth'], 0.65, 1e-4
    model = _Segmentor(MAEViT(SMALL, out_norm='all'))
    groups = _optim_wrapper(model, rate, lr).optimizer.param_groups
    where = {id(p): g for g in groups for p in g['params']}
    named = dict(model.named_parameters())
    assert len(where) == len(named)  # every trainable parameter, once

    def lr_of(name):
        return where[id(named[name])]['lr']

    def wd_of(name):
        return where[id(named[name])]['weight_decay']

    for i in range(L):
        assert lr_of(f'backbone.blocks.{i}.attn.qkv.weight') == pytest.approx(lr * rate ** (L - i))
    assert lr_of('backbone.blocks.0.mlp.fc1.weight') / lr_of(f'backbone.blocks.{L - 1}.mlp.fc1.weight') \
        == pytest.approx(rate ** (L - 1))
    for name in ('backbone.pos_embed', 'backbone.cls_token', 'backbone.patch_embed.proj.weight'):
        assert lr_of(name) == pytest.approx(lr * rate ** (L + 1))
    for name in ('neck.weight', 'decode_head.0.weight', 'decode_head.1.bias', 'backbone.norm.weight'):
        assert lr_of(name) == pytest.approx(lr)
    for name in ('backbone.pos_embed', 'backbone.cls_token', 'backbone.blocks.2.norm1.weight',
                 'backbone.blocks.2.attn.qkv.bias', 'backbone.norm.bias', 'decode_head.1.weight'):
        assert wd_of(name) == 0.
    for name in ('backbone.blocks.2.attn.qkv.weight', 'backbone.patch_embed.proj.weight', 'neck.weight'):
        assert wd_of(name) == pytest.approx(0.05)
    assert all(math.isclose(g['lr'], lr * g['lr_scale']) for g in groups)


def test_layer_decay_skips_frozen_parameters_and_needs_layer_depths():
    model = _Segmentor(MAEViT(SMALL, frozen_stages=2))
    model.backbone.init_weights()
    groups = _optim_wrapper(model).optimizer.param_groups
    params = {id(p) for g in groups for p in g['params']}
    assert id(model.backbone.pos_embed) not in params and id(model.backbone.blocks[1].norm1.weight) not in params
    assert id(model.backbone.blocks[2].norm1.weight) in params
    with pytest.raises(TypeError, match='Sequential has no get_layer_depth'):
        _optim_wrapper(nn.Sequential(nn.Linear(2, 2)))


def test_constructor_is_registered_in_mmengine_root():
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
    assert OPTIM_WRAPPER_CONSTRUCTORS.get('LayerDecayOptimWrapperConstructor') is LayerDecayOptimWrapperConstructor


def test_config_pairs_backbone_adapter_head_and_layer_decay():
    """configs/upernet_mae-vit-b16_ade20k.py: blocks 3/5/7/11 feed BEiT's
    pyramid (768 channels kept), the head takes 768 x 4, and its optimizer
    config gives the layer-wise decay."""
    from pathlib import Path

    from mmengine.config import Config

    from densekit.necks.pyramid_adapter import SimpleFeaturePyramid
    cfg = Config.fromfile(str(Path(__file__).parents[2] / 'configs' / 'upernet_mae-vit-b16_ade20k.py'))
    assert cfg.model.backbone.type == 'densekit.MAEViT'
    backbone = MAEViT(**{k: v for k, v in cfg.model.backbone.items() if k not in ('type', 'init_cfg')})
    neck_cfg = {k: v for k, v in cfg.model.neck.items() if k != 'type'}
    neck_cfg['norm_cfg'] = dict(type='BN')  # SyncBN needs a process group to run
    neck = SimpleFeaturePyramid(**neck_cfg).eval()
    assert list(cfg.model.decode_head.in_channels) == list(neck.out_channels) == [768] * 4
    assert cfg.model.auxiliary_head.in_channels == neck.out_channels[cfg.model.auxiliary_head.in_index]
    with torch.no_grad():
        outs = neck(backbone.eval()(torch.randn(1, 3, 32, 48)))
    assert [tuple(o.shape[-2:]) for o in outs] == [(8, 12), (4, 6), (2, 3), (1, 2)]
    groups = build_optim_wrapper(_Segmentor(MAEViT(SMALL)), cfg.optim_wrapper).optimizer.param_groups
    assert sorted({round(g['lr_scale'], 6) for g in groups})[0] == round(0.65 ** (SMALL['depth'] + 1), 6)
    assert cfg.param_scheduler[-1].end == cfg.train_cfg.max_iters == 126400
