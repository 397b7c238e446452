"""Issue 18 item 7 (and issue 24 items 10, 12, 13, 21, 24): checkpoints in the
layouts users hold, loaded through every entry point that takes one.

The files are written here in each layout (timm's, the official release's,
a whole mmseg model ``{'meta', 'state_dict'}`` with and without ``meta``,
safetensors, a numpy 1.x pickle, a pickled whole module) from small random
models, so that the test needs no download.
"""
import io
import math
import pickle
import re

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

from densekit.backbones import SwinTransformer, VisionTransformer
from tests.helpers import TINY_SEG, run_main
from densekit.checkpoint import TRUST_ENV, load_file
from densekit.convert import build_backbone, convert_checkpoint
from densekit.inference import init_model

SWIN = dict(embed_dims=16, num_heads=(1, 1, 2, 2))


def _timm_swin(depths):
    return timm.create_model('swin_tiny_patch4_window7_224', pretrained=False, embed_dim=16, depths=depths,
                             num_heads=SWIN['num_heads']).state_dict()


def _official(timm_state: dict) -> dict:
    """timm's Swin names -> the official release's (patch merging at the end of stage i)."""
    return {'model': {re.sub(r'layers\.(\d+)\.downsample', lambda m: f'layers.{int(m[1]) - 1}.downsample', k): v
                      for k, v in timm_state.items()}}


