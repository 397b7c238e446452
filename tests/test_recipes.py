"""Issue 21 items 1 and 2: Semantic FPN on ADE20K and Cascade Mask R-CNN on
COCO for all 7 families follow the recipes they cite, checked against the
toolboxes' own configs (mmseg's PoolFormer Semantic FPN, mmdet's Cascade Mask
R-CNN base and its ConvNeXt 4conv1fc-GIoU port of the Swin recipe), and the
Swin-T Cascade Mask R-CNN has the Swin paper's 86M parameters.

Every config here also builds and takes two optimizer steps in
tests/test_configs.py (full-size model, random init, 64x64 batch)."""
from pathlib import Path

import pytest
from mmengine.config import Config

from tests.helpers import ROOT

FAMILIES = ('swin', 'vit', 'mae', 'vitae', 'levit', 'coatnet', 'convmixer')
FPN = sorted((ROOT / 'configs').glob('*/fpn_*_ade20k.py'))
CASCADE = sorted((ROOT / 'configs').glob('*/cascade-mask-rcnn_*_fpn_ms-3x_coco.py'))
SWIN_T_CASCADE = ROOT / 'configs' / 'swin' / 'cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py'


def _reference(toolbox: str, path: str) -> Config:
    module = __import__(toolbox)
    return Config.fromfile(str(Path(module.__file__).parent / '.mim' / 'configs' / path))


def _name(path: Path) -> str:
    return f'{path.parent.name}/{path.name}'


def _last_neck(cfg: Config):
    return cfg.model.neck[-1] if isinstance(cfg.model.neck, list) else cfg.model.neck


def test_every_family_has_both_recipes():
    assert sorted({p.parent.name for p in FPN}) == sorted(FAMILIES)
    assert sorted({p.parent.name for p in CASCADE}) == sorted(FAMILIES)
    assert len(FPN) == 7 and len(CASCADE) == 8  # Swin-T and Swin-S cascade


@pytest.mark.parametrize('path', FPN, ids=_name)
def test_semantic_fpn_is_the_poolformer_recipe(path):
    """Neck, head, optimiser, schedule, batch and training pipeline are those
    of mmseg's poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py (PVT's
    and PoolFormer's Semantic FPN setting)."""
    ref = _reference('mmseg', 'poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py')
    cfg = Config.fromfile(str(path))
    neck = _last_neck(cfg)
    assert neck.type == 'FPN' and (neck.out_channels, neck.num_outs) == (ref.model.neck.out_channels,
                                                                          ref.model.neck.num_outs)
    assert cfg.model.decode_head.to_dict() == ref.model.decode_head.to_dict()
    assert 'auxiliary_head' not in cfg.model
    assert cfg.model.data_preprocessor.size == ref.crop_size == (512, 512)
    optimizer = cfg.optim_wrapper.optimizer.to_dict()
    assert optimizer.pop('betas') == (0.9, 0.999)  # AdamW's default, which the reference leaves implicit
    assert optimizer == ref.optim_wrapper.optimizer.to_dict()
    if path.parent.name != 'mae':  # MAE weights are fine-tuned with layer-wise decay on top
        assert 'paramwise_cfg' not in cfg.optim_wrapper
    assert cfg.param_scheduler == ref.param_scheduler
    assert cfg.train_cfg.max_iters == ref.train_cfg.max_iters == 40000
    assert cfg.train_dataloader.batch_size == ref.train_dataloader.batch_size == 4
    assert cfg.train_dataloader.dataset.pipeline == ref.train_dataloader.dataset.dataset.pipeline


def test_cascade_swin_t_parameter_count_is_the_papers():
    """Swin paper, Table 2: Cascade Mask R-CNN Swin-T 86M parameters (COCO's
    80 classes), Swin-S 107M. Counted on the model built on CPU."""
    from mmengine.registry import init_default_scope
    from mmengine.registry import MODELS
    init_default_scope('mmdet')
    counts = {}
    for path in (SWIN_T_CASCADE, SWIN_T_CASCADE.with_name('cascade-mask-rcnn_swin-s_fpn_ms-3x_coco.py')):
        cfg = Config.fromfile(str(path))
        cfg.model.backbone.init_cfg = None
        assert all(h.num_classes == 80 for h in cfg.model.roi_head.bbox_head)
        counts[path.name] = sum(p.numel() for p in MODELS.build(cfg.model).parameters())
    assert counts['cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py'] == 85_629_804
    assert abs(counts['cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py'] / 86e6 - 1) < 0.02
    assert abs(counts['cascade-mask-rcnn_swin-s_fpn_ms-3x_coco.py'] / 107e6 - 1) < 0.02


@pytest.mark.parametrize('path', CASCADE, ids=_name)
def test_cascade_is_the_swin_recipe(path):
    """The Swin paper's Cascade Mask R-CNN (official
    configs/swin/cascade_mask_rcnn_swin_*_giou_4conv1f_adamw_3x_coco.py): the
    4conv1fc GIoU box heads and DETR-style multi-scale + crop training of
    mmdet's ConvNeXt port of that recipe, the rest of mmdet's cascade base,
    36 epochs with lr steps at 27 and 33, AdamW 1e-4 (MAE: ViTDet's
    fine-tuning optimiser)."""
    base = _reference('mmdet', '_base_/models/cascade-mask-rcnn_r50_fpn.py')
    port = _reference('mmdet', 'convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py')
    cfg = Config.fromfile(str(path))
    assert cfg.model.type == 'CascadeRCNN'
    assert [h.to_dict() for h in cfg.model.roi_head.bbox_head] == [h.to_dict() for h in port.model.roi_head.bbox_head]
    for key in ('rpn_head', 'train_cfg', 'test_cfg', 'data_preprocessor'):
        if key == 'data_preprocessor' and path.parent.name == 'coatnet':
            continue  # timm's (x - 127.5) / 127.5 normalisation
        assert cfg.model[key].to_dict() == base.model[key].to_dict(), key
    roi_head = {k: v for k, v in cfg.model.roi_head.to_dict().items() if k != 'bbox_head'}
    assert roi_head == {k: v for k, v in base.model.roi_head.to_dict().items() if k != 'bbox_head'}
    neck = _last_neck(cfg)
    assert neck.type == 'FPN' and (neck.out_channels, neck.num_outs) == (256, 5)
    without_backend_args = [{k: v for k, v in t.items() if k != 'backend_args'} for t in port.train_pipeline]
    assert cfg.train_dataloader.dataset.pipeline == without_backend_args
    assert cfg.train_cfg.max_epochs == port.train_cfg.max_epochs == 36
    assert cfg.param_scheduler == port.param_scheduler
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr) == ('AdamW', 1e-4)
    assert optimizer.weight_decay == (0.1 if path.parent.name == 'mae' else 0.05)
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs: the paper's 16
