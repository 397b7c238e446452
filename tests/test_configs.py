"""Every shipped config parses, inherits and builds its model."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from densekit.config import ConfigKeyError, check_options, load_config, task_of
from densekit.wiring import check_wiring

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(ROOT / 'configs')))
def test_config_builds_model(path):
    cfg = Config.fromfile(str(path))
    task = task_of(cfg)
    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    cfg.model.backbone.init_cfg = None  # no pretrained files in CI
    model = MODELS.build(cfg.model)
    if cfg.model.type == 'MAE':  # pretraining: the decoder reads the encoder's tokens on its patch grid
        assert cfg.model.neck.embed_dim == model.backbone.out_channels[-1]
        assert cfg.model.neck.num_patches == model.backbone.grid_size[0] * model.backbone.grid_size[1]
        assert cfg.model.neck.patch_size == cfg.model.head.patch_size == model.backbone.patch_size
        return
    if task == 'classification':
        # the head reads the one map (or class token) the backbone returns
        assert len(model.backbone.out_indices) == 1
        assert cfg.model.head.in_channels == model.backbone.out_channels[-1]
        assert cfg.model.head.num_classes == cfg.model.data_preprocessor.num_classes
        return
    if task == 'detection':
        _check_detection_pyramid(cfg, model)
        return
    assert task == 'segmentation'
    necks = _necks(model)
    if necks and type(necks[-1]).__name__ == 'MultiLevelNeck':
        # mmseg's neck (resizes by its scales; configs that load mmseg's ViT checkpoints)
        assert list(cfg.model.decode_head.in_channels) == [cfg.model.neck.out_channels] * len(cfg.model.neck.scales)
        return
    check_wiring(model)  # every neck's and head's in_channels against what feeds it
    # isotropic backbones get their pyramid from the adapter neck
    pyramid = next((n for n in reversed(necks) if hasattr(n, 'out_strides')), model.backbone)
    assert tuple(pyramid.out_strides) == (4, 8, 16, 32)
    if necks and type(necks[-1]).__name__ == 'FPN':  # Semantic FPN: the head upsamples from the FPN's strides
        assert len(pyramid.out_channels) == necks[-1].num_outs
        assert list(cfg.model.decode_head.feature_strides) == list(pyramid.out_strides)
    else:
        assert list(cfg.model.decode_head.in_channels) == list(pyramid.out_channels)


def _necks(model) -> list:
    """The model's necks in order: one, several (a config's list of necks
    builds an nn.Sequential), or none."""
    if not model.with_neck:
        return []
    return list(model.neck) if isinstance(model.neck, torch.nn.Sequential) else [model.neck]


def _check_detection_pyramid(cfg: Config, model) -> None:
    """The neck reads the backbone's levels and the heads' strides are the neck's."""
    necks = _necks(model)
    check_wiring(model)  # every neck's and head's in_channels against what feeds it
    if type(necks[-1]).__name__ == 'SimpleFeaturePyramid':
        # isotropic backbones: the adapter alone makes the 256-wide levels (ViTDet)
        assert cfg.model.neck.in_channels == model.backbone.out_channels[-1]
        strides = list(necks[-1].out_strides)
        assert set(necks[-1].out_channels) == {cfg.model.rpn_head.in_channels}
    else:  # mmdet's FPN: levels from start_level on, extra levels at twice the stride
        fpn, feeding = necks[-1], (necks[-2] if len(necks) > 1 else model.backbone)  # the adapter, if any
        assert list(fpn.in_channels) == list(feeding.out_channels)
        strides = list(feeding.out_strides)[fpn.start_level:]
        while len(strides) < fpn.num_outs:
            strides.append(strides[-1] * 2)
    head = cfg.model.get('rpn_head') or cfg.model.bbox_head
    assert list(head.anchor_generator.strides) == strides
    if 'roi_head' in cfg.model:
        for extractor in ('bbox_roi_extractor', 'mask_roi_extractor'):
            assert list(cfg.model.roi_head[extractor].featmap_strides) == strides[:4]


