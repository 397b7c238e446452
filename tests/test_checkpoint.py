"""Weights-only loading: our training checkpoints load, foreign code does not."""
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

import densekit.runtime  # noqa: F401  (the training saves under test are the runtime's: HistoryBuffer's reducer)
from densekit.checkpoint import TRUST_ENV, extract_state_dict, load_file


def _training_like_checkpoint():
    hub = {'log_scalars': {'train/loss': HistoryBuffer([1.0, 0.5], [1, 1])},
           'runtime_info': {'iter': 2, 'seed': np.int64(3), 'arr': np.arange(3, dtype=np.float32)}}
    return {'meta': {'iter': 2}, 'state_dict': {'w': torch.ones(2)}, 'message_hub': hub,
            'dtype': np.dtype('float64')}


def test_mmengine_training_state_loads_weights_only(tmp_path):
    path = tmp_path / 'iter_2.pth'
    torch.save(_training_like_checkpoint(), path)
    ckpt = load_file(path)
    assert ckpt['message_hub']['log_scalars']['train/loss'].current() == 0.5
    assert ckpt['message_hub']['runtime_info']['arr'].tolist() == [0., 1., 2.]


def test_loading_leaves_the_global_allow_list_as_it_was(tmp_path):
    """load_file allow-lists mmengine's training state for its own call only,
    and a list densekit.runtime switched on stays on after it."""
    path = tmp_path / 'iter_2.pth'
    torch.save(_training_like_checkpoint(), path)
    before = list(torch.serialization.get_safe_globals())
    assert HistoryBuffer in before  # densekit.runtime
    load_file(path)
    assert torch.serialization.get_safe_globals() == before
    torch.load(path, weights_only=True)  # plain torch.load still reads the training state


class Payload:
    def __reduce__(self):
        return (print, ('code ran',))


def test_arbitrary_code_is_refused_unless_trusted(tmp_path, monkeypatch, capsys):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': Payload()}, path)
    with pytest.raises(pickle.UnpicklingError, match=f'evil.pth.*{TRUST_ENV}=1'):
        load_file(path)
    assert 'code ran' not in capsys.readouterr().out
    monkeypatch.setenv(TRUST_ENV, '1')
    load_file(path)
    assert 'code ran' in capsys.readouterr().out


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save({'w': torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RuntimeError, match='cut.pth: not a readable checkpoint'):
        load_file(path)


def test_extract_state_dict_unwraps_and_strips():
    sd = extract_state_dict({'state_dict': {'module.backbone.a': torch.ones(1), 'module.head.b': torch.ones(1)}},
                            prefix='backbone.')
    assert list(sd) == ['a']
