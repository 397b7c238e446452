"""What a fresh new-user trial still tripped on after the first round of
issue 24 (tests/test_first_hour.py): each kind, fixed in the shared place."""
import logging
import re
import warnings

import pytest

from tests.helpers import ROOT, TINY_SEG, run_main, run_tool
from densekit.config import ConfigKeyError, check_pretrained, load_config

TINY_DET = ROOT / 'tests' / 'data' / 'tiny_mask-rcnn_swin.py'
DEMOS = {'segmentation': 'configs/demo/upernet_swin-demo_synthetic-ade.py',
         'classification': 'configs/demo/convmixer-demo_synthetic-cls.py',
         'detection': 'configs/demo/mask-rcnn_swin-demo_synthetic-coco.py'}


# -- --cfg-options that would change nothing, or fail late ----------------------

@pytest.mark.parametrize('task, key, value, right', [
    ('segmentation', 'max_iters', 3, 'train_cfg.max_iters=3'),
    ('classification', 'max_epochs', 2, 'train_cfg.max_epochs=2'),
    ('segmentation', 'train_pipeline.2.scale', (64, 64), 'train_dataloader.dataset.pipeline.2.scale=(64, 64)'),
])
def test_a_variable_of_the_config_file_is_refused_naming_the_key_to_set(task, key, value, right):
    with pytest.raises(ConfigKeyError, match=rf"--cfg-options {key}=.*changes nothing: set {right.replace('(', '[(]').replace(')', '[)]')} instead"):
        load_config(str(ROOT / DEMOS[task]), {key: value})
    load_config(str(ROOT / DEMOS[task]), {right.split('=')[0]: value})  # the key it names is accepted


def test_data_root_still_moves_the_dataloaders():
    cfg = load_config(str(ROOT / DEMOS['segmentation']), {'data_root': 'elsewhere'})
    assert cfg.train_dataloader.dataset.data_root == 'elsewhere'


@pytest.mark.parametrize('task, key, right', [
    ('detection', 'train_cfg.max_iters', 'train_cfg.max_epochs'),
    ('classification', 'train_cfg.max_iters', 'train_cfg.max_epochs'),
    ('segmentation', 'train_cfg.max_epochs', 'train_cfg.max_iters'),
])
def test_loop_length_of_the_other_kind_is_refused_up_front(task, key, right):
    with pytest.raises(ConfigKeyError, match=rf'{key}=5: this config trains for a number of .*set {right} instead'):
        load_config(str(ROOT / DEMOS[task]), {key: 5})
    # switching the loop itself is deliberate
    load_config(str(ROOT / DEMOS[task]), {key: 5, 'train_cfg.type': 'IterBasedTrainLoop'})


# -- missing pretrained weights -------------------------------------------------