# Each UPerNet config -> the mmseg recipe it cites (configs/<...> in mmseg's wheel);
# the families mmseg lacks cite the Swin recipe.
SWIN_T_RECIPE = 'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
SEG_RECIPES = {
    'upernet_swin_ade20k.py': SWIN_T_RECIPE, 'swin/upernet_swin-t_160k_ade20k.py': SWIN_T_RECIPE,
    'swin/upernet_swin-s_160k_ade20k.py': 'swin/swin-small-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    'swin/upernet_swin-b_160k_ade20k.py': 'swin/swin-base-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    'swin/upernet_swin-b-w12_160k_ade20k.py':
        'swin/swin-base-patch4-window12-in1k-384x384-pre_upernet_8xb2-160k_ade20k-512x512.py',
    'vit/upernet_vit-b16_160k_ade20k.py': 'vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py',
    'vit/upernet_vit-b16-mln_160k_ade20k.py': 'vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py',
    'vit/upernet_vit-b16-ln-mln_160k_ade20k.py': 'vit/vit_vit-b16-ln_mln_upernet_8xb2-160k_ade20k-512x512.py',
    'mae/upernet_mae-vit-b16_100e_ade20k.py': 'mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py',
    'levit/upernet_levit-256_160k_ade20k.py': SWIN_T_RECIPE,
    'levit/upernet_levit-128s_160k_ade20k.py': SWIN_T_RECIPE,
    'coatnet/upernet_coatnet-0_160k_ade20k.py': SWIN_T_RECIPE,
    'convmixer/upernet_convmixer-1536-20_160k_ade20k.py': SWIN_T_RECIPE,
    'vitae/upernet_vitae-s_160k_ade20k.py': SWIN_T_RECIPE,
}


def test_segmentation_configs_test_as_their_recipe():
    """Whole-image or sliding-window inference (crop, stride) and the test
    pipeline are those of the mmseg recipe each config cites."""
    import mmseg
    recipes = Path(mmseg.__file__).parent / '.mim' / 'configs'
    ours = sorted(str(p.relative_to(ROOT / 'configs')) for p in (ROOT / 'configs').glob('**/upernet_*_ade20k.py')
                  if 'demo' not in p.parts)
    assert ours == sorted(SEG_RECIPES)
    for name, recipe in SEG_RECIPES.items():
        cfg, ref = Config.fromfile(str(ROOT / 'configs' / name)), Config.fromfile(str(recipes / recipe))
        assert cfg.model.test_cfg.to_dict() == ref.model.test_cfg.to_dict(), name
        assert cfg.test_dataloader.dataset.pipeline == ref.test_dataloader.dataset.pipeline, name


def test_swin_variants_follow_the_paper():
    """Swin-T/S/B backbone sizes of the paper (Table 1, classifier excluded):
    28M/50M/88M with the 1000-class head."""
    from densekit.backbones import SwinTransformer
    for arch, params in (('tiny', 28.3), ('small', 49.6), ('base', 87.8)):
        m = SwinTransformer(arch, out_norm='last')
        head = m.level_channels[-1] * 1000 + 1000
        total = (sum(p.numel() for p in m.parameters()) + head) / 1e6
        assert abs(total - params) < 0.1, (arch, total)


def test_misspelt_cfg_option_is_refused_with_suggestion():
    cfg = Config.fromfile(str(ROOT / 'configs' / 'upernet_swin_ade20k.py'))
    with pytest.raises(ConfigKeyError, match="no key 'drop_path'.*Did you mean 'drop_path_rate'"):
        check_options(cfg, {'model.backbone.drop_path': 0.2})
    with pytest.raises(ConfigKeyError, match="no key 'train_dataloder'"):
        check_options(cfg, {'train_dataloder.batch_size': 4})
    check_options(cfg, {'model.backbone.drop_path_rate': 0.2, 'model.backbone.init_cfg.prefix': 'backbone.'})


def test_data_root_option_moves_every_dataloader(tmp_path):
    cfg = load_config(str(ROOT / 'configs' / 'upernet_swin_ade20k.py'), {'data_root': str(tmp_path)})
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[name].dataset.data_root == str(tmp_path)


