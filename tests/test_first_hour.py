"""A newcomer's natural mistakes get one line naming the fix; outputs land
where the README and --help say; the console stays quiet (issue 24)."""
import json
import logging
import os
import runpy
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import ROOT, TINY_SEG, run_main
from densekit.config import (ConfigKeyError, check_options, check_pretrained, enable_visualization,
                             fit_log_interval, load_config)

DEMOS = {'segmentation': 'configs/demo/upernet_swin-demo_synthetic-ade.py',
         'classification': 'configs/demo/convmixer-demo_synthetic-cls.py',
         'detection': 'configs/demo/mask-rcnn_swin-demo_synthetic-coco.py'}


# -- errors that name the fix --------------------------------------------------

def test_misspelt_config_path_suggests_the_closest(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(FileNotFoundError, match=r'Did you mean configs/upernet_swin_ade20k\.py'):
        load_config('configs/upernet_swin_ade20.py')
    with pytest.raises(FileNotFoundError, match=r'configs/swin/swin-t_300e_imagenet\.py'):
        load_config('swin-t_300e_imagenet.py')  # right name, wrong folder


@pytest.mark.parametrize('option, expected', [
    ({'train_cfg.max_iters': 'abc'}, "train_cfg.max_iters=abc: expected an integer"),
    ({'optim_wrapper.optimizer.lr': 'fast'}, 'optim_wrapper.optimizer.lr=fast: expected a number'),
])
def test_option_of_the_wrong_type_is_refused_up_front(option, expected):
    cfg = load_config(DEMOS['segmentation'])
    with pytest.raises(ConfigKeyError, match=expected):
        check_options(cfg, option)
    check_options(cfg, {'train_cfg.max_iters': 10, 'optim_wrapper.optimizer.lr': 1})  # int for a float is fine


def test_backbone_checkpoint_can_be_set_where_the_base_has_none():
    cfg = load_config(DEMOS['segmentation'], {'model.backbone.init_cfg.checkpoint': 'w.pth'})
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='w.pth')


def test_missing_pretrained_file_says_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no pretrained/ here
    cfg = load_config(str(ROOT / 'configs' / 'upernet_swin_ade20k.py'))
    with pytest.raises(FileNotFoundError) as err:
        check_pretrained(cfg)
    msg = str(err.value)
    assert msg.startswith('model.backbone.init_cfg.checkpoint: pretrained/swin_tiny_patch4_window7_224.pth not found')
    assert 'SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth' in msg
    assert 'tools/convert_checkpoint.py SwinTransformer swin_tiny_patch4_window7_224.pth' in msg
    assert 'model.backbone.init_cfg=None' in msg


def _warnings(monkeypatch) -> list:
    """What densekit.config logs through mmengine's print_log."""
    logged = []
    monkeypatch.setattr('densekit.config.print_log', lambda msg, logger=None, level=20: logged.append(msg))
    return logged


def test_scope_less_type_says_which_class_is_built(tmp_path, monkeypatch):
    config = tmp_path / 'c.py'
    config.write_text(f"_base_ = [{str(ROOT / 'configs' / 'upernet_swin_ade20k.py')!r}]\n"
                      "model = dict(backbone=dict(type='SwinTransformer'))\n")
    # the base's DenseKit-only `arch` now goes to mmseg's SwinTransformer
    with pytest.raises(ValueError, match=r"model\.backbone\.type='SwinTransformer' builds mmseg's "
                       r"SwinTransformer .*takes no arch.*write type='densekit\.SwinTransformer'"):
        load_config(str(config))
    config.write_text("default_scope = 'mmseg'\nmodel = dict(type='EncoderDecoder', "
                      "backbone=dict(type='SwinTransformer', embed_dims=96))\n")
    logged = _warnings(monkeypatch)
    load_config(str(config))
    assert logged[0].startswith("model.backbone.type='SwinTransformer' builds mmseg's SwinTransformer")
    assert "write type='densekit.SwinTransformer'" in logged[0]


