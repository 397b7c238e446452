"""Fixtures shared by the tests; shared functions are in tests/helpers.py."""
import os
import sys
from pathlib import Path

import pytest

# the tools' own modules (benchmark_harness, synthetic_*) import by name, as the tools import each other
sys.path.append(str(Path(__file__).resolve().parents[1] / 'tools'))
os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(scope='session')
def synthetic_ade(tmp_path_factory) -> Path:
    """A tiny synthetic dataset in ADE20K's layout (8 train, 4 val, 64x64)."""
    from synthetic_ade import generate_ade_like
    root = tmp_path_factory.mktemp('ade') / 'synthetic_ade'
    generate_ade_like(root, num_train=8, num_val=4, size=(64, 64), seed=0)
    return root