def test_data_root_option_moves_the_coco_evaluators(tmp_path):
    cfg = load_config(str(ROOT / 'configs' / 'swin/mask-rcnn_swin-t_fpn_1x_coco.py'), {'data_root': str(tmp_path)})
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[name].dataset.data_root == str(tmp_path)
    for name in ('val_evaluator', 'test_evaluator'):
        assert cfg[name].ann_file == str(tmp_path / 'annotations' / 'instances_val2017.json')


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match='configs/nope.py'):
        load_config('configs/nope.py')


def _seg_batch(cfg: Config) -> dict:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    cfg.model.data_preprocessor.size = (64, 64)
    num_classes = cfg.model.decode_head.num_classes
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, 64, 64)))
        samples.append(s)
    return dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)


def _det_batch(cfg: Config) -> dict:
    """Two 64x64 images, each with two objects (box, mask, random class)."""
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    head = cfg.model.roi_head.bbox_head if 'roi_head' in cfg.model else cfg.model.bbox_head
    head = head[0] if isinstance(head, list) else head  # Cascade R-CNN: one head per stage
    boxes = torch.tensor([[8., 16., 40., 48.], [30., 4., 60., 30.]])
    masks = np.zeros((2, 64, 64), np.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        m[y1:y2, x1:x2] = 1
    samples = []
    for _ in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1., 1.)))
        s.gt_instances = InstanceData(bboxes=boxes, labels=torch.randint(0, head.num_classes, (2,)),
                                      masks=BitmapMasks(masks, 64, 64))
        samples.append(s)
    return dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)


def _cls_batch(cfg: Config) -> dict:
    from mmpretrain.structures import DataSample
    num_classes = cfg.model.head.num_classes
    samples = [DataSample().set_gt_label(int(torch.randint(0, num_classes, ()))) for _ in range(2)]
    return dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)


def _mae_batch(cfg: Config) -> dict:
    """Two unlabelled images at the pretraining size, stacked as default_collate does."""
    from mmpretrain.structures import DataSample
    size = cfg.model.backbone.img_size
    return dict(inputs=torch.randint(0, 255, (2, 3, size, size), dtype=torch.uint8),
                data_samples=[DataSample(), DataSample()])


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(ROOT / 'configs')))
def test_config_two_training_steps(path):
    """Two optimizer steps of the full model (random init) on a 2-image
    64x64 batch (classification: with the config's mixup/cutmix; detection:
    two boxes with masks per image; MAE pretraining: at its input size):
    losses are finite and the backbone's weights move."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = None
    cfg.model.pop('teacher', None)  # no teacher file in CI either (tests/test_distillation.py)
    if 'roi_head' in cfg.model:
        # 64 sampled RoIs per image, not 512: the mask head's CPU time grows
        # with the positives (up to a quarter of them); the wiring is the same
        stages = cfg.model.train_cfg.rcnn
        for stage in stages if isinstance(stages, list) else [stages]:
            # Cascade R-CNN: 16, for 3 stages of 4-conv box heads and mask heads
            stage.sampler.num = 16 if isinstance(stages, list) else 64
    if cfg.model.data_preprocessor.get('pad_size_divisor', 1) > 32:
        # ViTDet pads to 1024x1024: that would train ViT-B at 1024 (20 GB on the CPU), not at 64x64
        cfg.model.data_preprocessor.pad_size_divisor = 32
    torch.manual_seed(0)
    batch = {'classification': _cls_batch, 'detection': _det_batch, 'segmentation': _seg_batch,
             'pretraining': _mae_batch}['pretraining' if cfg.model.type == 'MAE' else task_of(cfg)](cfg)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model = revert_sync_batchnorm(model)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    model.train()
    for _ in range(2):
        losses = model.train_step(batch, optim)
        assert all(torch.isfinite(v).all() for v in losses.values())
    if 'roi_head' in cfg.model:  # (Cascade) Mask R-CNN: box and mask branches of every stage trained
        num_stages = cfg.model.roi_head.get('num_stages')
        stages = [f's{i}.' for i in range(num_stages)] if num_stages else ['']
        assert {'loss_rpn_cls', *(s + k for s in stages for k in ('loss_bbox', 'loss_mask'))} <= set(losses)
    moved = sum(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))
    assert moved > 0.9 * len(before)
