"""Shared layers (backbones/layers.py): the biased attention behind Swin and
LeViT, against its plain autograd form (the written-out attention of the
official Swin and LeViT code)."""
import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks

from backbones.layers import biased_attention


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
