"""Run by tests/test_ddp_conformance.py under torchrun (2 processes, gloo):
for every family, with ``frozen_stages=1`` and with an ``out_indices`` subset
(and the ViTDet-style MAE-ViT: windows, global blocks, relative positions),
build the backbone and a head fed every returned level, wrap it as
mmengine's Runner does (before ``init_weights`` and ``train()``, with
``find_unused_parameters=False``), train 3 SGD iterations on per-rank data,
and check: frozen parameters and buffers bit-identical, every trainable
parameter moved, both ranks' weights equal. Writes one JSON line per run to
``sys.argv[1]`` (rank 0)."""
import copy
import json
import sys
import time

import torch
import torch.distributed as dist
from torch import nn

from tiny_backbones import SUBSETS, TINY, tiny

from densekit.distributed import CPUDistributedDataParallel

# ViTDet-style MAE-ViT: windows of 3 on the 4x4 map (padded), block 1 global,
# relative position tables in every block, embeddings frozen
WINDOWED = dict(window_size=3, global_attn_indexes=(1,), use_rel_pos=True, frozen_stages=0)


class Probe(nn.Module):
    """The backbone and a 1x1 conv per returned level: every level feeds the loss."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(nn.Conv2d(c, 4, 1) for c in backbone.out_channels)

    def forward(self, x):
        return sum(head(f).square().mean() for head, f in zip(self.heads, self.backbone(x)))


def frozen_state(model: nn.Module) -> dict:
    """Parameters that do not require grad, and the buffers of modules in eval mode."""
    state = {f'p:{n}': p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    for name, module in model.named_modules():
        if not module.training:
            state.update({f'b:{name}.{n}': b.clone() for n, b in module.named_buffers(recurse=False)})
    return state


def run(family: str, variant: str, kwargs: dict) -> dict:
    torch.manual_seed(0)  # same weights on both ranks
    model = Probe(tiny(family, **kwargs))
    frozen_at_build = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    ddp = CPUDistributedDataParallel(module=model)  # as Runner.wrap_model: before init_weights
    model.backbone.init_weights()
    ddp.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen_before = frozen_state(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(1 + dist.get_rank())  # each rank its own images
    for _ in range(3):
        loss = ddp(torch.randn(2, 3, 64, 64, generator=gen))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    frozen_after = frozen_state(model)
    if kwargs.get('frozen_stages', -1) >= 0:
        assert frozen_at_build, f'{family}/{variant}: nothing frozen at construction'
    assert frozen_before.keys() == frozen_after.keys()
    changed_frozen = [k for k in frozen_before if not torch.equal(frozen_before[k], frozen_after[k])]
    assert not changed_frozen, f'{family}/{variant}: frozen tensors changed: {changed_frozen[:5]}'
    still = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert not still, f'{family}/{variant}: trainable parameters did not move: {still[:5]}'
    digest = torch.stack([p.detach().double().sum() for p in model.parameters()])
    digests = [torch.zeros_like(digest) for _ in range(dist.get_world_size())]
    dist.all_gather(digests, digest)
    assert torch.equal(digests[0], digests[1]), f'{family}/{variant}: ranks hold different weights'
    return dict(family=family, variant=variant, frozen=len(frozen_at_build),
                trainable=sum(p.requires_grad for p in model.parameters()),
                pruned=list(model.backbone.pruned_modules))


def main(out: str) -> None:
    dist.init_process_group('gloo')
    torch.set_num_threads(1)
    results = []
    for family in TINY:
        variants = [('frozen_stages=1', dict(frozen_stages=1)), ('out_indices', SUBSETS[family])]
        if family == 'mae':
            variants.append(('windowed', WINDOWED))
        for variant, kwargs in variants:
            start = time.perf_counter()
            result = run(family, variant, copy.deepcopy(kwargs))
            results.append(dict(result, seconds=round(time.perf_counter() - start, 2)))
    if dist.get_rank() == 0:
        with open(out, 'w') as f:
            f.write('\n'.join(json.dumps(r) for r in results))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
