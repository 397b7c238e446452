"""Every backbone family traces under ``torch.compile`` as one graph (issue 6).

For a tiny instance of each family, at a square input and at a non-square one
that none of the strides divides (the families' padding paths):

* eval mode: ``torch._dynamo.explain`` finds no graph break (the message lists
  the break reasons);

and at the non-square one:

* eval mode: the graph compiled with ``fullgraph=True`` gives the eager
  outputs under ``no_grad`` (the inference path, where the bias caches of
  ``backbones.layers.cached_for_inference`` step aside);
* train mode: a forward and backward through ``aot_eager`` (the autograd
  graph inductor would get, without code generation) gives the eager outputs,
  gradients and BatchNorm statistics.

Backends are the cheapest that check this: 'eager' runs the captured graph
as it is; 'aot_eager' adds the functionalised forward/backward split.
"""
import copy

import pytest
import torch

from densekit.backbones import CoAtNet, ConvMixer, LeViT, MAEViT, SwinTransformer, VisionTransformer, ViTAE

# tiny archs, as in tests/backbones/test_<family>.py, with fewer blocks where
# every code path stays (compilation time grows with the number of blocks):
# Swin's shifted windows are the first stage's second block; ViTAE keeps its
# three reduction cells (with and without attention) and one normal cell
FAMILIES = {
    'swin': lambda: SwinTransformer(dict(embed_dims=16, depths=(2, 1, 1, 1), num_heads=(1, 2, 2, 4)),
                                    window_size=7, drop_path_rate=0.),
    'vit': lambda: VisionTransformer(dict(embed_dims=32, depth=2, num_heads=2), out_indices=(0, 1),
                                     out_norm='last'),
    'mae': lambda: MAEViT(dict(embed_dims=32, depth=2, num_heads=2), out_indices=(0, 1), drop_path_rate=0.),
    'vitae': lambda: ViTAE(dict(embed_dims=(8, 8, 16), token_dims=(8, 16, 32), depth=1, num_heads=2,
                                mlp_ratio=2., group=4), drop_path_rate=0.),
    'levit': lambda: LeViT(dict(embed_dims=(32, 48, 64), key_dim=8, num_heads=(2, 3, 4), depths=(1, 1, 1))),
    # a small pretrain size keeps the traced bias-table resampling short (it runs at every size here)
    'coatnet': lambda: CoAtNet(dict(stem_width=16, embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1)),
                               pretrain_img_size=32, drop_path_rate=0.),
    'convmixer': lambda: ConvMixer(dict(dim=16, depth=3, kernel_size=5, patch_size=7, act='gelu'),
                                   out_indices=(0, 2)),
}
# 72 x 56: neither side a multiple of 16 (72 not of 7 either), so every family
# pads or rounds an odd map up somewhere (patches, windows, 2x2 pools, RC3)
SIZES = [(64, 64), (72, 56)]


def _model(family: str) -> torch.nn.Module:
    """The tiny model, with non-trivial weights everywhere (zero-initialised
    bias tables and BN weights would hide errors) and without dropout (ViTAE's
    is fixed at 0.1): masks drawn in eager and in a compiled graph differ (and
    aot_eager on CPU fails in dropout's backward, whose traced output strides
    are not the CPU kernel's: pytorch/pytorch#120035)."""
    torch.manual_seed(0)
    model = FAMILIES[family]()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.
    return model


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('family', FAMILIES)
def test_eval_forward_has_no_graph_break(family, size):
    model = _model(family).eval()
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(torch.randn(1, 3, *size))
    reasons = '\n'.join(f'- {r.reason}\n  at {r.user_stack[-1] if r.user_stack else "?"}'
                        for r in explained.break_reasons)
    assert explained.graph_break_count == 0, f'{family} at {size}: graph breaks\n{reasons}'


# one size (the padded one) from here on: compiling costs seconds per family
@pytest.mark.parametrize('family', FAMILIES)
def test_compiled_inference_matches_eager(family):
    model = _model(family).eval()
    x = torch.randn(1, 3, *SIZES[1])
    with torch.no_grad():
        expected = model(x)
        got = torch.compile(model, backend='eager', fullgraph=True)(x)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('family', FAMILIES)
def test_train_step_through_aot_autograd(family):
    eager = _model(family).train()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, backend='aot_eager', fullgraph=True)
    x = torch.randn(2, 3, *SIZES[1])
    outs = []
    for run in (eager, compiled):
        y = run(x)
        sum(o.square().mean() for o in y).backward()
        outs.append(y)
    assert len(outs[1]) == len(outs[0])
    for a, b in zip(outs[1], outs[0]):
        torch.testing.assert_close(a, b)
    for (name, p), q in zip(eager.named_parameters(), compiled_model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=lambda m: f'{family}: grad of {name}: {m}')
    for (name, b), c in zip(eager.named_buffers(), compiled_model.buffers()):
        torch.testing.assert_close(c, b, msg=lambda m: f'{family}: buffer {name}: {m}')