def test_missing_pretrained_file_points_to_get_weights(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    config = str(ROOT / 'configs' / 'upernet_swin_ade20k.py')
    with pytest.raises(FileNotFoundError) as err:
        check_pretrained(load_config(config))
    msg = str(err.value)
    assert f'not found (resolved as {tmp_path}/pretrained/swin_tiny_patch4_window7_224.pth)' in msg
    assert 'python tools/get_weights.py official/swin_tiny_patch4_window7_224' in msg
    # a path the user gave is theirs: no advice to set it again
    options = {'model.backbone.init_cfg.checkpoint': 'w/swin.pth'}
    with pytest.raises(FileNotFoundError) as err:
        check_pretrained(load_config(config, options), options)
    msg = str(err.value)
    assert msg.startswith(f'--cfg-options model.backbone.init_cfg.checkpoint=w/swin.pth: no such file '
                          f'(resolved as {tmp_path}/w/swin.pth)')
    assert 'init_cfg.checkpoint=PATH' not in msg and 'tools/get_weights.py' in msg


# -- tools/test.py: its own config dump, metrics once and readable ------------------

@pytest.fixture(scope='module')
def tiny_seg_checkpoint(tmp_path_factory):
    """Random weights of the tiny UPerNet (tools/test.py wants a fitting file, not a trained one)."""
    import torch

    from densekit.convert import build_model
    path = tmp_path_factory.mktemp('ckpt') / 'tiny_seg.pth'
    torch.save({'state_dict': build_model(str(TINY_SEG)).state_dict(), 'meta': {}}, path)
    return path


def test_test_run_keeps_the_training_config_dump_and_prints_metrics_once(
        synthetic_ade, tiny_seg_checkpoint, tmp_path, capsys):
    work = tmp_path / 'work'
    work.mkdir()
    dump = work / TINY_SEG.name  # what training wrote
    dump.write_text('# the training run\n')
    out, err = run_main(capsys, 'test', str(TINY_SEG), str(tiny_seg_checkpoint), '--work-dir', str(work),
                        '--cfg-options', f'data_root={synthetic_ade}')
    assert dump.read_text() == '# the training run\n'
    assert len(list(work.glob(f'*/{TINY_SEG.name}'))) == 1  # the test run's, beside its log
    console = out + err
    assert console.count('mIoU') == 1, console  # not also in mmengine's Iter(test) metrics line
    assert re.search(r'^mIoU: \d', out, re.M)
    assert not NOTICES.search(console), console  # "Loads checkpoint by  backend" is off the console


def test_metrics_print_with_four_significant_digits():
    from densekit.cli import format_metric
    assert [format_metric(v) for v in (90.7123, 0.6, 0.0004, 0.0, -1.0, 12)] == \
        ['90.71', '0.6', '0.0004', '0', '-1', '12']


def test_console_leaves_the_test_metrics_line_to_the_tool():
    from densekit.cli import ConsoleFilter
    testing = ConsoleFilter(testing=True)
    record = lambda msg: logging.makeLogRecord(dict(msg=msg, levelno=logging.INFO))  # noqa: E731
    assert testing.filter(record('Iter(test) [2/2]    eta: 0:00:00  time: 3.4  data_time: 0.01'))
    assert not testing.filter(record('Iter(test) [2/2]    aAcc: 1.65  mIoU: 0.25  mAcc: 13.3'))
    assert not testing.filter(record('Epoch(test) [ 50/50]    coco/bbox_mAP: 0.6000  coco/bbox_mAP_50: 0.65'))
    assert ConsoleFilter().filter(record('Iter(val) [2/2]    aAcc: 1.65  mIoU: 0.25'))  # training's validation


# -- library notices stay off the console of every tool --------------------------

# what mmseg, mmdet, torch.jit, numpy and mmengine print about their own internals
NOTICES = re.compile(r'build_loss|avg_non_ignore|TracerWarning|Converting a tensor to a Python|'
                     r'use COCO classes|out of bounds|__array_wrap__|Loads checkpoint by')


def test_library_notices_stay_off_the_console_of_every_tool(tiny_seg_checkpoint, tmp_path):
    """Each tool in a fresh interpreter, as a user runs it: what reaches the
    console (warnings included, which pytest would capture in-process)."""
    import cv2
    import numpy as np
    import torch

    from densekit.convert import build_model
    det_checkpoint = tmp_path / 'det.pth'
    torch.save({'state_dict': build_model(str(TINY_DET)).state_dict(), 'meta': {}}, det_checkpoint)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'a.jpg'), image)
    runs = {  # the tool, and the notices it used to print
        'infer': ([str(TINY_DET), str(det_checkpoint), str(tmp_path / 'a.jpg'), '--out', str(tmp_path / 'out'),
                   '--score-thr', '0'], 'use COCO classes, out of bounds, __array_wrap__'),
        'export': ([str(TINY_SEG), str(tiny_seg_checkpoint), '--out', str(tmp_path / 'm.onnx')],
                   'build_loss, avg_non_ignore, TracerWarning'),
        'analysis/flops_params': ([str(TINY_SEG)], 'build_loss, avg_non_ignore'),
    }
    for tool, (args, before) in runs.items():
        proc = run_tool(tool, *args)
        console = proc.stdout + proc.stderr
        assert not NOTICES.search(console), f'{tool} (used to print {before}):\n{console}'


