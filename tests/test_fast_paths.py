"""The fast paths of issue 6 stay taken, and stay correct (no timing here:
speed is measured by tools/benchmark.py).

* attention biases kept for inference (``backbones.layers.cached_for_inference``)
  follow the weights and the map size, and are never used in training;
* Swin's window attention reaches SDPA's fused CPU kernel, not its math
  fallback, in inference and in training; its patch conv writes the tokens
  in their memory order;
* the convolutional families run their maps channels-last (ConvMixer's
  inference on AVX2-only CPUs: NCHW, ``base.conv_memory_format``), and so
  the gradients that come back into their outputs;
* under autocast without gradients, every backbone runs on weights cast once,
  with the outputs autocast gives.
"""
import pytest
import torch
from tests.test_compile import FAMILIES, _model  # tiny instances of every family
from torch.utils._python_dispatch import TorchDispatchMode

from densekit.backbones import CoAtNet, ConvMixer, SwinTransformer, ViTAE

TINY_SWIN = dict(embed_dims=16, depths=(2, 2, 1, 1), num_heads=(1, 2, 2, 4))
TINY_COATNET = dict(stem_width=16, embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1))


def _swin():
    return SwinTransformer(TINY_SWIN, window_size=7, drop_path_rate=0.)


def _coatnet():
    return CoAtNet(TINY_COATNET, pretrain_img_size=32, drop_path_rate=0.)


