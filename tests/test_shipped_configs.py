"""Issue 18 items 4 and 6, over every shipped config (configs/*.py, configs/demo/*.py):

* the toolbox's own inference API (mmseg ``init_model``/``inference_model``,
  mmdet ``init_detector``/``inference_detector``, mmpretrain ``get_model`` +
  ``ImageClassificationInferencer``) builds the model and predicts with no
  dataset on disk (before: mmdet's ``init_detector`` failed on all 7 COCO
  configs: it builds the test dataset for its metainfo);
* what a distributed run does to the model's norms (``sync_bn`` through our
  wrappers on GPUs, SyncBN -> per-process BN on CPU processes) leaves its
  eval outputs unchanged (before: mmengine's conversion dropped the
  activation of timm's ``BatchNormAct2d``: CoAtNet-0's outputs moved by about 2.7).

Full-size models at a small input (the test pipelines resized to 96x64).
"""
import copy

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from conftest import ROOT
from densekit.config import load_config, task_of
from densekit.distributed import convert_sync_batchnorm, distributed_cfg, revert_sync_batchnorm

CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)
SMALL = {'scale': (96, 64), 'crop_size': 64}


def _shrink(node):
    """Test-time sizes down to 96x64 (Resize / ResizeEdge / CenterCrop), in place."""
    if isinstance(node, dict):
        if node.get('type') in ('Resize', 'ResizeEdge', 'CenterCrop'):
            for key in ('scale', 'crop_size'):
                if key in node:
                    node[key] = SMALL[key] if node['type'] != 'ResizeEdge' else 64
        for value in node.values():
            _shrink(value)
    elif isinstance(node, list):
        for value in node:
            _shrink(value)


def _build(cfg, task):
    if task == 'segmentation':
        from mmseg.apis import init_model
        return init_model(cfg, None, device='cpu')
    if task == 'detection':
        from mmdet.apis import init_detector
        return init_detector(cfg, None, device='cpu')  # builds the test dataset (lazy_init) for its palette
    from mmpretrain.apis import get_model
    return get_model(cfg, pretrained=False, device='cpu')


def _predict(model, task, image):
    if task == 'segmentation':
        from mmseg.apis import inference_model
        return inference_model(model, image).pred_sem_seg.shape
    if task == 'detection':
        from mmdet.apis import inference_detector
        return inference_detector(model, image).pred_instances.bboxes.shape[-1]
    from mmpretrain.apis import ImageClassificationInferencer
    return ImageClassificationInferencer(model, pretrained=False)(image)[0]['pred_scores'].shape


def _outputs(model, task, x):
    with torch.no_grad():
        if task == 'segmentation':
            return model._forward(x)
        if task == 'detection':
            feats = model.extract_feat(x)
            head = model.rpn_head if hasattr(model, 'rpn_head') else model.bbox_head
            return feats, head(feats)
        return model(x, mode='tensor')


def _flat(out):
    if torch.is_tensor(out):
        return [out]
    return [t for o in out for t in _flat(o)]


@pytest.mark.parametrize('config', CONFIGS)
def test_inference_api_without_dataset_and_distributed_norms(config, tmp_path):
    cfg = load_config(config)
    task = task_of(cfg)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):  # no data anywhere
        if cfg.get(name) and 'data_root' in cfg[name].dataset:
            cfg[name].dataset.data_root = str(tmp_path / 'absent')
    _shrink(cfg._cfg_dict)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        torch.manual_seed(0)
        model = _build(copy.deepcopy(cfg), task).eval()
        image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
        assert _predict(model, task, image)

        x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        want = _flat(_outputs(model, task, x))
        for cuda in (True, False):
            run_cfg = copy.deepcopy(cfg)
            distributed_cfg(run_cfg, cuda=cuda)
            assert 'sync_bn' not in run_cfg  # mmengine's own conversion is not applied
            converted = copy.deepcopy(model)
            sync_bn = run_cfg.model_wrapper_cfg.get('sync_bn')
            if cuda and sync_bn:  # densekit.DistributedDataParallel
                converted = convert_sync_batchnorm(converted, sync_bn)
            elif not cuda:  # densekit.CPUDistributedDataParallel
                converted, _ = revert_sync_batchnorm(converted)
            got = _flat(_outputs(converted.eval(), task, x))
            assert len(got) == len(want)
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=0, atol=0, msg=lambda m: f'{config} (cuda={cuda}): {m}')