@pytest.mark.parametrize('layout', ['timm', 'official', 'safetensors'])
def test_deeper_release_loads_with_its_extra_keys_reported(tmp_path, layout):
    """7a: Swin weights of a deeper variant (stage 2 of 4 blocks) into a
    shallower one (2 blocks) through init_cfg: the report lists the extra
    blocks as unexpected (before: AttributeError "ModuleList has no attribute '2'")."""
    state = _timm_swin((2, 2, 4, 2))
    path = tmp_path / ('w.safetensors' if layout == 'safetensors' else 'w.pth')
    if layout == 'safetensors':
        save_file(state, str(path))
    else:
        torch.save(_official(state) if layout == 'official' else state, path)
    model = SwinTransformer(dict(SWIN, depths=(2, 2, 2, 2)), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    report = model.load_pretrained(path)
    assert report.unexpected and all(re.match(r'stages\.2\.blocks\.[23]\.', k) for k in report.unexpected)
    assert report.missing == []
    assert sorted(report.expected) == sorted(f'norm{i}.{p}' for i in range(3) for p in ('weight', 'bias'))
    torch.testing.assert_close(model.stages[2].blocks[1].mlp.fc1.weight,
                               state['layers.2.blocks.1.mlp.fc1.weight'], rtol=0, atol=0)
    model.init_weights()  # the init_cfg path: same load, no error


def test_strict_conversion_accepts_what_a_release_cannot_hold(tmp_path):
    """issue 24 item 13: --strict on the matching release passes; the
    pyramid's norm0..2 are reported as expected, not as missing."""
    torch.save(_timm_swin((2, 2, 2, 2)), tmp_path / 'release.pth')
    model = SwinTransformer(dict(SWIN, depths=(2, 2, 2, 2)))
    report, written = convert_checkpoint(model, tmp_path / 'release.pth', tmp_path / 'ours.pth', strict=True,
                                         progress=False)
    assert report.missing == [] and report.unexpected == []
    assert sorted({k.split('.')[0] for k in report.expected}) == ['norm0', 'norm1', 'norm2']
    assert 'norm3.weight' in written


def test_converter_refuses_a_partial_match_and_names_the_arch(tmp_path, capsys):
    """issue 24 item 12: LeViT-128S weights converted as --arch 128 are refused
    (before: written with half the tensors missing, exit 0); --allow-partial writes them."""
    torch.save(timm.create_model('levit_128s', pretrained=False).state_dict(), tmp_path / 'levit.pth')
    with pytest.raises(SystemExit):
        run_main(capsys, 'convert_checkpoint', 'levit', str(tmp_path / 'levit.pth'), str(tmp_path / 'o.pth'),
                 '--arch', '128')
    err = capsys.readouterr().err
    assert 'do not (missing, unexpected or of another shape): it fits --arch 128s' in err
    assert not (tmp_path / 'o.pth').exists()
    out, _ = run_main(capsys, 'convert_checkpoint', 'levit', str(tmp_path / 'levit.pth'), str(tmp_path / 'o.pth'),
                      '--arch', '128s')
    assert 'missing 0, unexpected 0' in out


def test_whole_mmseg_model_and_pickled_module_convert(tmp_path, monkeypatch, capsys):
    """issue 24 item 21: a whole mmseg model {'meta', 'state_dict'} converts
    without --prefix (its backbone. is found); a pickled whole module loads
    under DENSEKIT_TRUST_CHECKPOINTS=1 as its state_dict()."""
    src = build_backbone('levit', '128s')
    whole = {f'backbone.{k}': v + 1 for k, v in src.state_dict().items()}
    whole['decode_head.conv_seg.weight'] = torch.zeros(7, 4, 1, 1)
    torch.save({'meta': {'iter': 5}, 'state_dict': whole}, tmp_path / 'whole.pth')
    out, _ = run_main(capsys, 'convert_checkpoint', 'levit', str(tmp_path / 'whole.pth'), str(tmp_path / 'a.pth'),
                      '--arch', '128s', '--strict')
    n = len(src.state_dict())
    assert f'matched {n} of {n} backbone tensors; missing 0, unexpected 0' in out

    torch.save(src, tmp_path / 'module.pth')
    with pytest.raises(pickle.UnpicklingError, match=TRUST_ENV):
        load_file(tmp_path / 'module.pth')
    monkeypatch.setenv(TRUST_ENV, '1')
    out, _ = run_main(capsys, 'convert_checkpoint', 'levit', str(tmp_path / 'module.pth'), str(tmp_path / 'b.pth'),
                      '--arch', '128s', '--strict')
    assert f'matched {n} of {n} backbone tensors' in out


def test_non_square_position_grid(tmp_path):
    """7c: a ViT trained at 32x64 (a 2x4 grid) loaded at 64: resampled as timm
    resamples it when pretrain_img_size is given, else one error naming
    pos_embed and the argument (before: RuntimeError "shape '[1, 2, 2, -1]' is invalid")."""
    arch = dict(embed_dims=32, depth=1, num_heads=2)
    source = VisionTransformer(arch, img_size=(32, 64))
    torch.nn.init.normal_(source.pos_embed)
    torch.save({'state_dict': source.state_dict()}, tmp_path / 'vit.pth')
    with pytest.raises(ValueError, match=r'pos_embed: the checkpoint holds 8 patch positions.*pretrain_img_size'):
        VisionTransformer(arch, img_size=64).load_pretrained(tmp_path / 'vit.pth')
    model = VisionTransformer(arch, img_size=64, pretrain_img_size=(32, 64))
    model.load_pretrained(tmp_path / 'vit.pth')
    expected = resample_abs_pos_embed(source.pos_embed, new_size=(4, 4), old_size=(2, 4), num_prefix_tokens=1)
    torch.testing.assert_close(model.pos_embed, expected, rtol=0, atol=0)
    assert math.prod(model.grid_size) == 16


def _numpy1_pickle(obj) -> bytes:
    """``obj`` saved as numpy 1.x saved it: the arrays' pickle names under
    ``numpy.core.multiarray`` (numpy 2 writes ``numpy._core.multiarray``)."""
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)  # one plain pickle stream: GLOBAL opcodes
    data = buf.getvalue()
    assert b'numpy._core.multiarray\n' in data
    return data.replace(b'numpy._core.multiarray\n', b'numpy.core.multiarray\n')


