"""The bad-input catalogue not covered by tests/test_tools.py (corrupt image,
label out of range, unknown type, misspelt --cfg-options key, missing data
root, checkpoint that does not fit) or tests/test_checkpoint.py (checkpoints
that need code): each gives one clear error naming the file, key or value."""
import shutil

import cv2
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.helpers import TINY_SEG
from densekit.datasets import DatasetError, SyntheticADEDataset


def dataset(root, split='training', train=False):
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(TINY_SEG))
    ds_cfg = (cfg.train_dataloader if train else cfg.val_dataloader).dataset
    ds_cfg.pop('type')
    ds_cfg.data_root = str(root)
    ds_cfg.data_prefix = dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}')
    return SyntheticADEDataset(**ds_cfg)


@pytest.fixture
def data(synthetic_ade, tmp_path):
    return shutil.copytree(synthetic_ade, tmp_path / 'data')


@pytest.mark.parametrize('train', [False, True])
def test_annotation_of_the_wrong_size_names_both_files(data, train):
    """Checked right after loading, before the train pipeline's crop and flip
    would misalign the labels silently."""
    image = sorted((data / 'images' / 'training').glob('*.jpg'))[0]
    label = data / 'annotations' / 'training' / f'{image.stem}.png'
    cv2.imwrite(str(label), cv2.resize(cv2.imread(str(label), cv2.IMREAD_UNCHANGED), (48, 32),
                                       interpolation=cv2.INTER_NEAREST))
    ds = dataset(data, train=train)
    with pytest.raises(DatasetError, match=rf'{label}: annotation is 48x32 \(WxH\) but its image {image} is 64x64'):
        ds[0]
    ds[1]  # the others still load


def test_missing_annotation_names_the_folder_and_file(data):
    """Checked when the dataset lists its files, before any training."""
    image = sorted((data / 'images' / 'training').glob('*.jpg'))[2]
    label = data / 'annotations' / 'training' / f'{image.stem}.png'
    label.unlink()
    with pytest.raises(DatasetError, match=rf"{label.parent} lacks the masks of 1 of the 8 images under "
                                           rf"{image.parent} \(first: {label}\)"):
        dataset(data)


def test_missing_ade20k_split_names_that_split(tmp_path):
    """tools/test.py reads the validation split: the download advice names its folders, not training's."""
    from densekit.datasets import ADE20KDataset
    init_default_scope('mmseg')
    ds = ADE20KDataset(data_root=str(tmp_path), data_prefix=dict(img_path='images/validation',
                                                                 seg_map_path='annotations/validation'),
                       pipeline=[], lazy_init=True)
    with pytest.raises(FileNotFoundError) as err:
        ds.check_paths()
    assert f'unzip it so that {tmp_path}/images/validation and {tmp_path}/annotations/validation exist' \
        in str(err.value) and 'training' not in str(err.value)


def test_empty_split_names_the_folder(data):
    for kind in ('images', 'annotations'):
        (data / kind / 'empty').mkdir()
    with pytest.raises(DatasetError, match=rf"no images ending in .jpg under {data / 'images' / 'empty'}"):
        dataset(data, split='empty')


def test_unknown_key_in_a_config_file_is_named(synthetic_ade, tmp_path, capsys):
    """A typo inside a config file (not --cfg-options) fails when the model is
    built, as one line naming the class and the argument."""
    config = tmp_path / 'typo.py'
    config.write_text(f"_base_ = ['{TINY_SEG}']\nmodel = dict(backbone=dict(drop_path=0.2))\n")
    from tools.train import main
    with pytest.raises(SystemExit) as exit_:
        main([str(config), '--work-dir', str(tmp_path / 'work'), '--cfg-options', f'data_root={synthetic_ade}'])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "unexpected keyword argument 'drop_path'" in err and 'SwinTransformer' in err
    assert 'Traceback' not in err


def test_inputs_smaller_than_a_patch_are_padded_not_refused():
    """Documented behaviour, not an error: the backbones pad to their patch and
    window size, so even a 1x1 image yields a prediction of its own size."""
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(str(TINY_SEG)).model).eval()
    for h, w in ((1, 1), (3, 5)):
        meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
        with torch.no_grad():
            pred = model.predict(torch.rand(1, 3, h, w), [SegDataSample(metainfo=meta)])
        assert pred[0].pred_sem_seg.shape == (h, w)
