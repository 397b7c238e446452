"""Issue 18, items 1-3: training under 2-process DDP (torchrun, gloo on CPU)
with frozen stages and with a subset of the pyramid's levels, for every family.

DistributedDataParallel fixes at wrapping which parameters it waits for, and
mmengine's Runner wraps the model before ``init_weights``/``train()``: a
parameter frozen later, or built but never used, stops training at the
second iteration ("Expected to have finished reduction in the prior
iteration"). One torchrun launch runs every family x variant (14 runs); one
more runs the users' recipe through tools/train.py and mmengine's Runner.
"""
import json
import sys

import torch

from tests.helpers import ROOT
from tests.test_distributed import DATA, free_port, run

FAMILIES = ('swin', 'vit', 'mae', 'vitae', 'levit', 'coatnet', 'convmixer')


def test_every_family_trains_frozen_and_with_a_level_subset_under_ddp(tmp_path):
    """frozen_stages=1 and an out_indices subset, 7 families: 14 runs of 3
    iterations in one process pair. Frozen weights and eval-mode buffers stay
    bit-identical, every trainable parameter moves, both ranks agree
    (asserted in tests/data/ddp_families.py, summarised here)."""
    out = tmp_path / 'runs.jsonl'
    run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}',
         str(DATA / 'ddp_families.py'), str(out)])
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r['family'], r['variant']) for r in runs] == [
        (f, v) for f in FAMILIES for v in ('frozen_stages=1', 'out_indices')]
    for r in runs:
        if r['variant'] == 'frozen_stages=1':
            assert r['frozen'] > 0 and r['trainable'] > 0, r
        elif r['family'] != 'levit':  # LeViT builds only the stages its levels need
            assert r['pruned'], r  # the unused tail was removed, not left for DDP to wait on


def test_train_tool_under_ddp_with_frozen_stages_level_subset_and_syncbn(synthetic_ade, tmp_path):
    """tools/train.py under torchrun with the users' recipe (SyncBN heads,
    sync_bn='torch', frozen_stages=1, out_indices=(0, 1, 2)): 3 iterations
    train; one warning line says SyncBN runs as per-process BN; the frozen
    weights equal the starting checkpoint bit for bit, the rest moved."""
    from mmseg.apis import init_model

    from densekit.config import load_config
    config = DATA / 'tiny_ddp_frozen.py'
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in init_model(load_config(str(config)), None, device='cpu').state_dict().items()}
    torch.save({'state_dict': start}, tmp_path / 'start.pth')
    work = tmp_path / 'work'
    proc = run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}',
                str(ROOT / 'tools' / 'train.py'), str(config), '--launcher', 'pytorch', '--work-dir', str(work),
                '--cfg-options', f'data_root={synthetic_ade}', f'load_from={tmp_path / "start.pth"}'])
    log = proc.stdout + proc.stderr
    assert 'SyncBatchNorm layer(s)' in log and 'run as per-process BatchNorm' in log
    end = torch.load(work / 'iter_3.pth', map_location='cpu', weights_only=True)['state_dict']
    assert end.keys() == start.keys()
    assert not any(k.startswith('backbone.stages.3.') for k in end)  # not built: no level needs it
    frozen = [k for k in start if k.startswith(('backbone.patch_embed.', 'backbone.stages.0.', 'backbone.norm0.'))]
    assert frozen
    for key in frozen:
        assert torch.equal(end[key], start[key]), key
    moved = [k for k in start if k not in frozen and end[k].is_floating_point() and not torch.equal(end[k], start[k])]
    assert any(k.startswith('backbone.stages.1.') for k in moved)
    assert any(k.startswith('decode_head.') for k in moved)
