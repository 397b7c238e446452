"""Fixtures shared by the tests; shared functions are in tests/helpers.py."""
import os
from pathlib import Path

import pytest

os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(scope='session')
def synthetic_ade(tmp_path_factory) -> Path:
    """A tiny synthetic dataset in ADE20K's layout (8 train, 4 val, 64x64)."""
    from densekit.synthetic import generate_ade_like
    root = tmp_path_factory.mktemp('ade') / 'synthetic_ade'
    generate_ade_like(root, num_train=8, num_val=4, size=(64, 64), seed=0)
    return root
