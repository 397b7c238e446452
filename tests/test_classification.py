"""ImageNet classification: parameter counts vs the papers, timm-parity of the
logits, the checked ImageNet dataset, the synthetic data, a 2-iteration train
+ evaluation per family and the tools end to end."""
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.helpers import ROOT, perturb, run_tool

import densekit  # noqa: F401  (registries)
from densekit.datasets import DatasetError

CONFIGS = ROOT / 'configs'
# variant (the name's backbone field) -> its ImageNet config, configs/<family>/<variant>_<schedule>_imagenet.py
# (mae_*_imagenet.py is MAE pretraining: no classifier)
CLS_CONFIGS = {p.name.split('_')[0]: p for p in CONFIGS.glob('*/*_imagenet.py') if not p.name.startswith('mae_')}

# variant -> (the paper's parameter count in M, timm model of the same architecture or None)
PAPER_PARAMS = {
    'vit-b16': (86.0, 'vit_base_patch16_224'),  # ViT paper Table 1 / DeiT-B: 86M
    'swin-t': (28.0, 'swin_tiny_patch4_window7_224'), 'swin-s': (50.0, 'swin_small_patch4_window7_224'),
    'swin-b': (88.0, 'swin_base_patch4_window7_224'),
    'vitae-t': (4.8, None), 'vitae-s': (23.6, None),
    'levit-128s': (7.8, 'levit_128s'), 'levit-128': (9.2, 'levit_128'), 'levit-192': (11.0, 'levit_192'),
    'levit-256': (18.9, 'levit_256'), 'levit-384': (39.1, 'levit_384'),
    'coatnet-0': (25.0, 'coatnet_0_224'), 'coatnet-1': (42.0, 'coatnet_1_224'),
    'coatnet-2': (75.0, 'coatnet_2_224'), 'coatnet-3': (168.0, 'coatnet_3_224'),
    'convmixer-1536-20': (51.6, 'convmixer_1536_20'), 'convmixer-768-32': (21.1, 'convmixer_768_32'),
    'convmixer-1024-20': (24.4, 'convmixer_1024_20_ks9_p14'),
}


def build_classifier(variant: str, cfg: Config | None = None):
    from mmengine.registry import MODELS
    cfg = cfg or Config.fromfile(str(CLS_CONFIGS[variant]))
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model)


