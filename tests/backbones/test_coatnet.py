"""CoAtNet backbone: pyramid shapes at any size, parity with timm (at 224 and
at other sizes), relative-bias resampling, checkpoint layouts, training knobs."""
import pytest
import timm
import torch
from timm.layers import resize_rel_pos_bias_table
from timm.models.maxxvit import MaxxVit, checkpoint_filter_fn

from densekit.backbones.coatnet import CoAtNet, RelPosBias2d
from tests.helpers import (assert_checkpointing_matches, assert_drop_path_random_in_training_only,
                      input_and_bias_table_grads)

# S1..S4 widths 16..128, 1-2 blocks per stage, dim_head 32: 2 and 4 heads in S3, S4
TINY = dict(stem_width=16, embed_dims=(16, 32, 64, 128), depths=(1, 2, 2, 1))


def _perturb(model: torch.nn.Module, table_std: float = 1.) -> torch.nn.Module:
    """Non-trivial norms, BN statistics and layer scales, and relative-position
    tables large enough to matter, so that parity tests test them."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('relative_position_bias_table'):
                p.copy_(torch.randn(p.shape, generator=gen) * table_std)
            elif 'norm' in name or 'gamma' in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model


def _timm(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return _perturb(timm.create_model(name, pretrained=False, **kwargs)).eval()


def _stages(ref, x, norm=False):
    """timm's S1..S4 outputs (index 0 of forward_intermediates is the stem)."""
    return ref.forward_intermediates(x, indices=[1, 2, 3, 4], norm=norm, intermediates_only=True)


def _max_diff(expected, got):
    assert len(expected) == len(got)
    for e, g in zip(expected, got):
        assert g.shape == e.shape
    return max((e - g).abs().max().item() for e, g in zip(expected, got))


