"""tools/test.py --tta: mmseg's SegTTAModel over the config's tta_pipeline, end to
end on the synthetic ADE data, and flip-only TTA of a flip-symmetric model equal
to single-scale testing."""
import json

import pytest
import torch

from tests.helpers import TINY_SEG, run_main, run_tool


def _tiny_model(cfg):
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import densekit.backbones  # noqa: F401  (registers our backbones)
    init_default_scope('mmseg')
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    return revert_sync_batchnorm(MODELS.build(cfg.model)).eval()  # as the Runner does without distribution


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """The tiny demo model at its seeded initialisation, saved as tools/train.py saves it."""
    from densekit.config import load_config
    model = _tiny_model(load_config(str(TINY_SEG)))
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def test_tta_end_to_end(checkpoint, synthetic_ade, tmp_path):
    proc = run_tool('test', str(TINY_SEG), str(checkpoint), '--tta', '--work-dir', str(tmp_path),
                    '--out', str(tmp_path / 'metrics.json'), '--cfg-options', f'data_root={synthetic_ade}')
    # tests/data/tiny_upernet_swin.py: 3 resize ratios x 2 flips
    assert 'test-time augmentation: SegTTAModel over 6 views per image' in proc.stdout
    assert 'mIoU: ' in proc.stdout
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert 0 <= metrics['mIoU'] <= 100 and 0 <= metrics['aAcc'] <= 100


@pytest.mark.parametrize('config, error', [
    ('configs/swin-t_imagenet.py', 'configs/swin-t_imagenet.py: --tta needs tta_model and tta_pipeline'),
    ('configs/mask-rcnn_swin-t_fpn_1x_coco.py',
     "--tta is for boxes only: mmdet's DetTTAModel does not merge instance masks")])
def test_tta_refused_with_the_reason(checkpoint, capsys, tmp_path, config, error):
    with pytest.raises(SystemExit) as exc:
        run_main(capsys, 'test', config, str(checkpoint), '--tta', '--work-dir', str(tmp_path))
    assert exc.value.code == 1
    assert error in capsys.readouterr().err


def test_detection_tta_is_mmdets(tmp_path):
    """The COCO detection base wraps the model in mmdet's DetTTAModel over 3 scales x 2 flips."""
    from densekit.config import enable_tta, load_config
    cfg = load_config('configs/retinanet_swin-t_fpn_1x_coco.py')
    assert enable_tta(cfg, 'retinanet') == 'test-time augmentation: DetTTAModel over 6 views per image'
    assert cfg.model.module.type == 'RetinaNet'
    assert cfg.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'


def test_flip_only_tta_of_a_flip_symmetric_model_is_single_scale(synthetic_ade):
    """A model whose logits satisfy f(flip x) = flip f(x) must give, under flip TTA
    (the image and its mirror, un-flipped and averaged by SegTTAModel), exactly its
    single-scale prediction; the plain model, which is not symmetric, must not."""
    from mmengine.dataset import pseudo_collate
    from mmseg.models import SegTTAModel
    from mmseg.registry import DATASETS

    from densekit.config import load_config
    cfg = load_config(str(TINY_SEG), {'data_root': str(synthetic_ade)})
    model = _tiny_model(cfg)
    flip_only = [
        dict(type='LoadImageFromFile'),
        dict(type='TestTimeAug', transforms=[
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')]])]
    dataset_cfg = cfg.test_dataloader.dataset
    single_set = DATASETS.build(dataset_cfg)
    tta_set = DATASETS.build({**dataset_cfg, 'pipeline': flip_only})
    single_batch = pseudo_collate([single_set[i] for i in range(len(single_set))])
    tta_batch = pseudo_collate([tta_set[i] for i in range(len(tta_set))])
    assert len(tta_batch['inputs']) == 2  # two views per image

    def predict(wrapped):
        with torch.no_grad():
            single = torch.stack([s.pred_sem_seg.data for s in wrapped.test_step(single_batch)])
            tta = torch.stack([s.pred_sem_seg.data for s in SegTTAModel(module=wrapped).test_step(tta_batch)])
        return single, tta

    single, tta = predict(model)
    assert not torch.equal(single, tta)  # the plain model is not flip-symmetric

    encode_decode = model.encode_decode
    model.encode_decode = lambda x, metas: (encode_decode(x, metas) + encode_decode(x.flip(-1), metas).flip(-1)) / 2
    single, tta = predict(model)
    assert torch.equal(single, tta)
    assert not torch.equal(single, single.flip(-1))  # a mirrored merge would have shown