def test_warning_during_a_progress_bar_gets_its_own_line(capsys):
    from tqdm import tqdm

    from densekit.cli import quiet_libraries
    with quiet_libraries('infer'):
        for i in tqdm(range(2), desc='inference'):
            warnings.warn(f'image {i}: skipped, not a readable image')
    err = capsys.readouterr().err
    warned = [line for line in err.replace('\r', '\n').splitlines() if 'skipped' in line]
    assert warned == ['infer: warning: image 0: skipped, not a readable image',
                      'infer: warning: image 1: skipped, not a readable image'], err


# -- tools/convert_checkpoint.py names the arch a checkpoint fits, in every layout --

@pytest.mark.parametrize('family, layout, arch', [
    ('swin', 'timm:swin_tiny_patch4_window7_224', 'tiny'),
    ('vit', 'timm:vit_base_patch16_224', 'base'),
    ('mae', 'timm:vit_base_patch16_224', 'base'),
    ('levit', 'timm:levit_256', '256'),
    ('coatnet', 'timm:coatnet_0_rw_224', '0-rw'),
    ('convmixer', 'timm:convmixer_768_32', '768_32'),
    ('vitae', 'ours:small', 'small'),  # timm has no ViTAE
    ('swin', 'ours:base', 'base'),
])
def test_the_arch_a_checkpoint_fits_is_found_in_every_layout(family, layout, arch):
    import timm
    import torch

    from densekit.convert import build_backbone, suggest_arch
    source, name = layout.split(':')
    with torch.device('meta'):  # shapes are all it takes
        model = timm.create_model(name, pretrained=False) if source == 'timm' else build_backbone(family, name)
    assert suggest_arch(family, model.state_dict()) == arch


def test_wrong_arch_of_a_timm_release_names_the_right_one(tmp_path, capsys):
    import timm
    import torch
    src = tmp_path / 'swin_t_timm.pth'
    torch.save(timm.create_model('swin_tiny_patch4_window7_224', pretrained=False).state_dict(), src)
    with pytest.raises(SystemExit):
        run_main(capsys, 'convert_checkpoint', 'swin', str(src), str(tmp_path / 'out.pth'), '--arch', 'small')
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        f'convert_checkpoint: error: ValueError: {src} does not fit SwinTransformer(arch=small): of its 173 '
        "tensors 171 fit the backbone (2 ignored: not backbone weights); 156 of the backbone's 333 weights are "
        'not in the checkpoint. It fits --arch tiny; --allow-partial writes the partial conversion')
    out, _ = run_main(capsys, 'convert_checkpoint', 'swin', str(src), str(tmp_path / 'out.pth'))
    assert out.startswith('SwinTransformer(arch=tiny): matched 171 of 177 backbone tensors')  # the default arch, named


# -- an override the model cannot take is named --------------------------------------

def test_error_building_the_model_names_the_override(capsys):
    with pytest.raises(SystemExit):
        run_main(capsys, 'analysis/flops_params', str(TINY_SEG), '--cfg-options', 'model.backbone.out_indices=5')
    err = capsys.readouterr().err.splitlines()
    assert err == ["flops_params: error: TypeError: 'int' object is not iterable (raised building SwinTransformer, "
                   'where you set --cfg-options model.backbone.out_indices=5: check that value)',
                   'flops_params: (the traceback: with --verbose)']


def test_training_keeps_the_traceback_in_its_log(synthetic_ade, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_main(capsys, 'train', str(TINY_SEG), '--work-dir', str(tmp_path), '--cfg-options',
                 f'data_root={synthetic_ade}', 'model.backbone.out_indices=5')
    err = capsys.readouterr().err.splitlines()
    assert 'where you set --cfg-options model.backbone.out_indices=5' in err[0]
    log = err[1].removeprefix('train: (the traceback: in ').removesuffix(')')
    assert log.startswith(str(tmp_path)) and 'Traceback (most recent call last)' in open(log).read()


# -- tools/infer.py reads an ImageNet-layout folder ---------------------------------

def test_infer_reads_class_subfolders_without_collisions(tmp_path):
    import cv2
    import numpy as np

    from densekit.inference import inference
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for name in ('circle/x.jpg', 'square/x.jpg', 'square/y.png', 'top.jpg', '.hidden/z.jpg'):
        (tmp_path / 'in' / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / 'in' / name), image)
    with warnings.catch_warnings():  # random weights: warned once per process, maybe by an earlier test
        warnings.simplefilter('ignore')
        results = inference(str(TINY_SEG), None, [str(tmp_path / 'in')], out_dir=tmp_path / 'out', progress=False)
    assert len(results) == 4
    assert len(list((tmp_path / 'out').iterdir())) == 4  # x.jpg twice: two files


