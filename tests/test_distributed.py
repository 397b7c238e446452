"""DDP on CPU: 2 processes (torchrun, gloo, batch 1 each) against 1 process
with the same global batch of 2."""
import os
import socket
import subprocess
import sys

import torch

from tests.helpers import ROOT

DATA = ROOT / 'tests' / 'data'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(DATA), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f'{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc


def losses(path) -> list[float]:
    return [float(x) for x in path.read_text().split()]


def test_two_process_ddp_matches_single_process(synthetic_ade, tmp_path):
    """3 SGD steps: each step's loss (mean of the ranks' losses) and the final
    weights equal the single-process run up to float rounding: DDP averages
    two per-image gradients where one process averages over the batch, so the
    sums run in a different order (measured: 1.5e-7 at most on the weights)."""
    config = str(DATA / 'tiny_ddp.py')
    ddp, single = tmp_path / 'ddp', tmp_path / 'single'
    run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}',
         str(ROOT / 'tools' / 'train.py'), config, '--launcher', 'pytorch', '--work-dir', str(ddp),
         '--cfg-options', f'data_root={synthetic_ade}'])
    run([sys.executable, str(ROOT / 'tools' / 'train.py'), config, '--work-dir', str(single),
         '--cfg-options', f'data_root={synthetic_ade}', 'train_dataloader.batch_size=2'])

    rank0, rank1 = losses(ddp / 'losses_rank0.txt'), losses(ddp / 'losses_rank1.txt')
    assert rank0 != rank1  # each rank saw its own image
    mean = torch.tensor([rank0, rank1]).mean(0)
    torch.testing.assert_close(mean, torch.tensor(losses(single / 'losses_rank0.txt')), rtol=0, atol=1e-5)

    a = torch.load(ddp / 'iter_3.pth', map_location='cpu', weights_only=True)['state_dict']
    b = torch.load(single / 'iter_3.pth', map_location='cpu', weights_only=True)['state_dict']

    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=lambda m: f'{key}: {m}')
