"""Swin backbone: pyramid shapes, parity with timm and mmseg, checkpoint layouts."""
import re

import pytest
import timm
import torch

from densekit.backbones import SwinTransformer
from tests.helpers import (assert_checkpointing_matches, assert_drop_path_random_in_training_only,
                      input_and_bias_table_grads)

TINY = dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))


def _timm_swin_t():
    torch.manual_seed(0)
    return timm.create_model('swin_tiny_patch4_window7_224', pretrained=False).eval()


def _official_layout(timm_state: dict) -> dict:
    """timm -> the official Swin release layout (patch merging at the end of a
    stage, ``head.``): the inverse of timm's own ``checkpoint_filter_fn``,
    which the test below uses to confirm the result is that layout."""
    out = {}
    for k, v in timm_state.items():
        k = re.sub(r'layers\.(\d+)\.downsample', lambda m: f'layers.{int(m[1]) - 1}.downsample', k)
        out[k.replace('head.fc.', 'head.')] = v
    return out


@pytest.mark.parametrize('size', [(64, 64), (375, 500), (97, 61), (33, 35)])
def test_pyramid_strides_at_any_size(size):
    model = SwinTransformer(arch=TINY, window_size=7).eval()
    x = torch.randn(1, 3, *size)
    outs = model(x)
    assert model.out_strides == (4, 8, 16, 32)
    assert model.out_channels == (16, 32, 64, 128)
    for out, stride, ch in zip(outs, model.out_strides, model.out_channels):
        assert out.shape == (1, ch, -(-size[0] // stride), -(-size[1] // stride))
        assert torch.isfinite(out).all()


def test_out_indices_selects_levels():
    model = SwinTransformer(arch=TINY, out_indices=(1, 3)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 128]
    assert model.out_strides == (8, 32)
    with pytest.raises(ValueError, match='out_indices'):
        SwinTransformer(arch=TINY, out_indices=(4,))


def test_matches_timm_swin_tiny():
    """Converted timm weights reproduce timm's stage outputs (fp32, <= 1e-4)."""
    ref = _timm_swin_t()
    ours = SwinTransformer('tiny', out_norm='last', drop_path_rate=0.).eval()
    report = ours.load_pretrained_state(ref.state_dict())
    assert not report.missing and not report.unexpected
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, norm=True, intermediates_only=True)
        got = ours(x)
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        assert (g - e).abs().max().item() <= 1e-4


def test_loads_official_layout_file(tmp_path):
    ref = _timm_swin_t()
    official = _official_layout(ref.state_dict())
    # timm's own converter accepts it and restores the model: it is the official layout
    from timm.models.swin_transformer import checkpoint_filter_fn
    back = _timm_swin_t()
    torch.nn.init.zeros_(back.layers[1].downsample.reduction.weight)
    back.load_state_dict(checkpoint_filter_fn(official, back), strict=False)
    assert torch.equal(back.layers[1].downsample.reduction.weight, ref.layers[1].downsample.reduction.weight)

    path = tmp_path / 'swin_tiny_patch4_window7_224.pth'
    torch.save({'model': official}, path)
    ours = SwinTransformer('tiny', out_norm='last', drop_path_rate=0.,
                           init_cfg=dict(type='Pretrained', checkpoint=str(path))).eval()
    ours.init_weights()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x)[-1], ref.forward_intermediates(x, norm=True, intermediates_only=True)[-1],
                              atol=1e-4)


def test_loads_timm_safetensors_and_reports_classifier(tmp_path):
    from safetensors.torch import save_file
    ref = _timm_swin_t()
    path = tmp_path / 'model.safetensors'
    save_file(ref.state_dict(), str(path))
    ours = SwinTransformer('tiny', out_norm='last')
    report = ours.load_pretrained(str(path))
    assert report.ignored == ['head.fc.bias', 'head.fc.weight']
    assert not report.missing and not report.unexpected
    assert torch.equal(ours.stages[2].blocks[0].attn.qkv.weight, ref.layers[2].blocks[0].attn.qkv.weight)


