"""How DenseKit installs and what importing it changes.

- The wheel installs one top-level name, ``densekit``: the root folders
  backbones/ necks/ heads/ become ``densekit.backbones`` ... (setup.cfg's
  ``package_dir``), so a user's own ``backbones`` package and ours never
  shadow each other.
- ``pip install -e . --no-deps`` into an existing OpenMMLab environment (the
  README's route) gives the checkout's code under the same names.
- Importing the models changes nothing in mmengine; ``densekit.runtime``
  (named by the tools and the shipped configs) switches the checkpoint
  support on.
"""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

# where the suite's dependencies live: torch, mmengine, the toolboxes
SITE_PACKAGES = [p for p in sys.path if p.endswith('site-packages') and Path(p).is_dir()]


def _fresh_venv(path: Path) -> Path:
    """A new virtual environment that sees this one's dependencies (one .pth
    line: their .pth files, DenseKit's editable finder among them, do not
    run) but has no DenseKit of its own. Returns its python."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(path)], check=True)
    python = path / 'bin' / 'python'
    site = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, '_dependencies.pth').write_text('\n'.join(SITE_PACKAGES) + '\n')
    return python


def _pip(python: Path, *args: str) -> None:
    proc = subprocess.run([str(python), '-m', 'pip', '--disable-pip-version-check', '-q', *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _user_project(path: Path) -> Path:
    """A research checkout with its own top-level ``backbones`` and ``heads``."""
    for name in ('backbones', 'heads'):
        (path / name).mkdir(parents=True)
        (path / name / '__init__.py').write_text(f'OWNER = "user {name}"\n')
    return path


WHICH = '''
import json, backbones, heads
import densekit.backbones, densekit.heads, densekit.necks
from densekit.registry import MODELS
model = MODELS.build(dict(type='densekit.ConvMixer', arch=dict(dim=16, depth=4, patch_size=4, kernel_size=3),
                          out_indices=(3,)))
print(json.dumps(dict(user=[backbones.OWNER, heads.OWNER], ours=densekit.backbones.__file__,
                      built=type(model).__module__)))
'''


def test_wheel_installs_one_namespace_beside_a_user_backbones_package(tmp_path):
    _pip(Path(sys.executable), 'wheel', '--no-deps', '--no-build-isolation', '-w', str(tmp_path / 'dist'), str(ROOT))
    wheel, = (tmp_path / 'dist').glob('densekit-*.whl')
    tops = {name.split('/')[0] for name in zipfile.ZipFile(wheel).namelist() if '.dist-info/' not in name}
    assert tops == {'densekit'}, tops
    python = _fresh_venv(tmp_path / 'venv')
    _pip(python, 'install', '--no-deps', '--no-index', str(wheel))

    user = _user_project(tmp_path / 'research')
    proc = subprocess.run([str(python), '-c', WHICH], cwd=user, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen['user'] == ['user backbones', 'user heads']  # the user's packages stay theirs
    assert seen['ours'].startswith(str(tmp_path / 'venv')), seen  # ... and ours come from the wheel
    assert seen['built'] == 'densekit.backbones.convmixer'

    # the tools run on the installed package from anywhere, the user's folders on sys.path
    proc = subprocess.run([str(python), str(ROOT / 'tools' / 'convert_checkpoint.py'), '--help'],
                          cwd=user, capture_output=True, text=True, timeout=300,
                          env={'PATH': '/usr/bin:/bin', 'PYTHONPATH': str(user)})
    assert proc.returncode == 0 and 'usage:' in proc.stdout, proc.stderr


def test_editable_install_without_dependencies_into_an_existing_environment(tmp_path):
    python = _fresh_venv(tmp_path / 'venv')
    _pip(python, 'install', '--no-deps', '--no-build-isolation', '-e', str(ROOT))
    proc = subprocess.run([str(python), '-c', WHICH], cwd=_user_project(tmp_path / 'research'),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen['ours'] == str(ROOT / 'backbones' / '__init__.py')
    assert seen['user'] == ['user backbones', 'user heads']


MMENGINE_STATE = '''
import copyreg, json, sys
import torch
from mmengine.hooks import checkpoint_hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import checkpoint, runner
from mmengine.runner.checkpoint import CheckpointLoader

def state():
    return dict(save=[runner.save_checkpoint.__module__, checkpoint.save_checkpoint.__module__],
                load_to_model=checkpoint._load_checkpoint_to_model.__module__,
                hook_open=getattr(checkpoint_hook, 'open', open).__module__,
                default_loader=CheckpointLoader._schemes.get('', lambda: 0).__module__,
                reducer=HistoryBuffer in copyreg.dispatch_table,
                safe=HistoryBuffer in torch.serialization.get_safe_globals())

before = state()
exec(sys.argv[1])
print(json.dumps(dict(before=before, after=state())))
'''


def _mmengine_state_around(code: str) -> tuple[dict, dict]:
    proc = subprocess.run([sys.executable, '-c', MMENGINE_STATE, code], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    return seen['before'], seen['after']


def test_importing_the_models_leaves_mmengine_as_it_was():
    before, after = _mmengine_state_around(
        'import densekit, densekit.backbones, densekit.necks, densekit.heads\n'
        'from densekit.registry import MODELS\n'
        'MODELS.build(dict(type="densekit.SwinTransformer", arch="tiny", out_indices=(3,)))')
    assert after == before
    assert not before['reducer'] and not before['safe']
    assert 'densekit' not in json.dumps(before)


@pytest.mark.parametrize('switch', [
    'import densekit.runtime',
    # a shipped config: its custom_imports name densekit.runtime (the toolboxes' tools and APIs)
    'from mmengine.config import Config; Config.fromfile("configs/upernet_swin_ade20k.py")',
])
def test_runtime_switches_the_checkpoint_support_on(switch):
    before, after = _mmengine_state_around(switch)
    assert after['save'] == ['densekit.checkpoint'] * 2
    assert after['hook_open'] == after['default_loader'] == 'densekit.checkpoint'
    assert after['load_to_model'] == 'densekit.whole_model'
    assert after['reducer'] and after['safe']
    assert 'densekit' not in json.dumps(before)