def test_numpy1_checkpoint_loads_weights_only(tmp_path):
    """7d: before, refused as 'Unsupported global: GLOBAL numpy.core.multiarray._reconstruct'."""
    path = tmp_path / 'np1.pth'
    path.write_bytes(_numpy1_pickle({'state_dict': {'w': torch.ones(2)},
                                     'meta': {'hist': np.arange(3.), 'seed': np.int64(3)}}))
    ckpt = load_file(path)
    assert ckpt['meta']['hist'].tolist() == [0., 1., 2.] and ckpt['meta']['seed'] == 3


@pytest.fixture(scope='module')
def seg_state():
    from densekit.config import load_config
    from mmseg.apis import init_model as init_segmentor
    return init_segmentor(load_config(str(TINY_SEG)), None, device='cpu').state_dict()


@pytest.mark.parametrize('layout', ['no_meta', 'safetensors', 'numpy1'])
def test_segmentation_checkpoint_layouts_in_init_model(tmp_path, seg_state, layout):
    """7b: {'state_dict'} without meta, .safetensors and a numpy-1 pickle load
    in init_model; classes come from the config (before: KeyError: 'meta')."""
    from densekit.synthetic import CLASSES
    if layout == 'safetensors':
        path = tmp_path / 'model.safetensors'
        save_file({k: v.contiguous() for k, v in seg_state.items()}, str(path))
    elif layout == 'numpy1':
        path = tmp_path / 'model.pth'
        path.write_bytes(_numpy1_pickle({'state_dict': seg_state, 'meta': {'seed': np.int64(0)}}))
    else:
        path = tmp_path / 'model.pth'
        torch.save({'state_dict': seg_state}, path)
    predictor = init_model(str(TINY_SEG), str(path))
    assert predictor.model.dataset_meta['classes'] == CLASSES
    for key, value in predictor.model.state_dict().items():
        assert torch.equal(value, seg_state[key]), key


def test_misfit_is_one_error_with_counts_and_cause(tmp_path, seg_state, capfd):
    """18.11 / 24.10: a checkpoint that does not fit gives one error: counts,
    the first keys of each kind and the likely cause, and nothing before it
    (before: mmseg printed every unexpected key, then two lines of 3,055 and 7,921 characters)."""
    backbone_only = {k[len('backbone.'):]: v for k, v in seg_state.items() if k.startswith('backbone.')}
    torch.save({'state_dict': backbone_only}, tmp_path / 'backbone.pth')
    capfd.readouterr()
    with pytest.raises(ValueError) as err:
        init_model(str(TINY_SEG), str(tmp_path / 'backbone.pth'))
    message = str(err.value)
    assert '\n' not in message and len(message) < 800
    # the bare backbone is placed under 'backbone.' (densekit.whole_model), so only the heads are missing
    missing = len(seg_state) - len(backbone_only)
    assert re.search(rf'does not fit the model of .*: {len(backbone_only)} of \d+ tensors match; '
                     rf'{missing} missing \(e.g. ', message)
    assert "Likely cause: the checkpoint holds only the 'backbone' part" in message
    printed = capfd.readouterr()
    assert 'unexpected key' not in printed.out + printed.err

    deeper = dict(seg_state)
    deeper['backbone.stages.0.blocks.1.norm1.weight'] = torch.ones(16)
    torch.save({'state_dict': deeper}, tmp_path / 'deeper.pth')
    with pytest.raises(ValueError, match='1 unexpected .* Likely cause: a checkpoint of a deeper variant'):
        init_model(str(TINY_SEG), str(tmp_path / 'deeper.pth'))


def test_random_weights_warn_once():
    """issue 24 item 24: init_model(config, None) says the weights are random, once."""
    import warnings

    from densekit import inference
    inference._WARNED_RANDOM.clear()  # another test may have built this config without weights
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        init_model(str(TINY_SEG), None)
        init_model(str(TINY_SEG), None)
    ours = [w for w in caught if 'random weights' in str(w.message)]
    assert len(ours) == 1
