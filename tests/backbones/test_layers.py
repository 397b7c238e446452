"""Shared layers (backbones/layers.py): the biased attention behind Swin and
LeViT, against its plain autograd form (the written-out attention of the
official Swin and LeViT code)."""
import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks

from densekit.backbones.layers import TableBias, biased_attention


def written_out(q, k, v, bias):
    """softmax(q k^T / sqrt(d) + bias) v as the official code computes it;
    ``bias`` (G, heads, N, M) repeated over the batch."""
    bias = bias.repeat(q.shape[0] // bias.shape[0], 1, 1, 1) if bias.dim() == 4 else bias
    return ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5 + bias).softmax(-1) @ v


# (B, heads, N, M, key dim, value dim, bias groups G or None for a 3-D bias)
CASES = {
    'swin-unshifted': (3, 2, 49, 49, 8, 8, 1),
    'swin-shifted-windows': (6, 2, 49, 49, 8, 8, 3),  # 2 images x 3 windows, a bias per window
    'levit-wide-values': (2, 3, 16, 16, 4, 16, None),
    'levit-subsample': (2, 3, 4, 16, 4, 8, None),  # fewer queries than keys
}


def _inputs(B, h, N, M, dk, dv, G, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    shapes = [(B, h, N, dk), (B, h, M, dk), (B, h, M, dv), (h, N, M) if G is None else (G, h, N, M)]
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


@pytest.mark.parametrize('case', CASES.values(), ids=CASES.keys())
def test_biased_attention_matches_written_out_attention(case):
    inputs = _inputs(*case)
    out = biased_attention(*inputs)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, inputs, grad)
    ref_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    ref = written_out(*ref_inputs)
    expected = torch.autograd.grad(ref, ref_inputs, grad)
    torch.testing.assert_close(out, ref)
    for name, a, b in zip('q k v bias'.split(), got, expected):
        torch.testing.assert_close(a, b, msg=lambda m: f'grad of {name}: {m}')
    with torch.no_grad():  # the inference path is the same forward
        torch.testing.assert_close(biased_attention(*inputs), ref)


@pytest.mark.parametrize('case', [CASES['swin-unshifted'], CASES['swin-shifted-windows']],
                         ids=['one-bias', 'bias-per-window'])
def test_biased_attention_gradcheck(case):
    """The hand-written backward (Swin's path) against finite differences."""
    B, h, N, M, dk, dv, G = case
    small = (B, h, min(N, 6), min(M, 9), dk, dv, G)
    assert torch.autograd.gradcheck(biased_attention, _inputs(*small, dtype=torch.float64))


def test_biased_attention_keeps_no_attention_map_for_backward():
    """The memory point of Swin's path: what autograd keeps is q, k, v and the
    bias, not the (B, heads, N, M) probabilities, which the backward recomputes."""
    B, h, N, M, dk, dv, G = CASES['swin-unshifted']
    inputs = _inputs(B, h, N, M, dk, dv, G)
    saved = []

    def pack(t):
        saved.append(t.shape)
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        out = biased_attention(*inputs)
    assert saved, 'nothing recorded: the hooks saw no autograd'
    assert all(s.numel() < B * h * N * M for s in saved), saved
    out.sum().backward()  # and the backward runs from what was kept
    assert all(t.grad is not None for t in inputs)


def _table_bias(h, N, M, kind, G=None, dtype=torch.float32):
    """A ``TableBias`` as Swin (an index with repeats, optional per-window
    mask) or CoAtNet (the 2-D offsets of an H x W map) makes it."""
    g = torch.Generator().manual_seed(1)
    if kind == 'flat':
        table = torch.randn(h, 13, generator=g, dtype=dtype)
        index = torch.randint(0, 13, (N, M), generator=g)
    else:  # 2-D offsets of an H x W map, N = M = H * W
        H, W = 3, N // 3
        table = torch.randn(h, (2 * H - 1) * (2 * W - 1), generator=g, dtype=dtype)
        ry, rx = torch.arange(H), torch.arange(W)
        dy = ry[:, None] - ry[None] + H - 1
        dx = rx[:, None] - rx[None] + W - 1
        index = (dy[:, None, :, None] * (2 * W - 1) + dx[None, :, None, :]).reshape(N, N)
    mask = None
    if G is not None:
        mask = (torch.rand(G, 1, N, M, generator=g) < 0.3).to(dtype) * -100.
    return TableBias(table.requires_grad_(), index, mask)


# (B, heads, N, M, d, index kind, mask groups)
TABLE_CASES = {
    'swin-unshifted': (2, 2, 9, 9, 8, 'flat', None),
    'swin-shifted': (6, 2, 9, 9, 8, 'flat', 3),  # 2 images x 3 windows
    'coatnet': (2, 3, 12, 12, 8, 'grid', None),
    'coatnet-batch-1': (1, 3, 12, 12, 8, 'grid', None),
}


def _table_inputs(B, h, N, M, d, kind, G, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    qkv = [torch.randn(B, h, n, d, generator=g, dtype=dtype).requires_grad_() for n in (N, M, M)]
    return qkv, _table_bias(h, N, M, kind, G, dtype)


@pytest.mark.parametrize('case', TABLE_CASES.values(), ids=TABLE_CASES.keys())
def test_table_bias_matches_written_out_attention(case):
    """A bias given as its table and index (rebuilt in the backward) gives the
    outputs and the q/k/v/table gradients of the written-out attention on the
    bias gathered with plain autograd."""
    (q, k, v), recipe = _table_inputs(*case)
    out = biased_attention(q, k, v, recipe)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v, recipe.table), grad)
    ref_inputs = [t.detach().clone().requires_grad_() for t in (q, k, v, recipe.table)]
    ref_bias = ref_inputs[3][:, recipe.index]  # plain advanced indexing and autograd
    ref_bias = ref_bias if recipe.mask is None else ref_bias + recipe.mask
    ref = written_out(*ref_inputs[:3], ref_bias)
    expected = torch.autograd.grad(ref, ref_inputs, grad)
    torch.testing.assert_close(out, ref)
    for name, a, b in zip('q k v table'.split(), got, expected):
        torch.testing.assert_close(a, b, msg=lambda m: f'grad of {name}: {m}')
    with torch.no_grad():
        torch.testing.assert_close(biased_attention(q, k, v, recipe), ref)


@pytest.mark.parametrize('case', [TABLE_CASES['swin-shifted'], TABLE_CASES['coatnet']], ids=['flat-masked', 'grid'])
def test_table_bias_gradcheck(case):
    (q, k, v), recipe = _table_inputs(*case, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda q, k, v, t: biased_attention(q, k, v, recipe._replace(table=t)),
                                    (q, k, v, recipe.table))


@pytest.mark.parametrize('form', ['table', 'tensor'])
def test_table_bias_is_not_kept_for_backward(form):
    """At batch 1 the bias is as large as the attention map. Given as a
    ``TableBias`` nothing of its size is kept for the backward (what the
    recipe form is for); given as a tensor it is."""
    (q, k, v), recipe = _table_inputs(*TABLE_CASES['coatnet-batch-1'])
    _, h, N, d = q.shape
    bias = recipe if form == 'table' else recipe.materialize()
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        out = biased_attention(q, k, v, bias)
    big = [n for n in saved if n >= h * N * N]
    assert saved, 'nothing recorded: the hooks saw no autograd'
    assert (not big) if form == 'table' else big == [h * N * N], saved
    out.sum().backward()
    assert recipe.table.grad is not None and recipe.table.grad.abs().sum() > 0
