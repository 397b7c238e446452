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

Full-size models at a small input (the test pipelines resized to at most 48x32).
"""
import copy

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from tests.helpers import ROOT
from densekit.config import load_config, task_of
from densekit.distributed import convert_sync_batchnorm, distributed_cfg, revert_sync_batchnorm

CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


def _shrink(node):
    """Test-time sizes down to 48x32 (Resize / ResizeEdge / CenterCrop), in place."""
    if isinstance(node, dict):
        if node.get('type') in ('Resize', 'ResizeEdge', 'CenterCrop'):
            for key in ('scale', 'crop_size'):
                if key in node:
                    node[key] = (48, 32) if node['type'] == 'Resize' else 32
        for value in node.values():
            _shrink(value)
    elif isinstance(node, list):
        for value in node:
            _shrink(value)


def _keep_every_box(node):
    """score_thr=0 in a detector's test_cfg (random weights score under 0.05),
    and at most 20 proposals and boxes (the mask head's time)."""
    if isinstance(node, dict):
        if 'score_thr' in node:
            node['score_thr'] = 0.
        if 'max_per_img' in node:
            node['max_per_img'] = min(node['max_per_img'], 20)
        for value in node.values():
            _keep_every_box(value)


def _build(cfg, task):
    if task == 'segmentation':
        from mmseg.apis import init_model
        return init_model(cfg, None, device='cpu')
    if task == 'detection':
        from mmdet.apis import init_detector
        return init_detector(cfg, None, device='cpu')  # builds the test dataset (lazy_init) for its palette
    from mmpretrain.apis import get_model
    return get_model(cfg, pretrained=False, device='cpu')


def _predict(model, task, image) -> list[torch.Tensor]:
    """The toolbox inference API's prediction: segmentation logits, detection
    boxes and scores, or classification scores."""
    if task == 'segmentation':
        from mmseg.apis import inference_model
        return [inference_model(model, image).seg_logits.data]
    if task == 'detection':
        from mmdet.apis import inference_detector
        pred = inference_detector(model, image).pred_instances
        return [pred.bboxes, pred.scores]
    from mmpretrain.apis import ImageClassificationInferencer
    return [torch.as_tensor(ImageClassificationInferencer(model, pretrained=False)(image)[0]['pred_scores'])]


@pytest.mark.parametrize('config', CONFIGS)
def test_inference_api_without_dataset_and_distributed_norms(config, tmp_path):
    cfg = load_config(config)
    task = task_of(cfg)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):  # no data anywhere
        if cfg.get(name) and 'data_root' in cfg[name].dataset:
            cfg[name].dataset.data_root = str(tmp_path / 'absent')
    _shrink(cfg._cfg_dict)
    _keep_every_box(cfg.model.get('test_cfg'))
    image = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        torch.manual_seed(0)
        model = _build(copy.deepcopy(cfg), task).eval()
        with torch.no_grad():
            want = _predict(model, task, image)
        assert want[0].numel() > 0  # a prediction (detection: at least one box)

        # what each wrapper does to the norms (in place: the model is not needed after)
        gpu_cfg, cpu_cfg = copy.deepcopy(cfg), copy.deepcopy(cfg)
        distributed_cfg(gpu_cfg, cuda=True)
        distributed_cfg(cpu_cfg, cuda=False)
        assert 'sync_bn' not in gpu_cfg and 'sync_bn' not in cpu_cfg  # mmengine's own conversion is not applied
        sync_bn = gpu_cfg.model_wrapper_cfg.get('sync_bn')
        steps = []
        if sync_bn:  # densekit.DistributedDataParallel on GPUs
            model = convert_sync_batchnorm(model, sync_bn)
            steps.append(f'sync_bn={sync_bn!r}')
        model, reverted = revert_sync_batchnorm(model)  # densekit.CPUDistributedDataParallel
        if reverted:
            steps.append(f'{reverted} SyncBN -> BN')
        if steps:
            with torch.no_grad():
                got = _predict(model.eval(), task, image)
            for a, b in zip(got, want, strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=0, msg=lambda m: f'{config} after {steps}: {m}')
