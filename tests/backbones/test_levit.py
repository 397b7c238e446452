"""LeViT backbone: pyramid shapes at any size, parity with timm, BN fusion,
attention-bias resampling, checkpoint layouts (official, timm, mmpretrain)."""
import pytest
import timm
import torch

from densekit.backbones.levit import LeViT, resample_bias_table
from tests.helpers import assert_checkpointing_matches, assert_drop_path_random_in_training_only

TINY = dict(embed_dims=(32, 48, 64), key_dim=8, num_heads=(2, 3, 4), depths=(1, 1, 1))
ALL = (0, 1, 2, 3, 4)
BN_STATE = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')


@torch.no_grad()
def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights everywhere: the zero-initialised BN weights of the
    residual branches and the zero attention biases would hide mistakes."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    for name, b in model.named_buffers():
        if name.endswith('running_mean'):
            b.copy_(torch.randn(b.shape, generator=g) * 0.2)
        elif name.endswith('running_var'):
            b.copy_(torch.rand(b.shape, generator=g) * 1.5 + 0.5)
    return model


def _timm(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return _randomize(timm.create_model(name, pretrained=False)).eval()


def _timm_levels(ref: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """timm's maps for our five levels: the stem after conv2/conv3 (+ Hardswish),
    then ``forward_intermediates`` (the three stages)."""
    taps = {}
    hooks = [ref.stem.act2.register_forward_hook(lambda m, i, o: taps.__setitem__(0, o)),
             ref.stem.act3.register_forward_hook(lambda m, i, o: taps.__setitem__(1, o))]
    with torch.no_grad():
        stages = ref.forward_intermediates(x, intermediates_only=True)
    for h in hooks:
        h.remove()
    return [taps[0], taps[1], *stages]


def _official_names(depths) -> list[str]:
    """State-dict keys of facebookresearch/LeViT's ``model_factory`` model, in
    its module order (levit.py: ``b16`` patch_embed, one flat ``blocks``
    Sequential of Residual(Attention) / Residual(MLP) / AttentionSubsample,
    ``head`` and ``head_dist`` BN_Linear)."""
    def lin_bn(p):
        return [f'{p}.c.weight'] + [f'{p}.bn.{s}' for s in BN_STATE]

    names = [n for i in (0, 2, 4, 6) for n in lin_bn(f'patch_embed.{i}')]
    n = 0
    for i, depth in enumerate(depths):
        for _ in range(depth):
            names += [f'blocks.{n}.m.attention_biases', f'blocks.{n}.m.attention_bias_idxs',
                      *lin_bn(f'blocks.{n}.m.qkv'), *lin_bn(f'blocks.{n}.m.proj.1'),
                      *lin_bn(f'blocks.{n + 1}.m.0'), *lin_bn(f'blocks.{n + 1}.m.2')]
            n += 2
        if i < len(depths) - 1:
            names += [f'blocks.{n}.attention_biases', f'blocks.{n}.attention_bias_idxs',
                      *lin_bn(f'blocks.{n}.kv'), *lin_bn(f'blocks.{n}.q.1'), *lin_bn(f'blocks.{n}.proj.1'),
                      *lin_bn(f'blocks.{n + 1}.m.0'), *lin_bn(f'blocks.{n + 1}.m.2')]
            n += 2
    for head in ('head', 'head_dist'):
        names += [f'{head}.bn.{s}' for s in BN_STATE] + [f'{head}.l.weight', f'{head}.l.bias']
    return names


def _mmpretrain_names(depths) -> list[str]:
    """Keys of mmpretrain's ``LeViT`` backbone (mmpretrain/models/backbones/levit.py:
    ``patch_embed.patch_embed`` HybridBackbone, one Sequential per stage:
    [AttentionSubsample, Residual(MLP),] then Residual(Attention) / Residual(MLP))."""
    def lin_bn(p):
        return [f'{p}.linear.weight'] + [f'{p}.bn.{s}' for s in BN_STATE]

    def mlp(p):
        return [*lin_bn(f'{p}.block.linear1'), *lin_bn(f'{p}.block.linear2')]

    names = [n for i in (0, 2, 4, 6) for n in
             [f'patch_embed.patch_embed.{i}.conv.weight'] + [f'patch_embed.patch_embed.{i}.bn.{s}' for s in BN_STATE]]
    for i, depth in enumerate(depths):
        k = 0
        if i > 0:
            p = f'stages.{i}.0'
            names += [f'{p}.attention_biases', f'{p}.attention_bias_idxs',
                      *lin_bn(f'{p}.kv'), *lin_bn(f'{p}.q.1'), *lin_bn(f'{p}.proj.1'), *mlp(f'stages.{i}.1')]
            k = 2
        for _ in range(depth):
            p = f'stages.{i}.{k}'
            names += [f'{p}.block.attention_biases', f'{p}.block.attention_bias_idxs',
                      *lin_bn(f'{p}.block.qkv'), *lin_bn(f'{p}.block.proj.1'), *mlp(f'stages.{i}.{k + 1}')]
            k += 2
    return names


def _relayout(timm_state: dict, names: list[str]) -> dict:
    """Re-key timm's tensors by position, as timm's original LeViT converter
    did (same module order in both); derived index buffers become dummies."""
    items = iter(timm_state.items())
    out = {}
    for name in names:
        if name.endswith('attention_bias_idxs'):
            out[name] = torch.zeros(1, dtype=torch.long)
            continue
        key, value = next(items)
        assert name.rsplit('.', 1)[-1] == key.rsplit('.', 1)[-1], (name, key)
        out[name] = value
    assert next(items, None) is None
    return out


# -- shapes -------------------------------------------------------------------


@pytest.mark.parametrize('size', [(64, 64), (375, 500), (97, 61), (33, 35), (224, 224)])
def test_pyramid_strides_at_any_size(size):
    model = _randomize(LeViT(TINY, out_indices=ALL)).eval()
    outs = model(torch.randn(1, 3, *size))
    assert model.out_strides == (4, 8, 16, 32, 64)
    assert model.out_channels == (8, 16, 32, 48, 64)
    assert len(outs) == 5
    for out, stride, ch in zip(outs, model.out_strides, model.out_channels):
        assert out.shape == (1, ch, -(-size[0] // stride), -(-size[1] // stride))
        assert torch.isfinite(out).all()


def test_levels_default_to_the_4_to_32_pyramid():
    model = LeViT('256')
    assert model.out_strides == (4, 8, 16, 32)
    assert model.out_channels == (64, 128, 256, 384)
    assert len(model.stages) == 2  # stage 3 (/64) is built only when asked for
    assert len(LeViT('256', out_indices=ALL).stages) == 3
    assert LeViT('128S', out_indices=(4,)).out_channels == (384,)
    outs = LeViT(TINY, out_indices=(1, 3)).eval()(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 48]
    with pytest.raises(ValueError, match='out_indices'):
        LeViT(TINY, out_indices=(5,))
    with pytest.raises(KeyError, match="unknown arch '512'"):
        LeViT('512')


@pytest.mark.parametrize('arch,paper', [('128s', 7.8), ('128', 9.2), ('192', 11.0), ('256', 18.9), ('384', 39.1)])
def test_variants_match_timm_and_the_paper(arch, paper):
    """Backbone + the two classifier heads (class and distillation, each
    BN + Linear to 1000 classes) = timm's ``levit_*`` exactly, and the
    paper's parameter counts (the official README rounds them to 7.8/9.2/11/19/39M)."""
    model = LeViT(arch, out_indices=ALL)
    C = model.level_channels[-1]
    heads = 2 * (2 * C + C * 1000 + 1000)
    total = sum(p.numel() for p in model.parameters()) + heads
    ref = timm.create_model(f'levit_{arch}')
    assert total == sum(p.numel() for p in ref.parameters())
    assert abs(total / 1e6 - paper) < 0.06, total


# -- parity with timm -----------------------------------------------------------


@pytest.mark.parametrize('name', ['levit_128s', 'levit_256', 'levit_conv_128s'])
def test_matches_timm(name):
    """Converted timm weights reproduce timm's stem taps and stage outputs at
    224 (fp32, eval, <= 1e-4); ``levit_conv_*`` (1x1 convs) loads as well."""
    ref = _timm(name)
    arch = name.split('_')[-1]
    ours = LeViT(arch, out_indices=ALL).eval()
    report = ours.load_pretrained_state(ref.state_dict())
    assert not report.missing and not report.unexpected
    assert report.ignored and all(k.startswith(('head.', 'head_dist.')) for k in report.ignored)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        got = ours(x)
    for e, g in zip(_timm_levels(ref, x), got, strict=True):
        assert g.shape == e.shape
        assert (g - e).abs().max().item() <= 1e-4


def test_unbuilt_stage_and_heads_are_reported_ignored():
    ref = _timm('levit_128s')
    ours = LeViT('128s')  # levels 0..3: stage 3 not built
    report = ours.load_pretrained_state(ref.state_dict())
    assert not report.missing and not report.unexpected
    assert any(k.startswith('stages.2.') for k in report.ignored)
    assert {k.split('.')[0] for k in report.ignored} == {'stages', 'head', 'head_dist'}
    assert torch.equal(ours.stages[1].downsample.attn_downsample.attention_biases,
                       ref.stages[1].downsample.attn_downsample.attention_biases)


# -- BN fusion -------------------------------------------------------------------


@pytest.mark.parametrize('size', [(224, 224), (97, 61)])
def test_fuse_keeps_outputs(size):
    model = _randomize(LeViT('128s', out_indices=ALL)).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        before = model(x)
        fused = model.switch_to_deploy()
        after = fused(x)
    assert fused is model and model.deploy
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert not any('.bn.' in k for k in model.state_dict())
    for b, a in zip(before, after, strict=True):
        assert (b - a).abs().max().item() <= 1e-4
    model.fuse()  # idempotent
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(after, model(x)))


# -- attention biases --------------------------------------------------------------


def test_bias_table_resampled_at_runtime_equals_resampled_on_load():
    """A model kept at img_size 224 and run on 320x320 (14x14 tables used at
    20x20) equals a model built for 320 whose tables were resampled once when
    the 224 weights were loaded."""
    src = _randomize(LeViT(TINY, out_indices=ALL)).eval()
    dst = LeViT(TINY, out_indices=ALL, img_size=320).eval()
    assert dst.stages[0].blocks[0].attn.attention_biases.shape == (2, 20 * 20)
    report = dst.load_pretrained_state(src.state_dict())
    assert not report.missing and not report.unexpected
    x = torch.randn(1, 3, 320, 320)
    with torch.no_grad():
        for a, b in zip(src(x), dst(x), strict=True):
            assert (a - b).abs().max().item() <= 1e-5


def test_bias_table_resampling():
    table = torch.randn(3, 14 * 14)
    assert resample_bias_table(table, (14, 14), (14, 14)) is table
    wide = resample_bias_table(table, (14, 14), (24, 32))
    assert wide.shape == (3, 24 * 32)
    flat = resample_bias_table(torch.full((3, 16), 0.7), (4, 4), (7, 3))
    assert torch.allclose(flat, torch.full_like(flat, 0.7), atol=1e-6)
    # the gathered bias depends only on |dy|, |dx|: query (y, x) to key (y', x')
    attn = LeViT(TINY).stages[0].blocks[0].attn
    torch.nn.init.normal_(attn.attention_biases)
    H, W = 5, 7
    bias = attn.attention_bias((H, W), (H, W), 1)
    grid = resample_bias_table(attn.attention_biases, attn.resolution, (H, W)).view(-1, H, W)
    assert bias.shape == (2, H * W, H * W)
    assert torch.equal(bias[:, 1 * W + 6, 4 * W + 2], grid[:, 3, 4])


def test_gradients_reach_bias_tables_at_other_sizes():
    model = _randomize(LeViT(TINY, out_indices=ALL)).train()
    sum(o.square().mean() for o in model(torch.randn(2, 3, 97, 61))).backward()
    for name, p in model.named_parameters():
        if name.endswith('attention_biases'):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- checkpoint layouts -------------------------------------------------------------


def test_loads_official_layout_file(tmp_path):
    """A file in the official release's layout ({'model': ...},
    ``patch_embed.0.c.weight``, ``blocks.N.m.qkv.c.weight``, ...) reproduces timm."""
    ref = _timm('levit_128s')
    official = _relayout(ref.state_dict(), _official_names(LeViT.arch_settings['128s']['depths']))
    # 128S: stage 1 is blocks 0-3, shrinking attention 4 (+ MLP 5), stage 2 is 6-11, ...
    assert 'blocks.4.kv.c.weight' in official and 'blocks.12.q.1.c.weight' in official
    path = tmp_path / 'LeViT-128S-96703c44.pth'
    torch.save({'model': official, 'epoch': 999}, path)
    ours = LeViT('128s', out_indices=ALL, init_cfg=dict(type='Pretrained', checkpoint=str(path))).eval()
    ours.init_weights()
    report = ours.load_pretrained(str(path))
    assert not report.missing and not report.unexpected
    assert sorted(report.ignored) == sorted(k for k in official if k.startswith('head'))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for e, g in zip(_timm_levels(ref, x), ours(x), strict=True):
            assert (g - e).abs().max().item() <= 1e-4


def test_loads_mmpretrain_layout(tmp_path):
    ref = _timm('levit_128s')
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith('head')}
    mm = _relayout(state, _mmpretrain_names(LeViT.arch_settings['128s']['depths']))
    mm = {f'backbone.{k}': v for k, v in mm.items()}
    mm['head.head.l.weight'] = torch.zeros(1000, 384)
    path = tmp_path / 'levit-128s_3rdparty_in1k.pth'
    torch.save({'state_dict': mm, 'meta': {}}, path)
    ours = LeViT('128s', out_indices=ALL).eval()
    report = ours.load_pretrained(str(path), prefix='backbone.')
    assert not report.missing and not report.unexpected and not report.ignored
    x = torch.randn(1, 3, 224, 224)  # timm's LeViT runs at its img_size only
    with torch.no_grad():
        for e, g in zip(_timm_levels(ref, x), ours(x), strict=True):
            assert (g - e).abs().max().item() <= 1e-4


def test_checkpoint_that_does_not_fit_names_keys(tmp_path):
    path = tmp_path / 'levit_128s.pth'
    torch.save(LeViT('128s').state_dict(), path)
    with pytest.raises(ValueError, match=r'(?s)levit_128s\.pth does not fit LeViT.*stem\.conv1\.linear\.weight'):
        LeViT('256').load_pretrained(str(path))


# -- training ------------------------------------------------------------------------


def test_frozen_stages_stay_frozen_in_train_mode():
    model = LeViT(TINY, frozen_stages=2)
    model.init_weights()
    model.train()
    frozen = [model.stem, model.stages[0]]
    assert not any(m.training for f in frozen for m in f.modules())
    assert not any(p.requires_grad for f in frozen for p in f.parameters())
    assert model.stages[1].training and all(p.requires_grad for p in model.stages[1].parameters())
    model = LeViT(TINY, frozen_stages=0).train()
    assert not model.stem.conv2.training and model.stem.conv3.training
    with pytest.raises(ValueError, match='frozen_stages'):
        LeViT(TINY, frozen_stages=5)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    plain = _randomize(LeViT(TINY, out_indices=ALL))
    cp = LeViT(TINY, out_indices=ALL, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 80)
    assert_checkpointing_matches(plain, cp, x)


def test_drop_path_is_stochastic_in_training_only():
    model = _randomize(LeViT(TINY, drop_path_rate=0.5))
    x = torch.randn(2, 3, 64, 64)
    assert_drop_path_random_in_training_only(model, x)


def test_init_weights_gives_zero_residual_branches():
    """Default init (official/timm): residual branches end in BN with weight 0
    and attention biases start at 0."""
    model = _randomize(LeViT(TINY, out_indices=ALL))
    model.init_weights()
    block = model.stages[1].blocks[0]
    assert torch.equal(block.attn.proj.ln.bn.weight, torch.zeros(48))
    assert torch.equal(block.mlp.ln2.bn.weight, torch.zeros(48))
    assert torch.equal(block.attn.attention_biases, torch.zeros_like(block.attn.attention_biases))
    assert torch.equal(model.stages[1].downsample.attn_downsample.proj.ln.bn.weight, torch.ones(48))
