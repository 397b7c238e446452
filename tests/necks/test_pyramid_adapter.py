"""Isotropic-to-pyramid adapter: exact level sizes, both modes, 1 or 4 input maps."""
import pytest
import torch
import torch.nn.functional as F

from densekit.necks.pyramid_adapter import SimpleFeaturePyramid

STRIDES = (4, 8, 16, 32)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@pytest.mark.parametrize('mode', ['simple', 'beit'])
@pytest.mark.parametrize('image', [(33, 35), (97, 61), (375, 500), (64, 64)])
def test_stride16_levels_have_exact_sizes(mode, image):
    """A ViT/16 map of an image of any size (ceil(H/16) tokens) gives levels
    of ceil(H/16) * 16 / s: the padded image at strides 4/8/16/32."""
    h, w = _ceil(image[0], 16), _ceil(image[1], 16)
    neck = SimpleFeaturePyramid(32, None if mode == 'beit' else 24, in_stride=16, mode=mode).eval()
    outs = neck((torch.randn(2, 32, h, w),))
    assert len(outs) == 4
    for out, s, ch in zip(outs, STRIDES, neck.out_channels):
        assert out.shape == (2, ch, _ceil(h * 16, s), _ceil(w * 16, s))
        # for a padded image that is also what a pyramid backbone gives (Swin: ceil(H/s))
        assert out.shape[-2:] == (_ceil(_ceil(image[0], 16) * 16, s), _ceil(_ceil(image[1], 16) * 16, s))


@pytest.mark.parametrize('mode', ['simple', 'beit'])
@pytest.mark.parametrize('patch', [7, 14])
@pytest.mark.parametrize('size', [(32, 32), (11, 17), (37, 8)])
def test_non_power_of_two_stride_is_resampled_to_exact_size(mode, patch, size):
    """ConvMixer's patch 7 / 14: level s has ceil(H * p / s) rows."""
    neck = SimpleFeaturePyramid(16, None, in_stride=patch, mode=mode).eval()
    outs = neck((torch.randn(1, 16, *size),))
    for out, s in zip(outs, STRIDES):
        assert out.shape == (1, 16, _ceil(size[0] * patch, s), _ceil(size[1] * patch, s))
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('mode', ['simple', 'beit'])
def test_four_maps_feed_their_own_levels(mode):
    """BEiT/MAE: four blocks feed the four levels; a tuple of 1 map is shared."""
    neck = SimpleFeaturePyramid(8, None, mode=mode).eval()
    maps = tuple(torch.randn(1, 8, 6, 5) for _ in range(4))
    outs = neck(maps)
    shared = neck(maps[2:3])
    assert torch.equal(outs[2], shared[2]) and not torch.allclose(outs[1], shared[1])
    if mode == 'beit':  # identity at the input stride, max-pool below it
        assert torch.equal(outs[2], maps[2])
        assert torch.equal(outs[3], F.max_pool2d(maps[3], 2, ceil_mode=True))
    with pytest.raises(ValueError, match='expected 1 or 4 input maps'):
        neck(maps[:2])


def test_simple_mode_has_vitdet_structure():
    """ViTDet: 4x = deconv(C->C/2), LN, GELU, deconv(C/2->C/4); 2x = deconv(C->C/2);
    1x = identity; 1/2 = max-pool; then 1x1 and 3x3 convs (no bias) with LN."""
    neck = SimpleFeaturePyramid(64, 256)
    up4, up2, same, down2 = neck.resample
    assert [type(m).__name__ for m in up4] == ['ConvTranspose2d', 'LayerNorm2d', 'GELU', 'ConvTranspose2d']
    assert (up4[0].out_channels, up4[3].out_channels, up2[0].out_channels) == (32, 16, 32)
    assert len(same) == 0 and type(down2[0]).__name__ == 'MaxPool2d'
    assert [c[0].in_channels for c in neck.convs] == [16, 32, 64, 64]
    for conv in neck.convs:
        assert [type(m).__name__ for m in conv] == ['Conv2d', 'LayerNorm2d', 'Conv2d', 'LayerNorm2d']
        assert conv[0].bias is None and conv[2].kernel_size == (3, 3)
    assert neck.out_channels == (256,) * 4 and neck.out_strides == STRIDES


def test_beit_mode_matches_feature2pyramid_ops():
    """mmseg Feature2Pyramid: deconv-BN-GELU-deconv / deconv / identity / max-pool, C kept."""
    neck = SimpleFeaturePyramid(8, None, mode='beit').eval()
    up4 = neck.resample[0]
    assert [type(m).__name__ for m in up4] == ['ConvTranspose2d', 'BatchNorm2d', 'GELU', 'ConvTranspose2d']
    x = torch.randn(1, 8, 4, 6)
    expected = up4[3](F.gelu(up4[1](up4[0](x))))
    assert torch.allclose(neck((x,))[0], expected)
    assert neck.out_channels == (8,) * 4
    with pytest.raises(ValueError, match="mode='beit' keeps the 8 input channels"):
        SimpleFeaturePyramid(8, 16, mode='beit')


def test_norms_and_errors():
    for cfg in (dict(type='BN'), dict(type='SyncBN', requires_grad=True), dict(type='GN', num_groups=4)):
        SimpleFeaturePyramid(16, 16, norm_cfg=cfg)
    frozen = SimpleFeaturePyramid(16, 16, norm_cfg=dict(type='BN', requires_grad=False))
    assert not frozen.convs[0][1].weight.requires_grad
    with pytest.raises(KeyError, match="unknown norm type 'LN3d'"):
        SimpleFeaturePyramid(16, 16, norm_cfg=dict(type='LN3d'))
    with pytest.raises(ValueError, match="mode must be 'simple' or 'beit'"):
        SimpleFeaturePyramid(16, 16, mode='fpn')


def test_builds_from_the_densekit_registry_and_trains():
    from mmengine.registry import MODELS
    neck = MODELS.build(dict(type='densekit.SimpleFeaturePyramid', in_channels=16, out_channels=8,
                             in_stride=14, out_strides=(8, 16, 32)))
    assert isinstance(neck, SimpleFeaturePyramid)
    outs = neck(torch.randn(2, 16, 5, 5))  # a bare tensor is one map
    assert [o.shape[-1] for o in outs] == [_ceil(5 * 14, s) for s in (8, 16, 32)]
    sum(o.square().mean() for o in outs).backward()
    assert all(p.grad is not None for p in neck.parameters())