def test_matches_mmseg_swin_from_mmseg_checkpoint(tmp_path):
    """An mmseg-layout checkpoint (written by mmseg's own SwinTransformer)
    reproduces mmseg's outputs, including its unfold-ordered patch merging."""
    from mmseg.models.backbones import SwinTransformer as MMSegSwin
    torch.manual_seed(0)
    ref = MMSegSwin(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=7,
                    drop_path_rate=0.)
    ref.eval()  # mmseg's train() override returns None: no chaining
    for p in ref.parameters():  # non-trivial norms and biases everywhere
        p.data.normal_(0, 0.2)
    path = tmp_path / 'upernet_swin_mmseg.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in ref.state_dict().items()}}, path)
    ours = SwinTransformer(dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)),
                           window_size=7, drop_path_rate=0.,
                           init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.')).eval()
    ours.init_weights()
    x = torch.randn(1, 3, 256, 320)  # every stage larger than one window: both shift
    with torch.no_grad():
        for e, g in zip(ref(x), ours(x)):
            assert g.shape == e.shape
            assert (g - e).abs().max().item() <= 1e-4


def test_training_gradients_match_mmseg(tmp_path):
    """In training our attention is a fused forward with a hand-written backward
    (``layers.biased_attention``): the input's and every bias table's gradients
    equal those of mmseg's written-out attention, with shift masks, padding and
    a batch of 2 (per-window masks used across the batch)."""
    from mmseg.models.backbones import SwinTransformer as MMSegSwin
    torch.manual_seed(0)
    arch = dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))
    ref = MMSegSwin(**arch, window_size=7, drop_path_rate=0.)
    for p in ref.parameters():
        p.data.normal_(0, 0.2)
    ref.train()
    path = tmp_path / 'mmseg_swin.pth'
    torch.save({'state_dict': ref.state_dict()}, path)
    ours = SwinTransformer(arch, window_size=7, drop_path_rate=0.,
                           init_cfg=dict(type='Pretrained', checkpoint=str(path))).train()
    ours.init_weights()
    x = torch.randn(2, 3, 200, 264)
    grads = [input_and_bias_table_grads(model, model, x) for model in (ref, ours)]
    assert len(grads[1]) == 1 + sum(arch['depths'])
    for e, g in zip(*grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def test_checkpoint_that_does_not_fit_names_keys(tmp_path):
    path = tmp_path / 'small.pth'
    torch.save(SwinTransformer(arch=TINY).state_dict(), path)
    model = SwinTransformer(arch=dict(TINY, embed_dims=24), out_indices=(0, 1, 2, 3))
    with pytest.raises(ValueError, match=r'small\.pth does not fit SwinTransformer: \d+ of \d+ tensors match; \d+ of another shape \(e\.g\. patch_embed\.proj\.weight'):
        model.load_pretrained(str(path))
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        model.load_pretrained(str(tmp_path / 'nowhere.pth'))


def test_relative_bias_resized_for_other_window(tmp_path):
    src = SwinTransformer(arch=TINY, window_size=7)
    dst = SwinTransformer(arch=TINY, window_size=12)
    report = dst.load_pretrained_state(src.state_dict())
    assert not report.missing
    assert dst.stages[0].blocks[0].attn.relative_position_bias_table.shape == (23 * 23, 1)


def test_frozen_stages_stay_frozen_in_train_mode():
    model = SwinTransformer(arch=TINY, frozen_stages=1)
    model.init_weights()
    model.train()
    assert not model.patch_embed.training and not model.stages[0].training
    assert model.stages[1].training
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert not any(p.requires_grad for p in model.stages[0].parameters())
    assert all(p.requires_grad for p in model.stages[1].parameters())


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    plain = SwinTransformer(arch=TINY, drop_path_rate=0.)
    cp = SwinTransformer(arch=TINY, drop_path_rate=0., with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert_checkpointing_matches(plain, cp, x)


def test_drop_path_is_stochastic_in_training_only():
    model = SwinTransformer(arch=TINY, drop_path_rate=0.5)
    x = torch.randn(1, 3, 64, 64)
    assert_drop_path_random_in_training_only(model, x)


def test_attention_dropout_in_training_only():
    """attn_drop_rate > 0 takes SDPA's dropout path in training (per-window masks
    repeated over a batch of 2) and changes nothing in eval."""
    torch.manual_seed(0)
    plain = SwinTransformer(arch=TINY, drop_path_rate=0.)
    dropped = SwinTransformer(arch=TINY, drop_path_rate=0., attn_drop_rate=0.5)
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for e, g in zip(plain.eval()(x), dropped.eval()(x)):
            torch.testing.assert_close(g, e)
        dropped.train()
        first, second = dropped(x), dropped(x)
    assert all(o.shape == e.shape for o, e in zip(first, plain(x)))
    assert not torch.allclose(first[0], second[0])
