"""Fixtures shared by the tests; shared functions are in tests/helpers.py."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the tools' own modules (benchmark_harness, synthetic_*) import by name, as the tools import each other
sys.path.append(str(ROOT / 'tools'))
os.environ.setdefault('OMP_NUM_THREADS', '2')

# the tools' environment in this process too (each tool imports it), whichever test runs first:
# training checkpoints load weights-only; a process without it is tested in a subprocess (test_packaging)
import densekit.runtime  # noqa: E402,F401

# CI's machine has 24 GiB for the whole suite in one process: a test whose peak grows past this
# budget fails by name instead of the kernel killing the run (an OOM kill reports no test at all)
MEMORY_BUDGET_GIB = float(os.environ.get('DENSEKIT_TEST_MEMORY_BUDGET_GIB', '6'))


def _status_mib(field: str) -> int:
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith(field))


@pytest.fixture(autouse=True)
def _memory_budget(request):
    """Fails a test whose peak resident memory (this process, MiB) grows by
    more than MEMORY_BUDGET_GIB over what it started with; Linux only."""
    try:
        Path('/proc/self/clear_refs').write_text('5')  # resets VmHWM (the peak) to the current RSS
    except OSError:
        yield
        return
    start = _status_mib('VmRSS')
    yield
    grown = _status_mib('VmHWM') - start
    if grown > MEMORY_BUDGET_GIB * 1024:
        pytest.fail(f'{request.node.nodeid} grew the test process by {grown} MiB at its peak, over the '
                    f'suite budget of {MEMORY_BUDGET_GIB:g} GiB (DENSEKIT_TEST_MEMORY_BUDGET_GIB): '
                    'shrink its inputs or model', pytrace=False)


# what a test run may create in the checkout: pytest's and Python's caches, the venv, builds, and the
# folder mmengine's distributed evaluation on CPUs makes in the current directory (collect_results_cpu)
_OWN_OUTPUTS = {'.git', '.venv', '.pytest_cache', '__pycache__', 'build', 'dist', '.dist_test'}


def _checkout_paths(root: Path = ROOT, depth: int = 3) -> set[str]:
    found = set()
    for entry in root.iterdir():
        if entry.name in _OWN_OUTPUTS or entry.name.endswith('.egg-info'):
            continue
        found.add(str(entry.relative_to(ROOT)))
        if depth > 1 and entry.is_dir() and not entry.is_symlink():
            found |= _checkout_paths(entry, depth - 1)
    return found


def pytest_sessionstart(session):
    session.config._checkout_before = _checkout_paths()


def pytest_sessionfinish(session, exitstatus):
    """Tests write under tmp_path, never into the checkout (a leftover data/ or work_dirs/ would
    change what later runs see): new paths fail the run, named."""
    before = getattr(session.config, '_checkout_before', None)
    if before is None or hasattr(session.config, 'workerinput'):
        return
    new = sorted(_checkout_paths() - before)
    if new:
        print(f'\nthe tests wrote into the checkout {ROOT}: ' + ', '.join(new[:10]), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _close_run_loggers():
    """Closes the mmengine loggers a test made (Runners, in-process tools). They write to the
    test's captured streams, closed after it, and mmengine hands them out again: as the
    'current' logger, and by name to a Runner of the same config started in the same second."""
    from mmengine.logging import MMLogger
    before = set(MMLogger._instance_dict)
    yield
    for name in set(MMLogger._instance_dict) - before:
        logger = MMLogger._instance_dict.pop(name)
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
            handler.close()


@pytest.fixture(scope='session')
def synthetic_ade(tmp_path_factory) -> Path:
    """A tiny synthetic dataset in ADE20K's layout (8 train, 4 val, 64x64)."""
    from synthetic_ade import generate_ade_like
    root = tmp_path_factory.mktemp('ade') / 'synthetic_ade'
    generate_ade_like(root, num_train=8, num_val=4, size=(64, 64), seed=0)
    return root