@pytest.mark.parametrize('size', [(64, 64), (375, 500), (97, 61), (33, 35), (1, 1)])
def test_pyramid_strides_at_any_size(size):
    model = CoAtNet(TINY).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert model.out_strides == (4, 8, 16, 32)
    assert model.out_channels == (16, 32, 64, 128)
    for out, stride, ch in zip(outs, model.out_strides, model.out_channels):
        assert out.shape == (1, ch, -(-size[0] // stride), -(-size[1] // stride))
        assert torch.isfinite(out).all()


def test_out_indices_selects_levels():
    model = CoAtNet(TINY, out_indices=(1, 3)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 128]
    assert model.out_strides == (8, 32)
    with pytest.raises(ValueError, match='out_indices'):
        CoAtNet(TINY, out_indices=(4,))
    with pytest.raises(KeyError, match="unknown arch '5'"):
        CoAtNet('5')
    with pytest.raises(ValueError, match='rel_pos_type'):
        CoAtNet(dict(TINY, transformer_rel_pos_type='mlp'))


def test_matches_timm_coatnet_0_at_224():
    """timm coatnet_0_224 weights, loaded through checkpoint_filter, reproduce
    timm's four stage outputs (fp32, <= 1e-4)."""
    ref = _timm('coatnet_0_224')
    ours = CoAtNet('0', out_norm='none', drop_path_rate=0.).eval()
    report = ours.load_pretrained_state(ref.state_dict())
    assert not report.missing and not report.unexpected
    assert report.ignored == sorted(k for k in ref.state_dict() if k.startswith('head.'))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert _max_diff(_stages(ref, x), ours(x)) <= 1e-4


def test_training_gradients_match_timm():
    """In training our attention runs SDPA's fused kernel with a hand-written
    backward (``coatnet.BiasedAttention2d``); the input's and every bias
    table's gradients equal those through timm's attention."""
    ref = _timm('coatnet_0_224', drop_path_rate=0.).train()
    ours = CoAtNet('0', out_norm='none', drop_path_rate=0.).train()
    ours.load_pretrained_state(ref.state_dict())
    x = torch.randn(1, 3, 224, 224)
    grads = [input_and_bias_table_grads(ref, lambda t: _stages(ref, t), x),
             input_and_bias_table_grads(ours, ours, x)]
    assert len(grads[1]) == 1 + 5 + 2  # the input, CoAtNet-0's S3 and S4 blocks
    for e, g in zip(*grads):
        # fp32 sums in another order (channels-last convolutions, SDPA): seen up to 1.1e-4 at 224
        torch.testing.assert_close(g, e, rtol=2e-4, atol=2e-4)


def test_matches_timm_built_for_another_size():
    """At 256x320 the tables are resampled per forward; timm gets the same
    tables by building the model for that size and resizing the 224 weights
    in its checkpoint_filter_fn. Both must agree (tables with std 1, so the
    bias dominates the attention logits)."""
    src = _timm('coatnet_0_224')
    ref = timm.create_model('coatnet_0_224', img_size=(256, 320)).eval()
    ref.load_state_dict(checkpoint_filter_fn(src.state_dict(), ref))
    ours = CoAtNet('0', out_norm='none', drop_path_rate=0.).eval()
    ours.load_pretrained_state(src.state_dict())
    x = torch.randn(1, 3, 256, 320)
    with torch.no_grad():
        assert _max_diff(_stages(ref, x), ours(x)) <= 1e-4


@pytest.mark.parametrize('arch', sorted(CoAtNet.arch_settings))
def test_every_variant_matches_timm(arch):
    """Each variant's blocks (paper configs and timm's -rw ones: pre-norm
    activation, early SE, pooled strides, layer scale, final norm) at tiny
    widths, against timm's MaxxVit built from the same config."""
    cfg = CoAtNet.resolve_arch(dict(TINY, base=arch))
    torch.manual_seed(0)
    ref = _perturb(MaxxVit(cfg, img_size=64)).eval()
    out_norm = 'last' if arch.endswith('-rw') else 'none'  # the -rw models have a final norm
    ours = CoAtNet(cfg, pretrain_img_size=64, out_norm=out_norm, drop_path_rate=0.).eval()
    report = ours.load_pretrained_state(ref.state_dict())
    assert not report.missing and not report.unexpected
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert _max_diff(_stages(ref, x, norm=True), ours(x)) <= 1e-4


def test_paper_variant_sizes():
    """CoAtNet-0..3 with timm's classifier head (LayerNorm, pre-logits, fc):
    timm's parameter counts, the paper's 25M/42M/75M/168M within 1M
    (CoAtNet-3 is 167.0M, as in timm)."""
    for arch, timm_params, paper in (('0', 25.04, 25), ('1', 42.23, 42), ('2', 74.68, 75), ('3', 166.97, 168)):
        with torch.device('meta'):
            m = CoAtNet(arch, out_norm='none')
        C = m.level_channels[-1]
        head = 2 * C + C * C + C + C * 1000 + 1000
        total = (sum(p.numel() for p in m.parameters()) + head) / 1e6
        assert abs(total - timm_params) < 0.01 and abs(total - paper) < 1.1, (arch, total)
    assert CoAtNet('2', out_norm='none').level_channels == (128, 256, 512, 1024)  # the paper's "1026" is 1024


def test_relative_bias_resampled_as_timm_does():
    rel = RelPosBias2d(window_size=(7, 7), num_heads=3)
    torch.nn.init.normal_(rel.relative_position_bias_table)
    assert torch.equal(rel.bias_for((7, 7)), rel.get_bias())
    for size in [(12, 20), (4, 3), (1, 1), (7, 9)]:
        table = resize_rel_pos_bias_table(rel.relative_position_bias_table.detach(), new_window_size=size,
                                          new_bias_shape=((2 * size[0] - 1) * (2 * size[1] - 1), 3))
        ref = RelPosBias2d(window_size=size, num_heads=3)
        ref.relative_position_bias_table.data.copy_(table)
        assert torch.allclose(rel.bias_for(size), ref.get_bias(), atol=1e-6), size
    # the stored table is what trains, at any size
    rel.bias_for((12, 20)).square().sum().backward()
    assert rel.relative_position_bias_table.grad.abs().sum() > 0


def test_checkpoint_tables_resized_for_pretrain_img_size():
    """A model whose tables are sized for 320 (as a 320 timm model would be)
    loads 224 weights with them resized by timm's rule, and then matches
    timm's 320 model without any run-time resampling."""
    src = _timm('coatnet_0_224')
    ref = timm.create_model('coatnet_0_224', img_size=320).eval()
    ref.load_state_dict(checkpoint_filter_fn(src.state_dict(), ref))
    ours = CoAtNet('0', pretrain_img_size=320, out_norm='none', drop_path_rate=0.).eval()
    ours.load_pretrained_state(src.state_dict())
    assert ours.stages[2].blocks[0].rel_pos.relative_position_bias_table.shape == (39 * 39, 12)
    x = torch.randn(1, 3, 320, 320)
    with torch.no_grad():
        assert _max_diff(_stages(ref, x), ours(x)) <= 1e-4


def test_loads_timm_files(tmp_path):
    """timm's model.safetensors / pytorch_model.bin and a features_only
    model's weights load through init_cfg."""
    from safetensors.torch import save_file
    ref = _timm('coatnet_0_rw_224')
    save_file(ref.state_dict(), str(tmp_path / 'model.safetensors'))
    ours = CoAtNet('0-rw', out_norm='last', drop_path_rate=0.,
                   init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'model.safetensors'))).eval()
    ours.init_weights()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert _max_diff(_stages(ref, x, norm=True), ours(x)) <= 1e-4

    torch.save(timm.create_model('coatnet_0_rw_224', features_only=True).state_dict(), tmp_path / 'features.pth')
    report = CoAtNet('0-rw', out_norm='none').load_pretrained(str(tmp_path / 'features.pth'))
    assert not report.missing and not report.unexpected and not report.ignored


