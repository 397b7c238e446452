"""What a fresh new-user trial still tripped on after the first round of
issue 24 (tests/test_first_hour.py): each kind, fixed in the shared place."""
import pytest

from conftest import ROOT
from densekit.config import ConfigKeyError, check_pretrained, load_config

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