def _randomise_tables(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('relative_position_bias_table'):
                p.normal_()


@pytest.mark.parametrize('build', [_swin, _coatnet], ids=['swin', 'coatnet'])
def test_inference_bias_cache_follows_weights_and_sizes(build):
    torch.manual_seed(0)
    model, other = build().eval(), build().eval()
    _randomise_tables(other)
    # Swin: 84x56 and 56x84 pad to windows of the same count but different shift masks
    inputs = [torch.randn(1, 3, 84, 56), torch.randn(1, 3, 56, 84)]
    with torch.no_grad():
        for x in inputs:
            model(x)  # fills the cache
        model.load_state_dict(other.state_dict())  # in-place copies: the cache must notice
        got = [model(x) for x in inputs]
    for x, outs in zip(inputs, got):
        expected = other(x)  # gradients enabled: computed, never cached
        for a, b in zip(outs, expected):
            torch.testing.assert_close(a, b.detach())
    # training computes the bias with a gradient path to the table
    model.train()
    # a random projection: the mean of a LayerNorm'd map has no gradient
    sum((o * torch.randn_like(o)).sum() for o in model(inputs[0])).backward()
    tables = [p for n, p in model.named_parameters() if n.endswith('relative_position_bias_table')]
    assert tables and all(t.grad is not None and t.grad.abs().sum() > 0 for t in tables)


@pytest.mark.parametrize('training', [False, True], ids=['inference', 'training'])
def test_swin_window_attention_takes_the_fused_cpu_kernel(training):
    """A 3-D (heads, N, N) mask sent SDPA to its math fallback (NaN guards over every
    attention map); the bias goes in as 4-D, so every block runs the flash kernel.
    In training too: SDPA falls back for inputs that require grad, so
    ``layers.biased_attention`` hands it detached ones and does the backward itself."""
    model = _swin().train(training)
    with torch.set_grad_enabled(training), torch.profiler.profile() as prof:
        outs = model(torch.randn(1, 3, 84, 56))
    ops = {e.key: e.count for e in prof.key_averages()}
    blocks = sum(len(s.blocks) for s in model.stages)
    flash = sum(n for k, n in ops.items() if 'flash_attention' in k and 'backward' not in k)
    assert flash >= blocks, ops
    assert 'aten::isneginf' not in ops and 'aten::_safe_softmax' not in ops, ops
    assert all(o.requires_grad == training for o in outs)


def test_coatnet_attention_takes_the_fused_cpu_kernel_in_training():
    """timm's Attention2d hands SDPA a bias that requires grad: the math
    fallback. Ours (``coatnet.BiasedAttention2d``) runs the flash kernel."""
    from densekit.backbones.coatnet import BiasedAttention2d
    model = _coatnet().train()
    with torch.profiler.profile() as prof:
        model(torch.randn(1, 3, 64, 64))
    ops = {e.key: e.count for e in prof.key_averages()}
    blocks = sum(isinstance(m, BiasedAttention2d) for m in model.modules())
    flash = sum(n for k, n in ops.items() if 'flash_attention' in k and 'backward' not in k)
    assert blocks and flash >= blocks, ops
    assert 'aten::isneginf' not in ops and 'aten::_safe_softmax' not in ops, ops


def test_swin_patch_embedding_writes_its_tokens_without_a_copy():
    """Swin's 4x4 patch conv runs on a channels-last input, so its output is
    the (B, H, W, C) tokens in memory order: the LayerNorm after it gets them
    contiguous (no copy in its forward, none in its backward)."""
    model = _swin().eval()
    seen = []
    model.patch_embed.norm.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = torch.randn(1, 3, 84, 56)  # an NCHW input
    with torch.no_grad():
        model(x)
        expected = model.patch_embed.proj(x.contiguous()).permute(0, 2, 3, 1)  # the conv in NCHW
    assert seen[0].shape == (1, 21, 14, 16) and seen[0].is_contiguous()
    torch.testing.assert_close(seen[0], expected, atol=1e-5, rtol=1e-5)


def _convmixer():
    return ConvMixer(dict(dim=16, depth=2, kernel_size=5, patch_size=7, act='gelu'), out_indices=(0, 1))


def _vitae():
    return ViTAE(dict(embed_dims=(8, 8, 16), token_dims=(8, 16, 32), depth=1, num_heads=2, mlp_ratio=2.,
                      group=4), drop_path_rate=0.)


CHANNELS_LAST_FAMILIES = [_convmixer, _coatnet, _vitae]
CHANNELS_LAST_IDS = ['convmixer', 'coatnet', 'vitae']


@pytest.mark.parametrize('build', [_coatnet, _vitae], ids=['coatnet', 'vitae'])
def test_convolutions_stay_channels_last(build):
    model = build()
    nchw = {k: v.contiguous() for k, v in build().state_dict().items()}  # e.g. a timm checkpoint
    model.load_state_dict(nchw)
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    # the same weights loaded into contiguous (NCHW) memory give the same maps
    reference = build()
    reference.load_state_dict(nchw)
    reference.to(memory_format=torch.contiguous_format)
    x = torch.randn(1, 3, 72, 56)  # an NCHW input
    with torch.no_grad():
        outs = model.eval()(x)
        expected = reference.eval()(x)
    assert all(o.dim() == 4 and o.is_contiguous(memory_format=torch.channels_last) for o in outs)
    for a, b in zip(outs, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('capability, inference_layout', [
    ('AVX2', torch.contiguous_format), ('AVX512', torch.channels_last)])
def test_convmixer_layout_follows_the_call(monkeypatch, capability, inference_layout):
    """ConvMixer keeps NCHW-strided weights, so its convolutions follow the
    input's layout: channels-last under autograd; for inference, NCHW where
    oneDNN has only AVX2 (its NHWC depthwise kernel is the slow one there).
    Every layout gives the NCHW reference's maps."""
    import densekit.backbones.base as base
    monkeypatch.setattr(base, '_CPU_CAPABILITY', capability)
    model = _convmixer()
    nchw = {k: v.contiguous() for k, v in model.state_dict().items()}
    model.load_state_dict(nchw)
    reference = _convmixer().eval()
    reference.load_state_dict(nchw)
    x = torch.randn(1, 3, 70, 56)  # whole patches: the reference below does not pad
    expected = []
    with torch.no_grad():  # the reference's own layout, plain NCHW convolutions
        y = reference.stem(x)
        for block in reference.blocks:
            expected.append(y := block(y))
        outs = model.eval()(x)
    assert all(o.is_contiguous(memory_format=inference_layout) for o in outs)
    assert not any(o.is_contiguous(memory_format=torch.channels_last) for o in expected)
    for a, b in zip(outs, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    outs = model(x)  # autograd on: channels-last whatever the CPU
    assert all(o.is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous() for o in outs)
    for a, b in zip(outs, expected):
        torch.testing.assert_close(a.detach(), b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('build', CHANNELS_LAST_FAMILIES, ids=CHANNELS_LAST_IDS)
def test_gradients_into_outputs_become_channels_last(build):
    """A mean (or global pooling) sends back a broadcast NCHW gradient; the
    backbone turns it channels-last before its own backward uses it (torch's
    CPU BatchNorm backward is several times slower on mixed layouts), and the
    gradients are those of the NCHW reference."""
    model, reference = build().train(), build().train()
    reference.load_state_dict(model.state_dict())
    reference.to(memory_format=torch.contiguous_format)
    x = torch.randn(2, 3, 64, 48)
    torch.manual_seed(0)  # ViTAE's Performer has dropout: the same masks in both
    outs = model(x)
    seen = []  # registered after the backbone's own hook: sees what its backward gets
    for o in outs:
        o.register_hook(lambda g: seen.append(g.is_contiguous(memory_format=torch.channels_last)))
    sum(o.mean() for o in outs).backward()
    assert seen == [True] * len(outs)
    torch.manual_seed(0)
    sum(o.mean() for o in reference(x)).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


class _WeightCasts(TorchDispatchMode):
    """Counts dtype conversions whose source is one of ``weights``."""

    def __init__(self, weights):
        super().__init__()
        self.ptrs, self.count = {w.data_ptr() for w in weights}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._to_copy.default and args[0].data_ptr() in self.ptrs:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('family', FAMILIES)
def test_autocast_inference_casts_weights_once(family):
    model = _model(family).eval()
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    x = torch.randn(1, 3, 72, 56)

    def run(call):
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16), _WeightCasts(weights) as casts:
            return call(x), casts.count

    outs, _ = run(model)
    outs, casts = run(model)
    expected, plain_casts = run(lambda x: torch.nn.Module.__call__(model, x))  # autocast alone
    assert casts == 0 and plain_casts >= len(weights)
    assert all(torch.equal(a, b) for a, b in zip(outs, expected))
    # weights changed in place (an optimizer step, a checkpoint load) are cast again
    with torch.no_grad():
        weights[0].mul_(-1)
    outs, casts = run(model)
    expected, _ = run(lambda x: torch.nn.Module.__call__(model, x))
    assert casts == 1 and all(torch.equal(a, b) for a, b in zip(outs, expected))
    # a call with gradients drops the copies
    model(x)
    assert '_autocast_weight_cache' not in model.__dict__
