"""ViTAE backbone: cells, official checkpoint layout, paper sizes, pyramid at any size,
and outputs of the official code.

There is no ViTAE in timm, mmseg or mmpretrain. The official code (not
installable) was run once to record a small official classifier, an input and
its outputs (``tests/data/vitae_official_tiny.npz``, made by
``tests/data/make_vitae_official_fixture.py``): our backbone and our classifier
config must reproduce them. Besides, the official layout is written down here
from the official code, independently of ``backbones.vitae``
(:func:`official_state_shapes`), and the cells are checked against the
definitions they implement (Performer kernel attention, PCM fused by addition,
dilation-major PRM concatenation).
"""
import argparse
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from densekit.backbones.vitae import PRM, NormalCell, ReductionCell, TokenPerformer, ViTAE

# a narrow ViTAE (RC3 without attention needs token_dims[2] == 2 * embed_dims[2])
SMALL_ARCH = dict(embed_dims=(8, 8, 16), token_dims=(8, 16, 32), depth=2, num_heads=2, mlp_ratio=2., group=4)


def official_state_shapes(embed_dims, token_dims, depth, mlp_ratio, group, num_classes=1000):
    """Key -> shape of the official ``ViTAE_ViT_basic(stages=3, ...).state_dict()``
    for ViTAE-T/6M/S, written down from the official constructors:

    - ``vitmodules.py`` (Annbless/ViTAE@b5a1ca2, the code of the paper, kept in
      ViTAE-Transformer/ViTAE-Transformer ``Image-Classification/vitae/``):
      ``self.layers = nn.ModuleList(Layers)`` of ``BasicLayer``, each with
      ``self.RC = ReductionCell(...)`` and ``self.NC = nn.ModuleList([NormalCell(...)])``;
      ``self.head = nn.Linear(self.tokens_dims[-1], num_classes)``; defaults
      ``kernel_size=[7, 3, 3, 3]``, ``dilations=[[1, 2, 3, 4], [1, 2, 3], [1, 2], [1, 2]]``.
    - ``ReductionCell.py``: ``PRM.convs.append(nn.Sequential(*[nn.Conv2d(...), nn.GELU()]))``;
      ``self.PCM = nn.Sequential(nn.Conv2d(in_chans, embed_dims, ...), nn.SiLU(inplace=True),
      nn.Conv2d(embed_dims, embed_dims, ...), nn.BatchNorm2d(embed_dims), nn.SiLU(inplace=True),
      nn.Conv2d(embed_dims, token_dims, ...), nn.SiLU(inplace=True))``;
      ``self.attn = Token_performer(dim=in_chans, in_dim=token_dims, ...)`` with
      ``in_chans = self.PRM.out_chans``; ``'performer_less'``: ``self.attn = None; self.PCM = None``.
    - ``token_performer.py`` (T2T-ViT's, yitu-opensource/T2T-ViT@3862e28):
      ``self.kqv = nn.Linear(dim, 3 * self.emb)``, ``self.proj``, ``self.norm1 = nn.LayerNorm(dim)``,
      ``self.norm2 = nn.LayerNorm(self.emb)``, ``self.mlp = nn.Sequential(nn.Linear, nn.GELU(),
      nn.Linear, nn.Dropout)``, ``self.w = nn.Parameter(... (self.m, self.emb) ..., requires_grad=False)``
      with ``self.m = int(self.emb * kernel_ratio)``, ``kernel_ratio=0.5``.
    - ``NormalCell.py``: ``norm1``, ``attn = Attention`` (``qkv``, ``proj``), ``norm2``,
      ``mlp = Mlp`` (``fc1``, ``fc2``), ``self.PCM = nn.Sequential(nn.Conv2d(dim, mlp_hidden_dim,
      3, 1, 1, 1, group), nn.BatchNorm2d(mlp_hidden_dim), nn.SiLU(inplace=True),
      nn.Conv2d(mlp_hidden_dim, dim, 3, 1, 1, 1, group), nn.BatchNorm2d(dim), nn.SiLU(inplace=True),
      nn.Conv2d(dim, dim, 3, 1, 1, 1, group), nn.SiLU(inplace=True))``.
    - ``ViTAE.py`` (``ViTAE_basic_Tiny``/``_Small``): ``RC_tokens_type=['performer',
      'performer', 'performer_less']``, ``downsample_ratios=[4, 2, 2]``, ``NC_depth=[0, 0, d]``.
    """
    shapes = {}

    def affine(name, c):
        shapes[f'{name}.weight'], shapes[f'{name}.bias'] = (c,), (c,)

    def linear(name, cout, cin):
        shapes[f'{name}.weight'], shapes[f'{name}.bias'] = (cout, cin), (cout,)

    def conv(name, cout, cin, k, groups=1):
        shapes[f'{name}.weight'], shapes[f'{name}.bias'] = (cout, cin // groups, k, k), (cout,)

    def bn(name, c):
        affine(name, c)
        shapes[f'{name}.running_mean'], shapes[f'{name}.running_var'] = (c,), (c,)
        shapes[f'{name}.num_batches_tracked'] = ()

    in_chans = 3
    for i, (k, dil) in enumerate(zip((7, 3, 3), ((1, 2, 3, 4), (1, 2, 3), (1, 2)))):
        rc, e, t = f'layers.{i}.RC', embed_dims[i], token_dims[i]
        for j in range(len(dil)):
            conv(f'{rc}.PRM.convs.{j}.0', e, in_chans, k)
        if i < 2:  # 'performer' RCs; the third is 'performer_less'
            conv(f'{rc}.PCM.0', e, in_chans, 3)
            conv(f'{rc}.PCM.2', e, e, 3)
            bn(f'{rc}.PCM.3', e)
            conv(f'{rc}.PCM.5', t, e, 3)
            linear(f'{rc}.attn.kqv', 3 * t, e * len(dil))
            linear(f'{rc}.attn.proj', t, t)
            affine(f'{rc}.attn.norm1', e * len(dil))
            affine(f'{rc}.attn.norm2', t)
            linear(f'{rc}.attn.mlp.0', t, t)
            linear(f'{rc}.attn.mlp.2', t, t)
            shapes[f'{rc}.attn.w'] = (int(t * 0.5), t)
        in_chans = t
    dim, hidden = token_dims[2], int(token_dims[2] * mlp_ratio)
    for j in range(depth):
        nc = f'layers.2.NC.{j}'
        affine(f'{nc}.norm1', dim)
        linear(f'{nc}.attn.qkv', 3 * dim, dim)
        linear(f'{nc}.attn.proj', dim, dim)
        affine(f'{nc}.norm2', dim)
        linear(f'{nc}.mlp.fc1', hidden, dim)
        linear(f'{nc}.mlp.fc2', dim, hidden)
        conv(f'{nc}.PCM.0', hidden, dim, 3, group)
        bn(f'{nc}.PCM.1', hidden)
        conv(f'{nc}.PCM.3', dim, hidden, 3, group)
        bn(f'{nc}.PCM.4', dim)
        conv(f'{nc}.PCM.6', dim, dim, 3, group)
    linear('head', num_classes, dim)
    return shapes


def trainable(shapes: dict) -> int:
    """Parameters with gradients: BN statistics and the Performer's fixed ``w`` excluded."""
    return sum(math.prod(s) for k, s in shapes.items()
               if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked', '.attn.w')))


def _randomise_norms(model):
    """Non-trivial BatchNorm statistics and affine terms (defaults would hide a mix-up)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)


# -- layout and size -------------------------------------------------------------


@pytest.mark.parametrize('arch', ['tiny', '6m', 'small'])
def test_state_dict_is_the_official_layout(arch):
    """Our keys and shapes are those of the official model, classifier aside."""
    cfg = ViTAE.arch_settings[arch]
    official = official_state_shapes(cfg['embed_dims'], cfg['token_dims'], cfg['depth'], cfg['mlp_ratio'],
                                     cfg['group'])
    ours = {k: tuple(v.shape) for k, v in ViTAE(arch).state_dict().items()}
    assert set(official) - set(ours) == {'head.weight', 'head.bias'}
    assert set(ours) <= set(official)
    assert {k: official[k] for k in ours} == ours


def test_parameter_counts_follow_the_paper():
    """The paper: ViTAE-T 4.8M, ViTAE-S 23.6M (truncated to one decimal).

    ViTAE-T with its 1000-class classifier is 4.88M (4.89M with the fixed
    random features ``w``, which the official validate.py logs as well). The
    official ViTAE-S (``ViTAE_basic_Small``, whose MACs match the paper's
    5.6G, see the next test) is 23.6M without the classifier and 24.0M with
    it: the paper's 23.6M is the backbone's count.
    """
    for arch in ('tiny', 'small'):
        cfg = ViTAE.arch_settings[arch]
        official = official_state_shapes(cfg['embed_dims'], cfg['token_dims'], cfg['depth'],
                                         cfg['mlp_ratio'], cfg['group'])
        model = ViTAE(arch)
        ours = sum(p.numel() for p in model.parameters())
        assert ours == trainable(official) - math.prod(official['head.weight']) - official['head.bias'][0]
        head = model.level_channels[-1] * 1000 + 1000
        if arch == 'tiny':
            assert math.floor((ours + head) / 1e5) / 10 == 4.8, ours + head
        else:
            assert math.floor(ours / 1e5) / 10 == 23.6, ours


@pytest.mark.parametrize('arch,paper', [('tiny', 1.5), ('small', 5.6)])
def test_macs_follow_the_paper(arch, paper):
    """The paper: 1.5G / 5.6G MACs at 224 (to one decimal, truncated, as
    its parameter counts are). Convolutions and linear layers count 1.59G /
    5.65G; the earlier ViTAE-S widths of the paper's code (token dims
    64/64/384, Annbless/ViTAE ``ViTAE_basic_14``) would count 5.13G."""
    from torch.utils.flop_counter import FlopCounterMode
    model = ViTAE(arch, out_indices=(2,)).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    counts = counter.get_flop_counts()['Global']
    macs = sum(v for op, v in counts.items() if str(op) in ('aten.convolution', 'aten.addmm')) / 2
    assert math.floor(macs / 1e8) / 10 == paper, macs


# -- cells -----------------------------------------------------------------------


def test_prm_concatenates_dilations_in_official_order():
    torch.manual_seed(0)
    prm = PRM(3, 4, kernel_size=7, stride=4, dilations=(1, 2, 3, 4))
    x = torch.randn(2, 3, 32, 24)
    out = prm(x)
    assert out.shape == (2, 16, 8, 6)
    for j, d in enumerate((1, 2, 3, 4)):
        conv = prm.convs[j][0]
        expected = F.gelu(F.conv2d(x, conv.weight, conv.bias, 4, math.ceil((6 * d + 1 - 4) / 2), d))
        assert torch.allclose(out[:, 4 * j:4 * (j + 1)], expected, atol=1e-6)


def test_token_performer_is_kernel_attention_with_value_skip():
    """Linear-time evaluation equals the quadratic form of the Performer
    estimate: y = v + proj(sum_s K(q, k_s) v_s / sum_s K(q, k_s)), with
    K(q, k) = phi(q) . phi(k), phi(x) = exp(w x - |x|^2 / 2) / sqrt(m)."""
    torch.manual_seed(0)
    perf = TokenPerformer(6, 8).eval()
    assert perf.w.shape == (4, 8)
    x = torch.randn(2, 5, 6) * 0.5
    k, q, v = perf.kqv(x).split(8, dim=-1)

    def phi(t):
        return torch.exp(t @ perf.w.T - t.square().sum(-1, keepdim=True) / 2) / 2.

    kernel = phi(q) @ phi(k).transpose(1, 2)  # (B, N, N)
    expected = v + perf.proj(kernel @ v / kernel.sum(-1, keepdim=True))
    assert torch.allclose(perf.attention(x), expected, atol=1e-5)


def test_reduction_cell_shapes_and_padding():
    torch.manual_seed(0)
    rc1 = ReductionCell(3, 8, 12, downsample=4, kernel_size=7, dilations=(1, 2, 3, 4)).eval()
    x = torch.randn(2, 3, 97, 61)
    out = rc1(x)
    assert out.shape == (2, 25, 16, 12)  # ceil(97/4), ceil(61/4)
    # odd sizes are zero-padded on the bottom/right to a multiple of the ratio
    assert torch.allclose(out, rc1(F.pad(x, (0, 3, 0, 3))), atol=1e-6)
    rc3 = ReductionCell(12, 16, 32, downsample=2, kernel_size=3, dilations=(1, 2), with_attention=False)
    assert rc3.PCM is None and rc3.attn is None
    assert rc3(out.permute(0, 3, 1, 2)).shape == (2, 13, 8, 32)
    with pytest.raises(ValueError, match='PRM gives 32 channels'):
        ReductionCell(12, 16, 24, downsample=2, kernel_size=3, dilations=(1, 2), with_attention=False)


def test_reduction_cell_adds_pcm_to_attention():
    """With the attention's value path and the MLP's last layer zeroed, an RC
    is exactly its PCM on the cell's input: the two branches are summed."""
    torch.manual_seed(0)
    rc = ReductionCell(3, 8, 12, downsample=4, kernel_size=7, dilations=(1, 2, 3, 4)).eval()
    _randomise_norms(rc)
    for lin in (rc.attn.kqv, rc.attn.proj, rc.attn.mlp[2]):
        torch.nn.init.zeros_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
    x = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        assert torch.allclose(rc(x), rc.PCM(x).permute(0, 2, 3, 1), atol=1e-6)


def test_normal_cell_shape_and_parallel_pcm():
    torch.manual_seed(0)
    nc = NormalCell(32, num_heads=4, mlp_ratio=2., group=8).eval()
    _randomise_norms(nc)
    x = torch.randn(2, 7, 5, 32)
    assert nc(x).shape == (2, 7, 5, 32)
    # attention and FFN silenced: x + PCM(x), the PCM on the un-normalised tokens
    for lin in (nc.attn.proj, nc.mlp.fc2):
        torch.nn.init.zeros_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
    with torch.no_grad():
        expected = x + nc.PCM(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        assert torch.allclose(nc(x), expected, atol=1e-6)


# -- pyramid ---------------------------------------------------------------------


@pytest.mark.parametrize('arch,size', [('tiny', (375, 500)), ('tiny', (97, 61)), (SMALL_ARCH, (33, 35)),
                                       (SMALL_ARCH, (64, 64)), (SMALL_ARCH, (1, 1))])
def test_pyramid_sizes_at_any_input_size(arch, size):
    model = ViTAE(arch).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert model.out_strides == (4, 8, 16, 32)
    t = model.level_channels
    assert t == ((64, 64, 256, 256) if arch == 'tiny' else (8, 16, 32, 32))
    for out, stride, ch in zip(outs, model.out_strides, model.out_channels):
        assert out.shape == (1, ch, -(-size[0] // stride), -(-size[1] // stride))
        assert torch.isfinite(out).all()


def test_small_levels():
    model = ViTAE('small').eval()
    assert model.out_channels == (96, 192, 384, 384)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[1:]) for o in outs] == [(96, 16, 24), (192, 8, 12), (384, 4, 6), (384, 2, 3)]
    # level 3 is the 2x2 max-pool of level 2
    assert torch.equal(outs[3], F.max_pool2d(outs[2], 2, 2, ceil_mode=True))


def test_out_indices_select_levels_and_validate():
    model = ViTAE(SMALL_ARCH, out_indices=(1, 2)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32] and model.out_strides == (8, 16)
    with pytest.raises(ValueError, match='out_indices'):
        ViTAE(SMALL_ARCH, out_indices=(4,))
    with pytest.raises(KeyError, match="unknown arch 'huge'"):
        ViTAE('huge')


# -- checkpoints -----------------------------------------------------------------


def _reference_tiny():
    torch.manual_seed(0)
    model = ViTAE('tiny', drop_path_rate=0.)
    model.init_weights()
    _randomise_norms(model)
    return model.eval()


def _official_state(model) -> dict:
    """The model's weights under the official names, classifier included."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state['head.weight'] = torch.randn(1000, model.level_channels[-1])
    state['head.bias'] = torch.randn(1000)
    return state


def test_loads_official_release_checkpoint_ema_weights(tmp_path):
    """A timm training checkpoint as the official release ships it
    (``ViTAE-T.pth.tar``: ``state_dict`` plus ``state_dict_ema``): the EMA
    weights load, the classifier is reported as ignored, nothing is missing."""
    ref = _reference_tiny()
    ema = _official_state(ref)
    cfg = ViTAE.arch_settings['tiny']
    assert {k: tuple(v.shape) for k, v in ema.items()} == official_state_shapes(
        cfg['embed_dims'], cfg['token_dims'], cfg['depth'], cfg['mlp_ratio'], cfg['group'])
    raw = {k: v + 1 if v.is_floating_point() else v for k, v in ema.items()}  # the non-EMA weights
    path = tmp_path / 'ViTAE-T.pth.tar'
    torch.save({'epoch': 299, 'arch': 'ViTAE_basic_Tiny', 'state_dict': raw, 'state_dict_ema': ema,
                'metric': 75.3, 'version': 2}, path)

    model = ViTAE('tiny', drop_path_rate=0., init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.eval()
    report = model.load_pretrained(str(path))
    assert report.ignored == ['head.bias', 'head.weight']
    assert not report.missing and not report.unexpected
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for a, b in zip(model(x), ref(x)):
            assert torch.equal(a, b)


def test_loads_plain_and_ddp_state_dicts():
    ref = _reference_tiny()
    model = ViTAE('tiny')
    report = model.load_pretrained_state({f'module.{k}': v for k, v in _official_state(ref).items()})
    assert not report.missing and not report.unexpected
    assert torch.equal(model.layers[0].RC.attn.w, ref.layers[0].RC.attn.w)
    assert torch.equal(model.layers[2].NC[6].PCM[4].running_var, ref.layers[2].NC[6].PCM[4].running_var)


def test_release_with_pickled_args_needs_trust(tmp_path, monkeypatch):
    """timm's CheckpointSaver also pickles the training ``args`` (an
    ``argparse.Namespace``): weights-only loading refuses it, naming the
    opt-in, and loads it once the file is trusted."""
    ref = _reference_tiny()
    path = tmp_path / 'ViTAE-T.pth.tar'
    torch.save({'state_dict_ema': _official_state(ref), 'args': argparse.Namespace(model='ViTAE_basic_Tiny')},
               path)
    model = ViTAE('tiny')
    with pytest.raises(pickle.UnpicklingError, match='DENSEKIT_TRUST_CHECKPOINTS=1'):
        model.load_pretrained(str(path))
    monkeypatch.setenv('DENSEKIT_TRUST_CHECKPOINTS', '1')
    assert not model.load_pretrained(str(path)).missing


def test_checkpoint_of_another_variant_names_the_keys(tmp_path):
    path = tmp_path / 'ViTAE-T.pth'
    torch.save(_official_state(_reference_tiny()), path)
    with pytest.raises(ValueError, match=r'(?s)does not fit ViTAE.*layers\.0\.RC\.PCM\.5\.weight'):
        ViTAE('small').load_pretrained(str(path))


# -- outputs of the official code -----------------------------------------------------

FIXTURE = Path(__file__).parents[1] / 'data' / 'vitae_official_tiny.npz'
# the recorded official model (make_vitae_official_fixture.py: ARCH) in our terms
FIXTURE_ARCH = dict(embed_dims=(8, 8, 16), token_dims=(8, 16, 32), depth=2, num_heads=2, mlp_ratio=2., group=8)


def _official_fixture() -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(official state dict, input, official last tokens (B, N, C), official logits)."""
    data = np.load(FIXTURE)
    state = {k[len('weight/'):]: torch.from_numpy(data[k]).float() if data[k].dtype == np.float16
             else torch.from_numpy(data[k]) for k in data.files if k.startswith('weight/')}
    return (state, torch.from_numpy(data['input']).float(), torch.from_numpy(data['tokens']),
            torch.from_numpy(data['logits']))


def test_backbone_reproduces_the_official_tokens():
    """The recorded official model's weights load into our backbone with
    nothing missing, and its stride-16 map is the official last tokens."""
    state, x, tokens, _ = _official_fixture()
    model = ViTAE(FIXTURE_ARCH, drop_path_rate=0., out_indices=(2,)).eval()
    report = model.load_pretrained_state(state, strict=True)
    assert report.ignored == ['head.bias', 'head.weight']
    with torch.no_grad():
        out = model(x)[0]
    assert (out.flatten(2).transpose(1, 2) - tokens).abs().max() <= 1e-4


def test_classifier_config_reproduces_the_official_logits(tmp_path):
    """An official release file (a timm training checkpoint: ``state_dict``
    and the EMA ``state_dict_ema`` the official validate.py evaluates) loads
    into configs/vitae-t_imagenet.py as it is, classifier included, through
    ``densekit.inference.init_model``; the logits are the official ones: the
    official classifier is the mean token and one linear layer, no norm."""
    from densekit.inference import init_model
    state, x, _, logits = _official_fixture()
    raw = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}  # the non-EMA weights
    path = tmp_path / 'ViTAE-T.pth.tar'
    torch.save({'epoch': 299, 'state_dict': raw, 'state_dict_ema': state}, path)
    options = {'model.backbone.arch': dict(_delete_=True, **FIXTURE_ARCH), 'model.head.in_channels': 32,
               'model.head.num_classes': 10, 'model.data_preprocessor.num_classes': 10}
    config = Path(__file__).parents[2] / 'configs' / 'vitae-t_imagenet.py'
    predictor = init_model(str(config), str(path), cfg_options=options)
    with torch.no_grad():
        ours = predictor.model(x, mode='tensor')
    assert (ours - logits).abs().max() <= 1e-4