# -- inputs checked before outputs are created, relative paths named as resolved ----------

def test_missing_data_is_refused_before_the_work_dir_exists(tmp_path, monkeypatch, capsys):
    import densekit.config
    cwd, repo = tmp_path / 'elsewhere', tmp_path / 'checkout'
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a relative data_root resolves here, not in the repository
    (repo / 'data' / 'synthetic_ade').mkdir(parents=True)  # a checkout after `make demo` (not ours: tests leave it alone)
    monkeypatch.setattr(densekit.config, 'REPO', str(repo))
    with pytest.raises(SystemExit):
        run_main(capsys, 'train', str(ROOT / DEMOS['segmentation']))
    err = capsys.readouterr().err
    assert 'train_dataloader.dataset: SyntheticADEDataset: data folder(s) not found' in err
    assert f'data/synthetic_ade is {cwd}/data/synthetic_ade' in err
    assert f'--cfg-options data_root={repo}/data/synthetic_ade' in err
    assert not (cwd / 'work_dirs').exists()


@pytest.mark.parametrize('tool', ['train', 'test', 'infer', 'export', 'convert_checkpoint', 'get_weights', 'demo',
                                  'benchmark', 'analysis/flops_params', 'analysis/plot_curves', 'model_table'])
def test_help_examples_are_whole_commands_of_that_tool(tool, capsys):
    import shlex
    with pytest.raises(SystemExit):
        run_main(capsys, tool, '--help')
    help_text = capsys.readouterr().out
    examples = re.findall(r'^ +(python tools/\S+\.py(?:.*\\\n)*.*)$', help_text, re.M)
    assert examples, help_text
    options = set(re.findall(r'(--[a-z][a-z-]*)', help_text.split('\n\n', 2)[-1]))  # the options section
    for example in examples:
        command = re.sub(r'\\\n\s*', ' ', example).split('#')[0].rstrip()
        assert '   ' not in command, f'a line continuation lost its backslash: {example}'
        words = shlex.split(command)
        assert words[1] == f'tools/{tool}.py', example
        for word in words[2:]:
            assert not word.startswith('--') or word in options, f'{word} in: {example}'
            assert not word.startswith('configs/') or (ROOT / word).is_file(), f'{word} in: {example}'


# --------------------------------------------------------------- found by the fresh new-user pass

def test_a_top_level_key_the_config_lacks_is_refused_naming_the_nested_key():
    """The recipes have no top-level ``max_iters`` (the schedule sets train_cfg.max_iters):
    ``max_iters=4`` would add an entry nothing reads and train the full schedule."""
    with pytest.raises(ConfigKeyError) as exc:
        load_config(str(ROOT / 'configs' / 'levit' / 'upernet_levit-128s_160k_ade20k.py'), {'max_iters': 4})
    assert "no top-level 'max_iters'" in str(exc.value) and 'set train_cfg.max_iters instead' in str(exc.value)
    with pytest.raises(ConfigKeyError, match="no top-level 'foo'"):
        load_config(str(TINY_SEG), {'foo': 1})
    load_config(str(TINY_SEG), {'data_root': 'data/x', 'work_dir': 'w'})  # read by DenseKit / the Runner


