"""Crash and resume, atomic checkpoints and non-finite losses, on the tiny
Swin UperNet and synthetic data (CPU, deterministic algorithms).

Each test trains with tools/train.py in fresh interpreters; the first runs of
all tests start together (module fixture) so that their start-up overlaps.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT

DATA = ROOT / 'tests' / 'data'


class Training:
    """tools/train.py CONFIG running in the background; tests/data is on
    PYTHONPATH for the test-only hooks (tests/data/testing_hooks.py)."""

    def __init__(self, config: str, work: Path, *options: str):
        self.work = work
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(DATA), os.environ.get('PYTHONPATH', '')]))
        self.proc = subprocess.Popen([sys.executable, str(ROOT / 'tools' / 'train.py'), str(DATA / config),
                                      '--work-dir', str(work), *options], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.returncode = self.stdout = self.stderr = None

    def wait(self, check: bool = True) -> 'Training':
        if self.returncode is None:
            self.stdout, self.stderr = self.proc.communicate(timeout=600)
            self.returncode = self.proc.returncode
        if check and self.returncode != 0:
            raise AssertionError(f'train failed ({self.returncode}):\n{self.stdout[-3000:]}\n{self.stderr[-5000:]}')
        return self


@pytest.fixture(scope='module')
def runs(synthetic_ade, tmp_path_factory):
    root = tmp_path_factory.mktemp('runs')
    data = f'data_root={synthetic_ade}'
    started = dict(
        uninterrupted=Training('tiny_resume.py', root / 'uninterrupted', '--cfg-options', data),
        sigkill_after_iter_3=Training('tiny_resume_sigkill.py', root / 'crashed', '--cfg-options', data),
        sigkill_during_save=Training('tiny_save_sigkill.py', root / 'killed_in_save', '--cfg-options', data),
        nan_stop=Training('tiny_nan.py', root / 'nan_stop', '--cfg-options', data),
        nan_skip=Training('tiny_nan.py', root / 'nan_skip', '--cfg-options', data,
                          'custom_hooks.0.action=skip', 'train_cfg.max_iters=4'),
    )
    yield started
    for run in started.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def resume(work: Path, synthetic_ade, *options: str) -> Training:
    return Training('tiny_resume.py', work, '--resume', '--cfg-options', f'data_root={synthetic_ade}',
                    *options).wait()


def weights(path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def last_checkpoint(work) -> str:
    return os.path.basename((work / 'last_checkpoint').read_text().strip())


def test_sigkill_then_resume_equals_uninterrupted_run(runs, synthetic_ade):
    """SIGKILL after iteration 3 (last checkpoint: iteration 2), --resume to
    iteration 6: every weight and optimizer state is bit-identical to the
    uninterrupted run's at iterations 4 and 6, so optimizer, scheduler,
    iteration, data order and random state all resumed."""
    uninterrupted = runs['uninterrupted'].wait().work
    crashed = runs['sigkill_after_iter_3'].wait(check=False)
    assert crashed.returncode == -signal.SIGKILL
    work = crashed.work
    assert last_checkpoint(work) == 'iter_2.pth' and not (work / 'iter_4.pth').exists()

    proc = resume(work, synthetic_ade)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'Iter(train) [3/6]' in log and 'Iter(train) [2/6]' not in log.split('resumed epoch')[1]
    for step in (4, 6):
        expected, resumed = weights(uninterrupted / f'iter_{step}.pth'), weights(work / f'iter_{step}.pth')
        assert expected.keys() == resumed.keys()
        different = [k for k in expected if not torch.equal(expected[k], resumed[k])]
        assert not different, f'iteration {step}: {len(different)} tensors differ, e.g. {different[:3]}'
    optim = [torch.load(w / 'iter_6.pth', map_location='cpu', weights_only=True)['optimizer']
             for w in (uninterrupted, work)]
    assert optim[0]['state'].keys() == optim[1]['state'].keys()
    for k, v in optim[0]['state'].items():
        assert all(torch.equal(v[s], optim[1]['state'][k][s]) for s in v)


def test_resume_without_random_state_diverges(runs, synthetic_ade, tmp_path):
    """The control: mmengine alone (RandomStateHook removed) re-seeds instead
    of restoring, and flips/drop-path after the resume differ."""
    uninterrupted = runs['uninterrupted'].wait().work
    work = tmp_path / 'resumed'
    work.mkdir()
    (work / 'iter_2.pth').write_bytes((uninterrupted / 'iter_2.pth').read_bytes())
    (work / 'last_checkpoint').write_text(str(work / 'iter_2.pth'))
    resume(work, synthetic_ade, 'custom_hooks=[]')
    expected, resumed = weights(uninterrupted / 'iter_6.pth'), weights(work / 'iter_6.pth')
    assert any(not torch.equal(expected[k], resumed[k]) for k in expected)


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(runs):
    """Killed half-way through torch.save of checkpoint 2: no iter_2.pth
    appears (only the unrenamed temporary file), last_checkpoint still names
    the complete iter_1.pth, which loads weights-only with all that resuming
    needs."""
    run = runs['sigkill_during_save'].wait(check=False)
    assert run.returncode == -signal.SIGKILL
    work = run.work
    assert not (work / 'iter_2.pth').exists()
    partial = list(work.glob('iter_2.pth.*.tmp'))
    assert len(partial) == 1 and partial[0].read_bytes().startswith(b'PK\x03\x04 partial')
    assert last_checkpoint(work) == 'iter_1.pth'
    state = torch.load(work / 'iter_1.pth', map_location='cpu', weights_only=True)
    assert state['meta']['iter'] == 1
    assert {'state_dict', 'optimizer', 'param_schedulers', 'message_hub', 'rng_state'} <= state.keys()


def test_next_save_of_the_same_file_removes_a_killed_writers_leftover(tmp_path):
    """A SIGKILL mid-save leaves ``iter_2.pth.<random>.tmp``; the resumed run's
    save of iter_2.pth removes it, and leaves other files' temporaries alone."""
    from densekit.checkpoint import save_checkpoint_atomic
    leftover = tmp_path / 'iter_2.pth.k1ll3d.tmp'
    leftover.write_bytes(b'PK\x03\x04 partial')
    other = tmp_path / 'iter_3.pth.b2s1.tmp'
    other.write_bytes(b'another writer')
    save_checkpoint_atomic({'meta': {'iter': 2}}, str(tmp_path / 'iter_2.pth'))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_2.pth', 'iter_3.pth.b2s1.tmp']
    assert torch.load(tmp_path / 'iter_2.pth', weights_only=True) == {'meta': {'iter': 2}}