def count(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def test_every_variant_has_a_config():
    assert set(CLS_CONFIGS) == set(PAPER_PARAMS)


@pytest.mark.parametrize('variant', sorted(PAPER_PARAMS))
def test_parameter_count_matches_the_paper(variant):
    """Within the papers' rounding (2%), and exactly timm's count where timm
    implements the same architecture (meta device: no memory, no init)."""
    paper, timm_name = PAPER_PARAMS[variant]
    ours = count(build_classifier(variant))
    assert abs(ours - paper) / paper < 0.02, (variant, ours, paper)
    if timm_name:
        with torch.device('meta'):
            ref = count(timm.create_model(timm_name))
        assert round(ours, 6) == round(ref, 6), (variant, ours, ref)


# variant -> (timm model, input size, timm head key prefix -> ours); ViT at 112
# (both position embeddings built for 7x7 patches) to keep the test fast
PARITY = {
    'swin-t': ('swin_tiny_patch4_window7_224', 224, {'head.fc.': 'fc.'}),
    'vit-b16': ('vit_base_patch16_224', 112, {'head.': 'fc.'}),
    'levit-128s': ('levit_128s', 224, {'head.': 'head.', 'head_dist.': 'head_dist.'}),
    'convmixer-768-32': ('convmixer_768_32', 112, {'head.': 'fc.'}),
    'coatnet-0': ('coatnet_0_224', 224, {'head.norm.': 'norm.', 'head.pre_logits.fc.': 'hidden.fc.',
                                         'head.fc.': 'fc.'}),
}


@pytest.mark.parametrize('variant', sorted(PARITY))
def test_logits_match_timm(variant):
    """timm model (random init, perturbed) -> our backbone's checkpoint
    converter + the head's weights -> the same eval logits."""
    name, size, head_keys = PARITY[variant]
    torch.manual_seed(0)
    sized = variant.startswith('vit')
    ref = timm.create_model(name, **(dict(img_size=size) if sized else {})).eval()
    perturb(ref)
    sd = ref.state_dict()
    cfg = Config.fromfile(str(CLS_CONFIGS[variant]))
    if sized:
        cfg.model.backbone.img_size = size
    model = build_classifier(variant, cfg).eval()
    report = model.backbone.load_pretrained_state(sd, strict=True)
    assert report is not None
    head_sd = {ours + k[len(theirs):]: v for k, v in sd.items()
               for theirs, ours in head_keys.items() if k.startswith(theirs)}
    model.head.load_state_dict(head_sd, strict=True)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        ours, theirs = model(x, mode='tensor'), ref(x)
    assert ours.shape == theirs.shape == (1, 1000)
    assert (ours - theirs).abs().max() <= 1e-4


def test_vit_out_type():
    from densekit.backbones import VisionTransformer
    vit = VisionTransformer(dict(embed_dims=32, depth=2, num_heads=2), img_size=32, out_type='cls_token').eval()
    maps = VisionTransformer(dict(embed_dims=32, depth=2, num_heads=2), img_size=32).eval()
    maps.load_state_dict(vit.state_dict())
    x = torch.randn(2, 3, 32, 32)
    token, = vit(x)
    fmap, = maps(x)
    assert token.shape == (2, 32) and fmap.shape == (2, 32, 2, 2)
    assert not torch.allclose(token, fmap.mean((2, 3)))  # the class token, not pooled patches
    with pytest.raises(ValueError, match="out_type must be 'featmap' or 'cls_token'"):
        VisionTransformer(dict(embed_dims=32, depth=2, num_heads=2), out_type='token')


def test_levit_head_trains_both_heads_and_averages_in_eval():
    from mmpretrain.structures import DataSample
    from densekit.heads import LeViTDistilledClsHead
    head = LeViTDistilledClsHead(num_classes=4, in_channels=8)
    feats = (torch.randn(6, 8),)
    samples = [DataSample().set_gt_label(i % 4) for i in range(6)]
    head.loss(feats, samples)['loss'].backward()
    assert head.head.linear.weight.grad.abs().sum() > 0
    assert head.head_dist.linear.weight.grad.abs().sum() > 0
    head.eval()
    x = head.pre_logits(feats)
    assert torch.allclose(head(feats), (head.head(x) + head.head_dist(x)) / 2)


# -- data -------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_cls(tmp_path_factory) -> Path:
    """The synthetic data at 2 train / 1 val image per class, 32x32."""
    from synthetic_cls import generate_imagenet_like
    root = tmp_path_factory.mktemp('cls') / 'synthetic_cls'
    generate_imagenet_like(root, num_train=2, num_val=1, size=32, seed=0)
    return root


def test_synthetic_data_is_deterministic_and_held_out(tmp_path, tiny_cls):
    from synthetic_cls import CLASSES, generate_imagenet_like
    again = tmp_path / 'again'
    generate_imagenet_like(again, num_train=2, num_val=1, size=32, seed=0)
    files = sorted(p.relative_to(tiny_cls) for p in tiny_cls.rglob('*.JPEG'))
    assert len(files) == 3 * len(CLASSES)
    assert all((tiny_cls / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert (tiny_cls / 'meta' / 'val.txt').read_text().splitlines()[0] == 'circle/circle_00000.JPEG 0'
    import cv2
    train = cv2.imread(str(tiny_cls / 'train/circle/circle_00000.JPEG'))
    val = cv2.imread(str(tiny_cls / 'val/circle/circle_00000.JPEG'))
    assert train.shape == (32, 32, 3) and not np.array_equal(train, val)


def _dataset(root, **kwargs):
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    return DATASETS.build(dict(type='densekit.ImageNet', data_root=str(root), pipeline=[
        dict(type='LoadImageFromFile'), dict(type='PackInputs')], **kwargs))


def test_imagenet_reads_folders_and_annotation_files(tiny_cls, tmp_path):
    from synthetic_cls import CLASSES
    ds = _dataset(tiny_cls, split='val', metainfo=dict(classes=CLASSES))  # meta/val.txt
    assert len(ds) == len(CLASSES) and ds.ann_file.endswith('val.txt')
    assert ds[3]['data_samples'].gt_label.item() == 3
    import shutil
    shutil.copytree(tiny_cls / 'val', tmp_path / 'val')  # the folder layout, no meta/
    ds = _dataset(tmp_path, split='val', metainfo=dict(classes=CLASSES))
    assert not ds.ann_file and len(ds) == len(CLASSES)


def test_imagenet_errors_name_the_path(tmp_path, tiny_cls):
    with pytest.raises(FileNotFoundError, match=r'image folder not found: .*nowhere/train\. '
                                                r'expected ImageNet-1k .*/train/<wnid>/\*\.JPEG.*image-net\.org'):
        _dataset(tmp_path / 'nowhere', split='train')
    (tmp_path / 'empty' / 'val' / 'n01440764').mkdir(parents=True)
    with pytest.raises(DatasetError, match='no usable images under .*empty/val'):
        _dataset(tmp_path / 'empty', split='val', metainfo=dict(classes=('tench',)))
    import shutil
    shutil.copytree(tiny_cls, tmp_path / 'broken')
    bad = tmp_path / 'broken' / 'val' / 'ring' / 'ring_00000.JPEG'
    bad.write_bytes(b'not a jpeg')
    from synthetic_cls import CLASSES
    ds = _dataset(tmp_path / 'broken', split='val', metainfo=dict(classes=CLASSES))
    with pytest.raises(DatasetError, match=r'cannot load sample 4 \(.*ring_00000\.JPEG\)'):
        ds[4]


# -- training ---------------------------------------------------------------
FAMILIES = ['swin-t', 'vit-b16', 'vitae-t', 'levit-128s', 'coatnet-0', 'convmixer-768-32']


def tiny_run_cfg(variant: str, root: Path, work_dir: Path) -> Config:
    """The variant's ImageNet config (recipe pipeline, mixup/cutmix, schedule
    type) on the tiny synthetic data at 64x64, 2 iterations then validation."""
    from synthetic_cls import CLASSES
    cfg = Config.fromfile(str(CLS_CONFIGS[variant]))
    cfg.model.pop('teacher', None)  # LeViT's distillation teacher: tests/test_distillation.py
    cfg.model.data_preprocessor.num_classes = cfg.model.head.num_classes = len(CLASSES)
    cfg.train_pipeline[1].scale = 64
    cfg.test_pipeline[1].scale, cfg.test_pipeline[2].crop_size = 73, 64
    for name, split, bs in (('train_dataloader', 'train', 2), ('val_dataloader', 'val', 8)):
        loader = cfg[name]
        loader.update(batch_size=bs, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(root), split=split, metainfo=dict(classes=CLASSES),
                              pipeline=cfg.train_pipeline if split == 'train' else cfg.test_pipeline)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = dict(by_epoch=False, max_iters=2, val_interval=2)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.work_dir = str(work_dir)
    return cfg


@pytest.mark.parametrize('variant', FAMILIES)
def test_two_iterations_and_evaluation(variant, tiny_cls, tmp_path):
    from mmengine.runner import Runner
    runner = Runner.from_cfg(tiny_run_cfg(variant, tiny_cls, tmp_path))
    runner.train()
    assert runner.iter == 2
    metrics = runner.val_loop.run()
    assert {'accuracy/top1', 'accuracy/top5'} <= set(metrics)
    assert 0 <= metrics['accuracy/top1'] <= metrics['accuracy/top5'] <= 100


def test_tools_train_and_test_end_to_end(tiny_cls, tmp_path):
    """tools/train.py then tools/test.py on the demo config, 2 iterations."""
    config = 'configs/demo/convmixer-demo_synthetic-cls.py'
    options = ['--cfg-options', f'data_root={tiny_cls}', 'train_dataloader.batch_size=8',
               'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
               'default_hooks.checkpoint.interval=1']
    run_tool('train', config, '--work-dir', str(tmp_path), *options)
    ckpt = tmp_path / 'epoch_1.pth'
    assert ckpt.is_file()
    out = tmp_path / 'metrics.json'
    proc = run_tool('test', config, str(ckpt), '--work-dir', str(tmp_path), '--out', str(out), *options)
    assert 'accuracy/top1: ' in proc.stdout and 'accuracy/top5: ' in proc.stdout
    metrics = json.loads(out.read_text())
    assert 0 <= metrics['accuracy/top1'] <= 100 and 'accuracy/top5' in metrics


def test_missing_imagenet_is_one_clear_line(tmp_path):
    proc = run_tool('train', 'configs/levit/levit-128s_1000e_imagenet.py', '--work-dir', str(tmp_path),
                    '--cfg-options', f'data_root={tmp_path}/imagenet', check=False)
    assert proc.returncode != 0
    assert f'image folder not found: {tmp_path}/imagenet/train' in proc.stderr
    assert 'Traceback' not in proc.stderr