def test_loads_mmseg_checkpoint_of_our_own(tmp_path):
    src = _perturb(CoAtNet(TINY)).eval()
    path = tmp_path / 'upernet_coatnet.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in src.state_dict().items()},
                'meta': {'iter': 10}}, path)
    ours = CoAtNet(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.')).eval()
    ours.init_weights()
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(src(x), ours(x)))


def test_checkpoint_that_does_not_fit_names_keys(tmp_path):
    path = tmp_path / 'small.pth'
    torch.save(CoAtNet(TINY).state_dict(), path)
    with pytest.raises(ValueError, match=r'(?s)small\.pth does not fit CoAtNet.*stem\.conv1\.weight'):
        CoAtNet(dict(TINY, stem_width=24)).load_pretrained(str(path))


def test_frozen_stages_stay_frozen_in_train_mode():
    model = CoAtNet(TINY, frozen_stages=1)
    model.init_weights()
    model.train()
    frozen, trained = [model.stem, model.stages[0], model.norm0], [model.stages[1], model.norm1]
    assert not any(m.training for f in frozen for m in f.modules())  # BatchNorm statistics too
    assert all(m.training for t in trained for m in t.modules())
    assert not any(p.requires_grad for f in frozen for p in f.parameters())
    assert all(p.requires_grad for t in trained for p in t.parameters())
    bn = model.stages[0].blocks[0].pre_norm
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(bn.running_mean, before)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    plain = CoAtNet(TINY, drop_path_rate=0.)
    cp = CoAtNet(TINY, drop_path_rate=0., with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 50, 70)  # tables resampled, odd stage maps
    with torch.inference_mode():  # fills the resampling caches: they must still serve training
        plain.eval()(x)
    assert_checkpointing_matches(plain, cp, x)
    assert plain.stages[3].blocks[0].rel_pos.relative_position_bias_table.grad.abs().sum() > 0


def test_drop_path_is_stochastic_in_training_only():
    model = CoAtNet(TINY, drop_path_rate=0.5)
    x = torch.randn(1, 3, 64, 64)
    assert_drop_path_random_in_training_only(model, x)