@pytest.mark.parametrize('task, key, wrong', [
    ('segmentation', 'model.decode_head.in_channels', [96, 192, 384, 768]),
    ('classification', 'model.head.in_channels', 256),
    ('detection', 'model.neck.in_channels', [96, 192, 384, 768]),
])
def test_head_channels_that_do_not_match_the_backbone_name_the_key(task, key, wrong):
    import re

    from mmengine.registry import MODELS, init_default_scope

    from densekit.wiring import check_wiring
    cfg = load_config(DEMOS[task], {key: wrong})
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    channels = list(model.backbone.out_channels)
    right = channels if isinstance(wrong, list) else channels[-1]
    assert right != wrong
    with pytest.raises(ValueError, match=re.escape(f'{key}={wrong} does not match')
                       + '.*' + re.escape(f'set {key}={right}')):
        check_wiring(model)
    check_wiring(MODELS.build(load_config(DEMOS[task]).model))  # the shipped config fits


def test_resume_with_nothing_to_resume_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        run_main(capsys, 'train', str(TINY_SEG), '--work-dir', str(tmp_path), '--resume')
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert f'--resume: nothing to resume in {tmp_path}' in err and 'Traceback' not in err


def test_non_finite_loss_is_one_line(capsys):
    from densekit.cli import user_errors
    with pytest.raises(SystemExit):
        with user_errors('train'):
            raise FloatingPointError('iteration 3: non-finite loss (loss=nan)')
    assert capsys.readouterr().err.splitlines()[0] == \
        'train: error: FloatingPointError: iteration 3: non-finite loss (loss=nan)'


class _BadLabels(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        from densekit.datasets import DatasetError
        raise DatasetError('data/img2.png: label value(s) [7] out of range: 4 classes')


def test_error_in_a_dataloader_worker_is_its_own_line(capsys):
    """torch re-raises a worker's error as "Caught DatasetError in DataLoader
    worker process 0." plus the worker's traceback: the console shows the
    worker's message alone."""
    from densekit.cli import user_errors
    with pytest.raises(SystemExit):
        with user_errors('train'):
            next(iter(torch.utils.data.DataLoader(_BadLabels(), num_workers=1)))
    assert capsys.readouterr().err.splitlines() == [
        'train: error: DatasetError: data/img2.png: label value(s) [7] out of range: 4 classes',
        'train: (the traceback: with --verbose)']


NOT_COMMANDS = ('_env_check.py', 'benchmark_harness.py')
NOT_A_COMMAND = {'_env_check.py': 'the tools import it to name the interpreter they need',
                 'benchmark_harness.py': 'the measurements of tools/benchmark.py, which runs them '
                                         '(tools/benchmark.py --help)'}
TOOLS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'tools').rglob('*.py') if p.name not in NOT_COMMANDS)


def _advice(tool: str, absent: str) -> str:
    return (f"{os.path.basename(tool)}: error: {sys.executable} has no {absent}: run `.venv/bin/python {tool} ...` "
            "(the project's environment, made by `make setup`), or `source .venv/bin/activate` first, or "
            "`pip install -e .` into this environment")