def test_widths_a_base_leaves_unset_are_named_before_the_model_is_built(tmp_path):
    """A config on a backbone-neutral base that forgets ``in_channels``: one line naming the
    keys and the backbone's channels, not the toolbox's bare assert (flops_params builds it)."""
    from densekit.analysis import build_model_from_config
    bases = ROOT / 'configs' / '_base_'
    mine = tmp_path / 'mine.py'
    mine.write_text(f"_base_ = ['{bases}/models/upernet.py', '{bases}/datasets/ade20k.py', "
                    f"'{bases}/default_runtime.py', '{bases}/schedules/schedule_160k.py']\n"
                    "model = dict(backbone=dict(type='densekit.SwinTransformer', arch='tiny', "
                    "out_indices=(0, 1, 2, 3)))\n")
    with pytest.raises(ValueError) as exc:
        build_model_from_config(load_config(str(mine)))
    assert str(exc.value).startswith('model.decode_head.in_channels, model.auxiliary_head.in_channels not set')
    assert 'returns channels [96, 192, 384, 768]' in str(exc.value)


def test_a_dataset_error_is_not_blamed_on_an_override():
    """The loop's build holds train_cfg.max_iters; the dataset failing inside it is not the loop's fault."""
    from mmengine.registry import build_from_cfg

    from densekit.cli import overrides_in_build
    from densekit.datasets import DatasetError

    class Loop:
        def __init__(self, max_iters):
            raise DatasetError('data/x/masks/train lacks the masks of 1 of the 8 images')

    class Broken:
        def __init__(self, max_iters):
            raise TypeError("'int' object is not iterable")

    from mmengine.registry import Registry
    registry = Registry('probe')
    registry.register_module(module=Loop)
    registry.register_module(module=Broken)
    for cls, blamed in ((Loop, []), (Broken, ['Broken', 'train_cfg.max_iters=2'])):
        try:
            build_from_cfg(dict(type=cls.__name__, max_iters=2), registry)
        except Exception as err:  # noqa: BLE001 (the probe raises what it was given)
            assert overrides_in_build(err, {'train_cfg.max_iters': 2}) == blamed


def test_a_copied_config_whose_base_is_gone_names_the_base(tmp_path):
    copied = tmp_path / 'my_seg.py'
    copied.write_text((ROOT / 'configs' / 'examples' / 'upernet_swin-t_160k_my-seg-dataset.py').read_text())
    with pytest.raises(FileNotFoundError) as exc:
        load_config(str(copied))
    assert str(exc.value).startswith(f'{copied}: its _base_ chain names {tmp_path.parent / "upernet_swin_ade20k.py"}')
    assert str(ROOT / 'configs' / 'swin') in str(exc.value)


def test_test_outputs_go_under_the_work_dir_and_print_their_absolute_paths(
        synthetic_ade, tiny_seg_checkpoint, tmp_path, monkeypatch, capsys):
    """The checkpoint lives in another folder and no --work-dir is given: a relative --out and
    --show-dir are under work_dirs/<config name> (the rule --help states), printed in full."""
    monkeypatch.chdir(tmp_path)
    out, _ = run_main(capsys, 'test', str(TINY_SEG), str(tiny_seg_checkpoint), '--out', 'm.json',
                      '--show-dir', 'vis', '--cfg-options', f'data_root={synthetic_ade}')
    work = tmp_path / 'work_dirs' / TINY_SEG.stem
    assert (work / 'm.json').is_file() and not (tiny_seg_checkpoint.parent / 'm.json').exists()
    assert f'metrics written to {work / "m.json"}' in out.splitlines()
    assert f'pictures (ground truth | prediction) in {work / "vis"}/' in out.splitlines()
    help_text, _ = _help(capsys, 'test')
    assert 'else work_dirs/<config name>, also when the checkpoint lives elsewhere' in ' '.join(help_text.split())


def _help(capsys, tool):
    with pytest.raises(SystemExit):
        run_main(capsys, tool, '--help')
    return capsys.readouterr()


TOOLS_WITH_HELP = sorted(str(p.relative_to(ROOT / 'tools'))[:-3] for p in (ROOT / 'tools').rglob('*.py')
                         if 'ArgumentParser(' in p.read_text() or p.name == 'synthetic_cls.py')


