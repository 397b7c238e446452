"""ViT backbone: isotropic shapes, parity with timm, checkpoint layouts."""
import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed

from densekit.backbones.vit import VisionTransformer
from tests.helpers import assert_checkpointing_matches, assert_drop_path_random_in_training_only

TINY = dict(embed_dims=32, depth=4, num_heads=2)


def _ceil(a, b):
    return -(-a // b)


def _timm(name='vit_base_patch16_224', **kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    for p in model.parameters():  # non-trivial norms, biases and embeddings everywhere
        p.data.add_(torch.randn_like(p) * 0.02)
    return model


@pytest.fixture(scope='module')
def timm_tiny():
    return _timm('vit_tiny_patch16_224', dynamic_img_size=True, dynamic_img_pad=True)


def _mmseg_layout(timm_state: dict) -> dict:
    """timm -> mmseg's VisionTransformer names (its vit2mmseg converter):
    ``layers.N.ln1``, ``attn.attn.in_proj_weight``, ``ffn.layers.0.0``, final norm ``ln1``."""
    out = {}
    for k, v in timm_state.items():
        if k.startswith('head.'):
            continue
        k = 'ln1.' + k[5:] if k.startswith('norm.') else k
        for old, new in (('blocks.', 'layers.'), ('patch_embed.proj.', 'patch_embed.projection.'),
                         ('.norm1.', '.ln1.'), ('.norm2.', '.ln2.'),
                         ('.attn.qkv.weight', '.attn.attn.in_proj_weight'),
                         ('.attn.qkv.bias', '.attn.attn.in_proj_bias'),
                         ('.attn.proj.', '.attn.attn.out_proj.'),
                         ('.mlp.fc1.', '.ffn.layers.0.0.'), ('.mlp.fc2.', '.ffn.layers.1.')):
            k = k.replace(old, new)
        out[k] = v
    return out


@pytest.mark.parametrize('size', [(64, 64), (97, 61), (33, 35), (224, 160)])
def test_isotropic_maps_at_any_size(size):
    model = VisionTransformer(TINY, out_indices=(0, 1, 3)).eval()
    outs = model(torch.randn(1, 3, *size))
    assert model.num_levels == 4 and model.level_strides == (16,) * 4
    assert model.out_strides == (16, 16, 16) and model.out_channels == (32, 32, 32)
    for out in outs:
        assert out.shape == (1, 32, _ceil(size[0], 16), _ceil(size[1], 16))
        assert torch.isfinite(out).all()


def test_default_out_index_is_last_block_and_bad_indices_are_refused():
    assert VisionTransformer(TINY).out_indices == (3,)
    assert VisionTransformer('base').out_indices == (11,)
    with pytest.raises(ValueError, match='out_indices'):
        VisionTransformer(TINY, out_indices=(4,))
    with pytest.raises(KeyError, match="unknown arch 'bse'"):
        VisionTransformer('bse')


def test_matches_timm_vit_base():
    """Converted timm weights reproduce timm's tokens at 224 (fp32, <= 1e-4):
    blocks 5 and 11 as they are, and through the final norm ('all'; block 11's
    is the output of ``forward_features``). 'last' is checked on ViT-Ti below."""
    ref = _timm()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        final, plain = ref.forward_intermediates(x, indices=[5, 11], norm=False)
        normed = [ref.norm(plain[0].permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
                  final[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)]
    ours = VisionTransformer('base', out_indices=(5, 11), out_norm='all').eval()
    report = ours.load_pretrained_state(ref.state_dict())
    assert not report.missing and not report.unexpected
    assert report.ignored == ['head.bias', 'head.weight']
    for out_norm, expected in ((None, plain), ('all', normed)):
        ours.out_norm = out_norm
        with torch.no_grad():
            got = ours(x)
        for e, g in zip(expected, got):
            assert g.shape == e.shape == (1, 768, 14, 14)
            assert (g - e).abs().max().item() <= 1e-4, out_norm


def test_unused_final_norm_is_not_built_and_reported_ignored(timm_tiny):
    ours = VisionTransformer('tiny')
    assert not hasattr(ours, 'norm')
    report = ours.load_pretrained_state(timm_tiny.state_dict())
    assert report.ignored == ['head.bias', 'head.weight', 'norm.bias', 'norm.weight']
    assert not report.missing and not report.unexpected


def test_matches_timm_at_other_sizes(timm_tiny):
    """Padding to a multiple of 16 and resampling the position embedding as
    timm does with dynamic_img_size/dynamic_img_pad."""
    ours = VisionTransformer('tiny', out_indices=(11,)).eval()
    ours.load_pretrained_state(timm_tiny.state_dict())
    for size in ((97, 61), (320, 256)):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            e, g = timm_tiny.forward_intermediates(x, indices=[11], intermediates_only=True)[0], ours(x)[0]
        assert g.shape == e.shape == (1, 192, _ceil(size[0], 16), _ceil(size[1], 16))
        assert (g - e).abs().max().item() <= 1e-4


def test_loads_official_layout_file(tmp_path, timm_tiny):
    """The official/DeiT releases wrap timm's names in ``{'model': ...}``."""
    ref = timm_tiny
    path = tmp_path / 'deit_tiny_patch16_224.pth'
    torch.save({'model': ref.state_dict()}, path)
    ours = VisionTransformer('tiny', out_norm='last',
                             init_cfg=dict(type='Pretrained', checkpoint=str(path))).eval()
    ours.init_weights()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = ref.forward_features(x)[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
        assert (ours(x)[0] - expected).abs().max().item() <= 1e-4


def test_loads_mmseg_layout_with_prefix(tmp_path, timm_tiny):
    """A whole mmseg model checkpoint (backbone. prefix, mmseg names)."""
    ref = timm_tiny
    state = {f'backbone.{k}': v for k, v in _mmseg_layout(ref.state_dict()).items()}
    state['decode_head.conv_seg.weight'] = torch.zeros(150, 512, 1, 1)
    path = tmp_path / 'upernet_vit_mmseg.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)
    ours = VisionTransformer('tiny', out_indices=(3, 11), out_norm='last')
    report = ours.load_pretrained(str(path), prefix='backbone.', strict=True)
    assert report.loaded == len(ours.state_dict())
    for name, p in ours.state_dict().items():
        assert torch.equal(p, ref.state_dict()[name]), name


def test_loads_mmpretrain_layout(timm_tiny):
    """mmpretrain keeps timm's qkv/proj names inside mmseg-style blocks."""
    ref = timm_tiny
    state = {k.replace('.attn.attn.in_proj_weight', '.attn.qkv.weight')
             .replace('.attn.attn.in_proj_bias', '.attn.qkv.bias')
             .replace('.attn.attn.out_proj.', '.attn.proj.'): v
             for k, v in _mmseg_layout(ref.state_dict()).items()}
    assert 'layers.0.attn.qkv.weight' in state and 'layers.0.ffn.layers.0.0.weight' in state
    ours = VisionTransformer('tiny', out_norm='last')
    report = ours.load_pretrained_state(state, strict=True)
    assert torch.equal(ours.blocks[3].attn.qkv.weight, ref.blocks[3].attn.qkv.weight)
    assert torch.equal(ours.norm.weight, ref.norm.weight) and report.loaded == len(ours.state_dict())


def test_position_embedding_resampled_for_another_img_size(timm_tiny):
    """A 224 checkpoint in a model built for 512 crops: the 14x14 grid is
    resampled to 32x32 on load (timm's bicubic resampling)."""
    ref = timm_tiny
    ours = VisionTransformer('tiny', img_size=512)
    report = ours.load_pretrained_state(ref.state_dict())
    assert not report.missing and not report.unexpected
    assert ours.pos_embed.shape == (1, 1 + 32 * 32, 192)
    expected = resample_abs_pos_embed(ref.pos_embed.data, new_size=(32, 32), num_prefix_tokens=1)
    assert torch.allclose(ours.pos_embed.data, expected)


def test_deit_distilled_checkpoint_drops_the_distillation_token():
    state = VisionTransformer(TINY).state_dict()
    pos = state['pos_embed']
    state['pos_embed'] = torch.cat([pos[:, :1], torch.randn(1, 1, 32), pos[:, 1:]], dim=1)
    state.update({'dist_token': torch.zeros(1, 1, 32), 'head_dist.weight': torch.zeros(10, 32)})
    model = VisionTransformer(TINY)
    report = model.load_pretrained_state(state)
    assert report.ignored == ['dist_token', 'head_dist.weight'] and not report.missing
    assert torch.equal(model.pos_embed, pos)


def test_frozen_stages_freeze_embeddings_and_first_blocks():
    model = VisionTransformer(TINY, frozen_stages=2)
    model.init_weights()
    model.train()
    assert not model.patch_embed.training and not model.blocks[1].training and model.blocks[2].training
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert {'cls_token', 'pos_embed', 'patch_embed.proj.weight'} <= set(frozen)
    assert all(n.startswith(('cls_token', 'pos_embed', 'patch_embed', 'blocks.0.', 'blocks.1.')) for n in frozen)
    assert all(p.requires_grad for p in model.blocks[2].parameters())


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    plain = VisionTransformer(TINY, out_indices=(1, 3))
    cp = VisionTransformer(TINY, out_indices=(1, 3), with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 48, 64)
    assert_checkpointing_matches(plain, cp, x)


def test_drop_path_is_stochastic_in_training_only():
    model = VisionTransformer(TINY, drop_path_rate=0.5)
    x = torch.randn(1, 3, 64, 64)
    assert_drop_path_random_in_training_only(model, x)
    assert model.blocks[0].drop_path1.__class__.__name__ == 'Identity'  # rate 0 for block 0


def test_layer_depth_for_layer_decay():
    model = VisionTransformer(TINY)
    assert model.get_layer_depth('backbone.pos_embed') == (0, 6)
    assert model.get_layer_depth('backbone.patch_embed.proj.weight') == (0, 6)
    assert model.get_layer_depth('backbone.blocks.0.attn.qkv.weight') == (1, 6)
    assert model.get_layer_depth('backbone.blocks.3.mlp.fc2.bias') == (4, 6)
    assert model.get_layer_depth('decode_head.conv_seg.weight') == (5, 6)
    assert model.get_layer_depth('blocks.2.norm1.weight', prefix='') == (3, 6)


def test_variants_follow_timm():
    """ViT-Ti/S/B/L/16 sizes with the 1000-class head equal timm's
    vit_{tiny,small,base,large}_patch16_224: 5.7M / 22.1M / 86.6M / 304.3M."""
    for arch, params in (('tiny', 5_717_416), ('small', 22_050_664), ('base', 86_567_656),
                         ('large', 304_326_632)):
        with torch.device('meta'):
            m = VisionTransformer(arch, out_norm='last')
        C = m.level_channels[-1]
        assert sum(p.numel() for p in m.parameters()) + C * 1000 + 1000 == params, arch


def test_config_pairs_backbone_adapter_and_head():
    """configs/upernet_vit-b16_ade20k.py: 4 blocks feed the adapter, whose
    level widths are the decode head's in_channels, at strides 4/8/16/32."""
    from pathlib import Path

    from mmengine.config import Config

    from densekit.necks.pyramid_adapter import SimpleFeaturePyramid
    cfg = Config.fromfile(str(Path(__file__).parents[2] / 'configs' / 'upernet_vit-b16_ade20k.py'))
    args = {k: v for k, v in cfg.model.backbone.items() if k not in ('type', 'init_cfg')}
    assert cfg.model.backbone.type == 'densekit.VisionTransformer' and args['out_indices'] == (2, 5, 8, 11)
    backbone = VisionTransformer(**args).eval()
    neck = SimpleFeaturePyramid(**{k: v for k, v in cfg.model.neck.items() if k != 'type'}).eval()
    assert neck.in_stride == backbone.out_strides[0] and neck.out_strides == (4, 8, 16, 32)
    assert list(cfg.model.decode_head.in_channels) == list(neck.out_channels)
    assert cfg.model.auxiliary_head.in_channels == neck.out_channels[cfg.model.auxiliary_head.in_index]
    with torch.no_grad():
        outs = neck(backbone(torch.randn(1, 3, 64, 96)))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]