@pytest.mark.parametrize('tool', TOOLS)
def test_wrong_interpreter_is_named(tool):
    """Every tool run by an interpreter without the packages (-S: no
    site-packages, as the system python; -E: no PYTHONPATH) says in one line
    which interpreter to use, --help included."""
    proc = subprocess.run([sys.executable, '-S', '-E', tool, '--help'], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert (proc.returncode, proc.stderr.splitlines()) == (1, [_advice(tool, 'densekit, torch, mmengine')])


def test_missing_torch_is_named_by_tool_and_library():
    run = "import runpy, sys; sys.path.insert(0, 'tools'); sys.argv = ['tools/train.py', 'x.py']; " \
          "runpy.run_path('tools/train.py', run_name='__main__')"
    for code, expected in ((run, _advice('tools/train.py', 'torch')),
                           ('import densekit', 'ImportError: DenseKit needs torch and mmengine')):
        proc = subprocess.run([sys.executable, '-c', f"import sys; sys.modules['torch'] = None; {code}"],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert proc.returncode == 1 and expected in proc.stderr.splitlines()[-1], proc.stderr


def test_a_module_that_is_not_a_command_says_so():
    for module in NOT_COMMANDS:
        proc = subprocess.run([sys.executable, f'tools/{module}', '--help'], capture_output=True, text=True,
                              cwd=ROOT, timeout=60)
        assert proc.returncode != 0 and proc.stdout == ''
        assert proc.stderr.splitlines() == [f'tools/{module}: not a command: {NOT_A_COMMAND[module]}']


def test_console_keeps_progress_results_and_warnings_only(tmp_path, capsys):
    from densekit.cli import ConsoleFilter, QuietRunner
    runner = QuietRunner(model=torch.nn.Linear(2, 2), work_dir=str(tmp_path), experiment_name='quiet')
    runner.logger.info('paramwise_options -- backbone.norm.weight:weight_decay=0.0')
    runner.logger.info('Iter(train) [ 10/300]  lr: 1.0e-03  loss: 0.5')
    runner.logger.warning('a warning')
    runner.logger.warning('"FileClient" will be deprecated in future.')  # the library's own notice
    out = capsys.readouterr().out
    assert 'System environment' not in out and 'paramwise_options' not in out
    assert 'Iter(train) [ 10/300]' in out and 'a warning' in out and 'FileClient' not in out
    log = (tmp_path / runner.timestamp / f'{runner.timestamp}.log').read_text()
    assert 'System environment' in log and 'paramwise_options' in log and 'FileClient' in log  # all in the file
    assert not ConsoleFilter().filter(logging.makeLogRecord(dict(msg='Config:\nmodel = ...', levelno=20)))


def test_short_run_logs_its_losses():
    cfg = load_config(str(TINY_SEG), {'default_hooks.logger.interval': 50, 'train_cfg.max_iters': 20})
    assert 'logging every 5 iterations' in fit_log_interval(cfg)
    assert cfg.default_hooks.logger.interval == 5
    assert fit_log_interval(cfg) is None


# -- where things go -----------------------------------------------------------

@pytest.mark.parametrize('task', sorted(DEMOS))
def test_show_dir_is_one_rule_for_all_tasks(task, tmp_path):
    cfg = load_config(DEMOS[task])
    cfg.work_dir = str(tmp_path / 'work')
    assert enable_visualization(cfg, 'vis') == str(tmp_path / 'work' / 'vis')
    assert enable_visualization(cfg, str(tmp_path / 'abs')) == str(tmp_path / 'abs')
    hooks = [h for h in cfg.custom_hooks if h['type'] == 'densekit.DrawPredictionsHook']
    assert len(hooks) == 1 and hooks[0]['out_dir'] == str(tmp_path / 'abs')
    own = cfg.default_hooks.visualization
    assert own.get('enable') is False or own.get('draw') is False  # the toolbox's hook stays off


def test_show_without_display_says_so_and_waits_nowhere(tmp_path, monkeypatch):
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    cfg = load_config(DEMOS['segmentation'])
    cfg.work_dir = str(tmp_path)
    logged = _warnings(monkeypatch)
    assert enable_visualization(cfg, None, show=True) is None
    assert logged == ['--show: there is no display here (DISPLAY is not set), so nothing is shown; '
                      '--show-dir DIR writes the pictures instead']
    assert not [h for h in cfg.get('custom_hooks', []) if h['type'] == 'densekit.DrawPredictionsHook']


def _image(tmp_path, name, size=(48, 64)):
    path = tmp_path / name
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8))
    return str(path)


def test_drawn_pictures_are_labelled_and_named_after_the_image(tmp_path):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    from mmseg.visualization import SegLocalVisualizer

    from densekit.hooks import DrawPredictionsHook
    vis = SegLocalVisualizer.get_instance('test_first_hour_seg')
    vis.dataset_meta = dict(classes=('a', 'b'), palette=[(255, 0, 0), (0, 255, 0)])
    samples = []
    for name in ('x.jpg', 'x.png'):  # one stem, two files: two pictures
        sample = SegDataSample(metainfo=dict(img_path=_image(tmp_path, name)))
        sample.gt_sem_seg = PixelData(data=torch.zeros(1, 48, 64, dtype=torch.long))
        sample.pred_sem_seg = PixelData(data=torch.ones(1, 48, 64, dtype=torch.long))
        samples.append(sample)
    hook = DrawPredictionsHook(out_dir=str(tmp_path / 'vis'))
    runner = SimpleNamespace(visualizer=vis)
    hook.before_test(runner)
    hook.after_test_iter(runner, 0, None, samples)
    assert sorted(os.listdir(tmp_path / 'vis')) == ['x.png', 'x_png.png']
    drawn = cv2.imread(str(tmp_path / 'vis' / 'x.png'))
    assert drawn.shape[1] == 128 and drawn.shape[0] > 48  # side by side, with a caption strip on top
    strip = drawn[:drawn.shape[0] - 48]
    assert (strip == 255).mean() > 0.5 and (strip < 128).any()  # white strip with dark text


