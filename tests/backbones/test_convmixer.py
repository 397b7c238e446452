"""ConvMixer backbone: isotropic shapes, parity with timm, paper sizes, layouts."""
import re

import pytest
import timm
import torch

from densekit.backbones.convmixer import ConvMixer
from tests.helpers import assert_checkpointing_matches

TINY = dict(dim=16, depth=3, kernel_size=5, patch_size=7, act='gelu')


def _ceil(a, b):
    return -(-a // b)


def _official_layout(timm_state: dict, depth: int) -> dict:
    """timm -> the official ``nn.Sequential`` release (0: patch conv, 2: BN,
    3..depth+2: blocks, depth+5: the classifier after pool and flatten)."""
    out = {}
    for k, v in timm_state.items():
        k = re.sub(r'^stem\.(\d+)', r'\1', k)
        k = re.sub(r'^blocks\.(\d+)', lambda m: str(int(m[1]) + 3), k)
        out[k.replace('head.', f'{depth + 5}.')] = v
    return out


@pytest.mark.parametrize('size', [(64, 64), (97, 61), (33, 35), (14, 15)])
def test_isotropic_maps_at_any_size(size):
    model = ConvMixer(TINY, out_indices=(0, 2)).eval()
    outs = model(torch.randn(1, 3, *size))
    assert model.num_levels == 3 and model.out_strides == (7, 7) and model.out_channels == (16, 16)
    for out in outs:
        assert out.shape == (1, 16, _ceil(size[0], 7), _ceil(size[1], 7))
    assert ConvMixer(TINY).out_indices == (2,)
    with pytest.raises(ValueError, match='out_indices'):
        ConvMixer(TINY, out_indices=(3,))


def test_matches_timm_convmixer_768_32():
    """Converted timm weights (random init, non-trivial BatchNorm statistics)
    reproduce timm's block outputs at 112x112 (fp32, <= 1e-4)."""
    torch.manual_seed(0)
    ref = timm.create_model('convmixer_768_32', pretrained=False).eval()
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.)
            m.weight.data.normal_(1., 0.1)
            m.bias.data.normal_(0., 0.1)
    ours = ConvMixer('768_32', out_indices=(15, 31)).eval()
    report = ours.load_pretrained_state(ref.state_dict())
    assert not report.missing and not report.unexpected and report.ignored == ['head.bias', 'head.weight']
    assert isinstance(ours.stem[1], torch.nn.ReLU)  # 768/32 uses ReLU, the others GELU
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=[15, 31], intermediates_only=True)
        got = ours(x)
    for e, g in zip(expected, got):
        assert g.shape == e.shape == (1, 768, 16, 16)
        assert (g - e).abs().max().item() <= 1e-4


def test_variants_follow_the_paper():
    """Paper (Table 1) and timm: ConvMixer-1536/20 51.6M, -768/32 21.1M,
    -1024/20 (patch 14) 24.4M parameters with the 1000-class head."""
    for arch, params in (('1536_20', 51.6), ('768_32', 21.1), ('1024_20_ks9_p14', 24.4)):
        with torch.device('meta'):
            m = ConvMixer(arch)
        total = (sum(p.numel() for p in m.parameters()) + m.level_channels[-1] * 1000 + 1000) / 1e6
        with torch.device('meta'):
            ref = timm.create_model(f'convmixer_{arch}')
        assert total == sum(p.numel() for p in ref.parameters()) / 1e6
        assert round(total, 1) == params, arch
        assert m.level_strides[0] == (14 if arch.endswith('p14') else 7)


def test_loads_official_layout_file(tmp_path):
    src = ConvMixer(TINY)
    for p in src.parameters():
        p.data.normal_()
    state = dict(src.state_dict(), **{'head.weight': torch.zeros(10, 16), 'head.bias': torch.zeros(10)})
    official = _official_layout(state, depth=3)
    assert '3.0.fn.0.weight' in official and '8.weight' in official and '2.running_var' in official
    path = tmp_path / 'convmixer_official.pth.tar'
    torch.save(official, path)
    model = ConvMixer(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    report = model.load_pretrained(str(path), strict=True)
    assert report.ignored == ['head.bias', 'head.weight']
    for name, p in model.state_dict().items():
        assert torch.equal(p, src.state_dict()[name]), name


def test_frozen_stages_keep_batchnorm_statistics():
    model = ConvMixer(TINY, frozen_stages=1)
    model.init_weights()
    model.train()
    before = model.blocks[0][3].running_mean.clone()
    model(torch.randn(2, 3, 28, 28))
    assert torch.equal(model.blocks[0][3].running_mean, before)
    assert not model.stem.training and not model.blocks[0].training and model.blocks[1].training
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert all(p.requires_grad for p in model.blocks[1].parameters())


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    plain = ConvMixer(TINY, out_indices=(1, 2))
    cp = ConvMixer(TINY, out_indices=(1, 2), with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 35, 42)
    assert_checkpointing_matches(plain, cp, x)


def test_config_pairs_backbone_adapter_and_head():
    """configs/upernet_convmixer-1536-20_ade20k.py: stride-7 maps become
    levels of ceil(H*7/s) at 4/8/16/32 whose widths are the head's in_channels."""
    from pathlib import Path

    from mmengine.config import Config

    from densekit.necks.pyramid_adapter import SimpleFeaturePyramid
    cfg = Config.fromfile(str(Path(__file__).parents[2] / 'configs' / 'upernet_convmixer-1536-20_ade20k.py'))
    assert cfg.model.backbone.type == 'densekit.ConvMixer'
    backbone = ConvMixer(**{k: v for k, v in cfg.model.backbone.items() if k not in ('type', 'init_cfg')})
    neck = SimpleFeaturePyramid(**{k: v for k, v in cfg.model.neck.items() if k != 'type'}).eval()
    assert neck.in_stride == backbone.out_strides[0] == 7 and len(backbone.out_indices) == 4
    assert list(cfg.model.decode_head.in_channels) == list(neck.out_channels)
    assert cfg.model.auxiliary_head.in_channels == neck.out_channels[cfg.model.auxiliary_head.in_index]
    with torch.no_grad():
        outs = neck(backbone.eval()(torch.randn(1, 3, 56, 70)))  # 8 x 10 tokens
    assert [tuple(o.shape[-2:]) for o in outs] == [(14, 18), (7, 9), (4, 5), (2, 3)]