def ragged_lines(help_text: str, width: int = 79) -> list[str]:
    """Lines of the description's prose (shown as written: RawDescriptionHelpFormatter)
    that end although the next line's first word would have fitted: a broken manual wrap."""
    description = re.split(r'\n(?:positional arguments|options):', help_text)[0]
    found = []
    for paragraph in re.split(r'\n\s*\n', description)[1:]:  # [0]: the usage
        lines = paragraph.split('\n')
        for line, after in zip(lines, lines[1:]):
            if not line or line[0] == ' ' or not after or after[0] == ' ' or after[0] in '*-':
                continue  # examples and lists keep their own lines
            if len(line) + 1 + len(after.split()[0]) <= width - 6:
                found.append(f'{line!r} / {after!r}')
    return found


def test_ragged_lines_are_found():
    assert ragged_lines('usage: x\n\nto the input size. The\nreconstruction column shows the prediction.\n')
    assert not ragged_lines('usage: x\n\nA short paragraph ends here.\n\n    python tools/x.py A\n    '
                            'python tools/x.py B\n')


@pytest.mark.parametrize('tool', TOOLS_WITH_HELP)
def test_help_descriptions_have_no_broken_manual_wrap(tool, capsys, monkeypatch):
    monkeypatch.setenv('COLUMNS', '100')  # argparse's own wrapping (the options) stays out of the way
    if tool == 'gpu_check':  # its dataclasses need a module of its own name: a process of its own
        from tests.helpers import run_tool
        help_text = run_tool(tool, '--help').stdout
    else:
        with pytest.raises(SystemExit):
            run_main(capsys, tool, '--help')
        help_text = capsys.readouterr().out
    assert 'usage:' in help_text and not ragged_lines(help_text)


def test_whole_model_of_another_variant_names_the_config_it_was_trained_with(synthetic_ade, tmp_path, capsys):
    """A checkpoint tools/train.py wrote for the demo (mmengine's meta: experiment_name
    '<config>_<timestamp>', cfg its text) tested with the tiny config: the error names the demo config."""
    import torch

    from densekit.convert import build_model
    from densekit.whole_model import trained_with
    demo = ROOT / 'configs' / 'demo' / 'upernet_swin-demo_synthetic-ade.py'
    cfg = load_config(str(demo))
    meta = dict(experiment_name='upernet_swin-demo_synthetic-ade_20261130_071446', cfg=cfg.pretty_text)
    path = tmp_path / 'iter_800.pth'
    torch.save(dict(state_dict=build_model(str(demo)).state_dict(), meta=meta), path)
    said = trained_with(meta)
    assert said == ("the checkpoint's meta says it was trained with configs/demo/upernet_swin-demo_synthetic-ade.py "
                    "(use that config), backbone type='densekit.SwinTransformer', arch={'depths': (2, 2, 2, 2), "
                    "'embed_dims': 32, 'num_heads': (1, 2, 4, 8)}")
    assert trained_with({}) is None and trained_with(dict(cfg='model = dict(backbone=os.system("x"))')) is None
    with pytest.raises(SystemExit):
        run_main(capsys, 'test', str(TINY_SEG), str(path), '--work-dir', str(tmp_path / 'work'),
                 '--cfg-options', f'data_root={synthetic_ade}')
    err = capsys.readouterr().err.splitlines()[0]
    assert err.startswith(f'test: error: ValueError: {path} does not fit the model of {TINY_SEG}: the checkpoint is '
                          'another variant of SwinTransformer')
    assert 'trained with configs/demo/upernet_swin-demo_synthetic-ade.py (use that config)' in err


def test_an_earlier_runs_log_is_not_named_for_this_error(tmp_path, capsys):
    """In one process (a notebook, the tests), an error before this run's Runner
    exists does not send its traceback to an earlier run's log file."""
    from mmengine.logging import MMLogger

    from densekit.cli import user_errors
    earlier = tmp_path / 'earlier.log'
    MMLogger.get_instance('an_earlier_run', log_file=str(earlier))  # closed after the test (conftest)
    with pytest.raises(SystemExit):
        with user_errors('train'):
            raise FileNotFoundError('data folder not found: x')
    err = capsys.readouterr().err
    assert 'train: error: FileNotFoundError: data folder not found: x' in err
    assert 'the traceback: with --verbose' in err and str(earlier) not in err
    assert 'data folder not found' not in earlier.read_text()