# -- training behaviour ------------------------------------------------------------


def test_frozen_stages_stay_frozen_in_train_mode():
    model = ViTAE(SMALL_ARCH, frozen_stages=1)
    model.init_weights()
    model.train()
    for i in (0, 1):
        assert not model.layers[i].training and not model.layers[i].RC.PCM[3].training
        assert not any(p.requires_grad for p in model.layers[i].parameters())
    assert model.layers[2].training
    assert all(p.requires_grad for p in model.layers[2].parameters())
    with pytest.raises(ValueError, match='frozen_stages'):
        ViTAE(SMALL_ARCH, frozen_stages=4)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    plain = ViTAE(SMALL_ARCH, drop_path_rate=0.2)
    cp = ViTAE(SMALL_ARCH, drop_path_rate=0.2, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 48)
    outs = []
    for m in (plain, cp):
        m.train()
        torch.manual_seed(3)  # same dropout / drop-path draws; checkpointing replays them
        out = m(x)
        sum(o.square().mean() for o in out).backward()
        outs.append(out)
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-6)
    for (name, a), b in zip(plain.named_parameters(), cp.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


def test_drop_path_rises_over_normal_cells():
    model = ViTAE(dict(SMALL_ARCH, depth=3), drop_path_rate=0.3)
    rates = [getattr(nc.drop_path, 'drop_prob', 0.) for nc in model.layers[2].NC]
    assert rates == pytest.approx([0., 0.15, 0.3])
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(model(x)[-1], model(x)[-1])


def test_builds_from_a_toolbox_scope():
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    model = MODELS.build(dict(type='densekit.ViTAE', arch='tiny', out_indices=(2,)))
    assert type(model) is ViTAE and model.out_channels == (256,)