def test_last_checkpoint_is_replaced_atomically(tmp_path):
    """CheckpointHook's write of last_checkpoint goes through a temporary
    file: a failure in the middle leaves the old content."""
    from mmengine.hooks import checkpoint_hook

    import densekit  # noqa: F401  (installs the atomic writers)
    target = tmp_path / 'last_checkpoint'
    target.write_text('/work/iter_1.pth')
    with pytest.raises(RuntimeError):
        with checkpoint_hook.open(str(target), 'w') as f:
            f.write('/work/iter_')
            raise RuntimeError('killed')
    assert target.read_text() == '/work/iter_1.pth'
    assert list(tmp_path.iterdir()) == [target]
    with checkpoint_hook.open(str(target), 'w') as f:
        f.write('/work/iter_2.pth')
    assert target.read_text() == '/work/iter_2.pth'


def test_nan_loss_stops_with_the_iteration_and_keeps_the_last_good_checkpoint(runs):
    run = runs['nan_stop'].wait(check=False)
    assert run.returncode == 1
    assert 'FloatingPointError: iteration 3: non-finite loss (loss=nan, decode.loss_ce=nan' in run.stderr
    assert 'aux.loss_ce=' in run.stderr
    assert last_checkpoint(run.work) == 'iter_2.pth' and not (run.work / 'iter_3.pth').exists()
    assert all(torch.isfinite(v).all() for v in weights(run.work / 'iter_2.pth').values())


def test_nan_loss_skip_leaves_the_weights_unchanged(runs):
    run = runs['nan_skip'].wait()
    log = run.stdout + run.stderr
    assert 'skipped the optimizer step of iteration 3: non-finite loss' in log
    assert 'skipped the optimizer step of iteration 4' in log
    before, after = weights(run.work / 'iter_2.pth'), weights(run.work / 'iter_4.pth')
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(weights(run.work / 'iter_1.pth')['decode_head.conv_seg.weight'],
                           before['decode_head.conv_seg.weight'])  # good steps did update