def test_classification_test_set_is_drawn_whole(tmp_path):
    from mmpretrain.structures import DataSample
    from mmpretrain.visualization import UniversalVisualizer

    from densekit.hooks import DrawPredictionsHook
    vis = UniversalVisualizer.get_instance('test_first_hour_cls')
    vis.dataset_meta = dict(classes=('circle', 'square'))
    samples = [DataSample(metainfo=dict(img_path=_image(tmp_path, f'{i}.jpg', (64, 64))))
               .set_gt_label(0).set_pred_label(1).set_pred_score(torch.tensor([0.3, 0.7])) for i in range(3)]
    hook = DrawPredictionsHook(out_dir=str(tmp_path / 'vis'))
    hook.before_test(SimpleNamespace(visualizer=vis))
    hook.after_test_iter(SimpleNamespace(visualizer=vis), 0, None, samples)
    assert sorted(os.listdir(tmp_path / 'vis')) == ['0.png', '1.png', '2.png']


# -- tools that never lie ------------------------------------------------------

def test_infer_folder_skips_bad_files_and_never_collides(tmp_path):
    from densekit.inference import inference
    folder = tmp_path / 'in'
    folder.mkdir()
    _image(folder, 'a.jpg')
    _image(folder, 'a.png')
    (folder / 'broken.jpg').write_bytes(b'not a jpeg')
    (folder / 'notes.txt').write_text('hello')
    skipped = []
    with pytest.warns(UserWarning, match='broken.jpg: skipped'):
        results = inference(str(TINY_SEG), None, [str(folder)], out_dir=tmp_path / 'out', progress=False,
                            skipped=skipped)
    assert len(results) == 2
    assert sorted(os.listdir(tmp_path / 'out')) == ['a.png', 'a_png.png']
    assert sorted(p.name for p, _ in skipped) == ['broken.jpg', 'notes.txt']


def test_classification_names_come_from_the_training_data(tmp_path):
    from densekit.cls_datasets import ImageNet
    from synthetic_cls import CLASSES, generate_imagenet_like
    generate_imagenet_like(tmp_path, num_train=1, num_val=1, size=16)
    dataset = ImageNet(data_root=str(tmp_path), split='val', ann_file='meta/val.txt', data_prefix='val')
    assert dataset.metainfo['classes'] == CLASSES  # not ImageNet's "tench", ...


def test_detector_flops_at_test_scale_two_stage_included():
    from densekit.analysis import build_model_from_config, count_complexity, default_input_shape
    cfg = load_config(str(ROOT / 'configs' / 'swin/mask-rcnn_swin-t_fpn_1x_coco.py'))
    assert default_input_shape(cfg) == (800, 1344)  # Resize (1333, 800), padded to 32
    demo = load_config(DEMOS['detection'])
    model = build_model_from_config(demo)
    result = count_complexity(model, (1, 3, 64, 64))  # Mask R-CNN: used to raise in mmdet's RPN
    assert result.flops['backbone'] > 0 and result.flops['roi_head'] > 0


def test_epoch_based_curves_share_the_iteration_axis(tmp_path):
    from densekit.analysis import plot_curves, read_scalars
    lines = [dict(lr=1e-3, loss=2.0 - e, epoch=e, iter=50 * e, step=50 * e) for e in (1, 2)]
    lines.append({**{f'coco/metric_{i}': 0.1 * i for i in range(17)}, 'step': 2})  # validation after epoch 2
    path = tmp_path / 'scalars.json'
    path.write_text('\n'.join(json.dumps(line) for line in lines))
    groups = read_scalars(path)
    assert groups['val']['coco/metric_3'] == [(100, pytest.approx(0.3))]  # epoch 2 = iteration 100
    assert plot_curves(groups, tmp_path / 'curves.png').is_file()


