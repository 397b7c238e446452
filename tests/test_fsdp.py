"""FSDP on CPU (``tools/train.py --strategy fsdp``: mmengine's FlexibleRunner and
FSDPStrategy over gloo): 2 processes of batch 1 against 1 plain-Runner process
with the same global batch of 2, as tests/test_distributed.py does for DDP."""
import sys

import pytest
import torch
from mmengine.config import Config

from tests.helpers import ROOT
from tests.test_distributed import DATA, free_port, losses, run

import densekit  # noqa: F401  (registries, weights-only loading)
from densekit.fsdp import backbone_blocks, fsdp_strategy

CONFIG = str(DATA / 'tiny_ddp.py')


def tiny_model():
    from mmengine.registry import MODELS, init_default_scope
    sys.path.insert(0, str(DATA))  # the config's custom_imports
    cfg = Config.fromfile(CONFIG)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def weights(path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def test_two_process_fsdp_matches_single_process(synthetic_ade, tmp_path):
    """3 SGD steps sharded over 2 processes, then --resume for a 4th: each
    step's loss (mean of the ranks') and the weights equal the plain Runner's
    4 steps on one process (measured: 1.2e-7 at most on the weights). Both
    start from the same file (load_from): the FlexibleRunner builds the model
    at another point of the random stream than the Runner. The FSDP
    checkpoints are full state dicts that load strictly into a plain model."""
    init = tmp_path / 'init.pth'
    torch.save({'state_dict': tiny_model().state_dict()}, init)
    fsdp, single = tmp_path / 'fsdp', tmp_path / 'single'
    options = ['--cfg-options', f'data_root={synthetic_ade}', 'default_hooks.checkpoint.interval=1',
               'default_hooks.checkpoint.max_keep_ckpts=-1']
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                str(ROOT / 'tools' / 'train.py'), CONFIG, '--launcher', 'pytorch', '--strategy', 'fsdp',
                '--work-dir', str(fsdp)]
    run(torchrun[:4] + [f'--master_port={free_port()}'] + torchrun[4:] + options + [f'load_from={init}'])
    run(torchrun[:4] + [f'--master_port={free_port()}'] + torchrun[4:] + ['--resume'] + options
        + ['train_cfg.max_iters=4'])
    run([sys.executable, str(ROOT / 'tools' / 'train.py'), CONFIG, '--work-dir', str(single), *options,
         f'load_from={init}', 'train_dataloader.batch_size=2', 'train_cfg.max_iters=4'])

    rank0, rank1 = losses(fsdp / 'losses_rank0.txt'), losses(fsdp / 'losses_rank1.txt')
    assert len(rank0) == 4 and rank0 != rank1  # each rank saw its own image
    mean = torch.tensor([rank0, rank1]).mean(0)
    torch.testing.assert_close(mean, torch.tensor(losses(single / 'losses_rank0.txt')), rtol=0, atol=1e-5)

    model = tiny_model()
    for step in (3, 4):  # 4: resumed, the optimizer's momentum included
        a, b = weights(fsdp / f'iter_{step}.pth'), weights(single / f'iter_{step}.pth')
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=lambda m: f'{key}: {m}')
        model.load_state_dict(a, strict=True)


def test_fsdp_units_are_the_backbone_blocks():
    """The default wrap policy makes each SwinBlock an FSDP unit and nothing
    else (the rest shares the root unit)."""
    from densekit.backbones.swin import SwinBlock
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    model = tiny_model()
    policy = ModuleWrapPolicy(backbone_blocks())
    units = [m for m in model.modules() if policy(module=m, recurse=False, nonwrapped_numel=0)]
    blocks = [m for m in model.modules() if isinstance(m, SwinBlock)]
    assert len(blocks) == 4 and units == blocks


def test_strategy_config():
    """Per-block wrapper and full state dicts by default; a config's own
    ``strategy`` is merged in (e.g. FSDP's mixed precision)."""
    assert fsdp_strategy() == dict(type='DenseKitFSDPStrategy', state_dict_cfg='full',
                                   model_wrapper=dict(type='densekit.BlockShardedDataParallel'))
    mixed = dict(param_dtype='bfloat16', reduce_dtype='float32')
    merged = fsdp_strategy(dict(model_wrapper=dict(mixed_precision=mixed), state_dict_cfg='local'))
    assert merged['model_wrapper'] == dict(type='densekit.BlockShardedDataParallel', mixed_precision=mixed)
    assert merged['state_dict_cfg'] == 'local'


def test_fsdp_without_launcher_is_refused(capsys):
    from tests.helpers import run_main
    with pytest.raises(SystemExit):
        run_main(capsys, 'train', CONFIG, '--strategy', 'fsdp')
    assert '--strategy fsdp shards the model over processes' in capsys.readouterr().err
