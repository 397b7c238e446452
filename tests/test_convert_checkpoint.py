"""tools/convert_checkpoint.py: timm checkpoints (.pth and .safetensors) to our
layout, for every family timm implements.

Round trip: a randomly initialised (and perturbed) timm model is saved, the
file is converted, and our backbone loaded from the converted file must give
the same outputs as our backbone loaded directly from timm's state dict. The
link from there to timm's own outputs is the parity tests in tests/backbones/.
"""

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.helpers import ROOT, run_main
from densekit.convert import build_backbone, convert_checkpoint


# (timm model, our family, arch, backbone arguments, input size)
FAMILIES = [
    ('swin_tiny_patch4_window7_224', 'swin', 'tiny', {}, 64),
    ('vit_tiny_patch16_224', 'vit', 'tiny', dict(out_indices=(5, 11), out_norm='last'), 64),
    ('levit_128s', 'levit', '128s', dict(out_indices=(0, 1, 2, 3, 4)), 64),
    ('convmixer_768_32', 'convmixer', '768_32', dict(out_indices=(15, 31)), 32),
    ('coatnet_0_224', 'coatnet', '0', dict(out_norm='none'), 64),
]


def _perturbed_state(model: torch.nn.Module) -> dict:
    """timm's init leaves norms at 1/0 and BN statistics at 0/1: perturb every
    tensor, so that a weight the conversion dropped or misplaced shows."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            value = value + 0.05 * torch.randn(value.shape, generator=gen)
            value = value.abs() + 0.5 if key.endswith('running_var') else value
        state[key] = value
    return state


def _outputs(model, size):
    with torch.no_grad():
        return model.eval()(torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize('timm_name,family,arch,kwargs,size', FAMILIES, ids=[f[1] for f in FAMILIES])
def test_round_trip_from_timm(tmp_path, timm_name, family, arch, kwargs, size):
    state = _perturbed_state(timm.create_model(timm_name, pretrained=False))
    torch.save(state, tmp_path / 'timm.pth')
    save_file(state, str(tmp_path / 'timm.safetensors'))

    direct = build_backbone(family, arch, **kwargs)
    direct_report = direct.load_pretrained_state(state)
    expected = _outputs(direct, size)

    # one backbone converts both files, one loads both results: weights the
    # file lacks keep their (deterministic) init, as in `direct`
    converter, ours = build_backbone(family, arch, **kwargs), build_backbone(family, arch, **kwargs)
    for src, dst in (('timm.pth', 'ours.pth'), ('timm.safetensors', 'ours.safetensors')):
        report, written = convert_checkpoint(converter, tmp_path / src, tmp_path / dst, progress=False)
        assert report.loaded == direct_report.loaded > 0
        assert report.unexpected == []
        assert any(k.startswith('head') for k in report.ignored)  # the classifier is reported, not written

        # the file holds exactly the backbone's weights but the reported missing ones
        if dst.endswith('.pth'):
            saved = torch.load(tmp_path / dst, map_location='cpu', weights_only=True)
            assert saved['meta']['source'].endswith(src)
            saved = saved['state_dict']
        else:
            from safetensors.torch import load_file
            saved = load_file(str(tmp_path / dst))
        assert saved.keys() == written.keys()
        assert set(saved) | set(report.missing) | set(report.expected) == set(ours.state_dict())
        result = ours.load_state_dict(saved, strict=False)
        assert result.unexpected_keys == []
        assert sorted(result.missing_keys) == sorted(report.missing + report.expected)

        for got, want in zip(_outputs(ours, size), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_cli_prints_report_and_writes_weights_only_file(tmp_path, capsys):
    """A whole-model checkpoint (mmseg layout, 'backbone.' prefix) through the CLI."""
    src = build_backbone('levit', '128s')
    state = {f'backbone.{k}': v + 1 for k, v in src.state_dict().items()}
    state['decode_head.conv_seg.weight'] = torch.zeros(7, 4, 1, 1)
    torch.save({'state_dict': state, 'meta': {'iter': 5}}, tmp_path / 'model.pth')
    stdout, stderr = run_main(capsys, 'convert_checkpoint', 'levit', str(tmp_path / 'model.pth'), str(tmp_path / 'out.pth'),
                              '--arch', '128s', '--prefix', 'backbone.', '--strict')
    n = len(src.state_dict())
    assert f'LeViT(arch=128s): matched {n} of {n} backbone tensors; missing 0, unexpected 0' in stdout
    assert f'wrote {n} tensors to' in stdout
    assert '100%' in stderr  # the progress bar
    out = torch.load(tmp_path / 'out.pth', map_location='cpu', weights_only=True)['state_dict']
    for key, value in out.items():  # our own layout passes through unchanged
        torch.testing.assert_close(value, state[f'backbone.{key}'], rtol=0, atol=0)


def test_misspelt_family_suggests_the_closest():
    for typo, meant in (('swim', 'swin'), ('ConvMixr', 'ConvMixer'), ('SwinTransfomer', 'SwinTransformer')):
        with pytest.raises(KeyError, match=rf"unknown backbone '{typo}': .*\. Did you mean '{meant}'\?"):
            build_backbone(typo)


def test_help_examples_write_the_files_the_configs_read():
    """A DST under pretrained/ in --help is a file some config's init_cfg names."""
    import re
    examples = re.findall(r'convert_checkpoint\.py \S+ \S+ (pretrained/\S+)',
                          (ROOT / 'tools' / 'convert_checkpoint.py').read_text())
    read = {m for f in (ROOT / 'configs').rglob('*.py') for m in re.findall(r"'(pretrained/[^']+)'", f.read_text())}
    assert examples and set(examples) <= read, set(examples) - read
    assert 'pretrained/swin_tiny_patch4_window7_224.pth' in examples


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(KeyError, match="unknown backbone 'swinn': expected a family"):
        build_backbone('swinn')
    torch.save({'state_dict': {'backbone.w': torch.zeros(1)}}, tmp_path / 'm.pth')
    with pytest.raises(ValueError, match=r"m.pth: no weights found under prefix 'neck.'"):
        convert_checkpoint(build_backbone('levit', '128s'), tmp_path / 'm.pth', tmp_path / 'o.pth',
                           prefix='neck.', progress=False)