def test_library_prints_go_to_the_log_file(capsys):
    from densekit.cli import stdout_to_log
    logged = []
    runner = SimpleNamespace(logger=SimpleNamespace(info=logged.append))
    with stdout_to_log(runner):
        print('loading annotations into memory...')
        print(' Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.600')
    print('after')
    assert capsys.readouterr().out == 'after\n'  # pycocotools' chatter is off the console
    assert logged == ['loading annotations into memory...',
                      ' Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.600']


def test_more_workers_than_cores_are_capped_in_the_log_file_only(tmp_path, capsys):
    """torch's "This DataLoader will create 64 worker processes" warning, once per
    loader, never comes: the CLI lowers num_workers to the usable cores, noting it in the log."""
    from densekit.cli import build_runner, usable_cores
    cfg = load_config(str(TINY_SEG), {'train_dataloader.num_workers': 64, 'val_dataloader.num_workers': 64,
                                      'train_dataloader.persistent_workers': True})
    cfg.work_dir = str(tmp_path)
    runner = build_runner(cfg)
    cores = usable_cores()
    assert runner.cfg.train_dataloader.num_workers == runner.cfg.val_dataloader.num_workers == cores < 64
    note = (f'num_workers lowered to {cores}, the CPU cores this process may use (train_dataloader.num_workers=64, '
            'val_dataloader.num_workers=64 in the config)')
    assert 'num_workers' not in capsys.readouterr().out
    assert (tmp_path / runner.timestamp / f'{runner.timestamp}.log').read_text().count(note) == 1


def test_frozen_parameter_notice_stays_in_the_log_file(tmp_path, capsys):
    """mmengine's optimizer constructor on MAE's fixed sin-cos pos_embed (make demo-mae)."""
    from densekit.cli import QuietRunner
    runner = QuietRunner(model=torch.nn.Linear(2, 2), work_dir=str(tmp_path), experiment_name='frozen')
    runner.logger.warning('backbone.pos_embed is skipped since its requires_grad=False')
    assert 'requires_grad' not in capsys.readouterr().out
    assert 'backbone.pos_embed is skipped' in (tmp_path / runner.timestamp / f'{runner.timestamp}.log').read_text()


def test_first_iteration_shows_on_the_console_before_the_first_interval(synthetic_ade, tmp_path, capsys):
    """`make demo` logs every 50 iterations: one line after iteration 1 says it runs."""
    out, err = run_main(capsys, 'train', str(TINY_SEG), '--work-dir', str(tmp_path), '--cfg-options',
                        f'data_root={synthetic_ade}', 'default_hooks.logger.interval=2')
    assert 'requires_grad' not in out + err  # the loss read without torch's scalar-conversion warning
    lines = out.splitlines()
    first = [i for i, line in enumerate(lines) if 'DenseKit: training runs: iteration 1/2 done (loss ' in line]
    progress = [i for i, line in enumerate(lines) if 'Iter(train) [2/2]' in line]
    assert len(first) == 1 and progress and first[0] < progress[0], out
    assert 'progress every 2 iterations' in lines[first[0]]


def test_detector_flops_count_the_roi_heads_at_the_rpn_maximum(capsys):
    """The RoI heads' FLOPs are linear in test_cfg.rpn.max_per_img (the mask
    head's first 100 cancel out), whatever survives NMS on the zero image."""
    from densekit.analysis import build_model_from_config, count_complexity

    def roi_flops(n: int, seed: int = 0) -> int:
        torch.manual_seed(seed)
        cfg = load_config(DEMOS['detection'], {'model.test_cfg.rpn.max_per_img': n, 'model.test_cfg.rpn.nms_pre': n})
        return count_complexity(build_model_from_config(cfg), (1, 3, 64, 64))
    c250, c500, c1000 = roi_flops(250), roi_flops(500), roi_flops(1000, seed=1)
    assert c1000.proposals == 1000 and c1000.flops['rpn_head'] > 0
    f250, f500, f1000 = (c.flops['roi_head'] for c in (c250, c500, c1000))
    assert f1000 - f500 == 2 * (f500 - f250) > 0
    assert 'RoI heads at 1000 proposals' in c1000.note()
    out, _ = run_main(capsys, 'analysis/flops_params', DEMOS['detection'], '--shape', '64', '64')
    assert out.rstrip().splitlines()[-1].startswith('Detector: backbone, neck and RPN at this input; the RoI heads '
                                                    'at 100 proposals')
