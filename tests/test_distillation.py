"""LeViT's DeiT hard distillation (densekit/distill.py): the LeViT-128S config
with a tiny LeViT and timm's tiny ``test_resnet`` as the teacher."""
import pytest
import timm
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.helpers import ROOT, run_main

import densekit  # noqa: F401  (registries)
from densekit.config import load_config

CONFIG = ROOT / 'configs' / 'levit/levit-128s_1000e_imagenet.py'
NUM_CLASSES, CLASS_K = 5, 3
TINY_LEVIT = dict(embed_dims=(16, 24, 32), key_dim=4, num_heads=(2, 2, 2), depths=(1, 1, 1))


@pytest.fixture
def teacher_file(tmp_path):
    """A timm ``test_resnet`` that predicts class ``CLASS_K`` for any image
    (its classifier's bias dwarfs the features), with random BatchNorm statistics."""
    torch.manual_seed(0)
    teacher = timm.create_model('test_resnet', num_classes=NUM_CLASSES)
    with torch.no_grad():
        teacher.fc.weight.mul_(1e-3)
        teacher.fc.bias.zero_()[CLASS_K] = 100.
        for m in teacher.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
    path = tmp_path / 'teacher.pth'
    torch.save({'model': teacher.state_dict()}, path)
    return path


def tiny_cfg(teacher_path) -> Config:
    cfg = Config.fromfile(str(CONFIG))
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.update(arch=TINY_LEVIT, img_size=64)
    cfg.model.head.update(in_channels=32, num_classes=NUM_CLASSES)
    cfg.model.data_preprocessor.num_classes = NUM_CLASSES
    cfg.model.teacher.update(type='test_resnet', checkpoint=str(teacher_path), num_classes=NUM_CLASSES)
    return cfg


def build(cfg: Config):
    from mmengine.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def batch(size: int = 4) -> dict:
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    labels = [0, 1, 2, 4][:size]  # never CLASS_K: the label cannot stand in for the teacher
    return dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8, generator=g) for _ in labels],
                data_samples=[DataSample().set_gt_label(y) for y in labels])


def test_distillation_target_is_the_teachers_argmax(teacher_file):
    """With mixup/cutmix on, ``loss_cls`` is the config's loss on the mixed
    labels and ``loss_dist`` is CE(head_dist, k) for a teacher that always
    predicts k, each halved (DeiT: 0.5/0.5)."""
    model = build(tiny_cfg(teacher_file)).train()
    data = model.data_preprocessor(batch(), training=True)
    inputs, samples = data['inputs'], data['data_samples']
    assert 'gt_score' in samples[0]  # mixed soft targets reached the head
    losses = model.loss(inputs, samples)
    assert set(losses) == {'loss_cls', 'loss_dist'}
    x = model.head.pre_logits(model.extract_feat(inputs))
    target = torch.full((len(inputs),), CLASS_K)
    torch.testing.assert_close(losses['loss_dist'], F.cross_entropy(model.head.head_dist(x), target) / 2)
    scores = torch.stack([s.gt_score for s in samples])
    torch.testing.assert_close(losses['loss_cls'], model.head.loss_module(model.head.head(x), scores) / 2)
    # what the label would have given instead: the teacher is what the dist head learns
    labels = torch.tensor([0, 1, 2, 4])
    assert not torch.isclose(losses['loss_dist'], F.cross_entropy(model.head.head_dist(x), labels) / 2)


def test_training_keeps_the_teacher_frozen_and_out_of_the_student(teacher_file):
    """3 optimizer steps: the student learns, the teacher (weights and
    BatchNorm statistics) is the file's, in eval mode, in neither the
    student's state_dict nor its optimizer."""
    from mmengine.optim import build_optim_wrapper
    cfg = tiny_cfg(teacher_file)
    model = build(cfg)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    for _ in range(3):
        losses = model.train_step(batch(), optim)
        assert {'loss_cls', 'loss_dist'} <= set(losses) and all(torch.isfinite(v) for v in losses.values())
    teacher = model.teacher
    assert isinstance(teacher, torch.nn.Module) and not teacher.training
    saved = torch.load(teacher_file, weights_only=True)['model']
    assert teacher.state_dict().keys() == saved.keys()
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert model.state_dict().keys() == before.keys()  # nothing of the teacher's
    optimized = {id(p) for group in optim.optimizer.param_groups for p in group['params']}
    assert not optimized & {id(p) for p in teacher.parameters()}
    assert len(optimized) == len(list(model.parameters()))
    after = model.state_dict()
    assert not torch.equal(after['head.head_dist.linear.weight'], before['head.head_dist.linear.weight'])


def test_teacher_errors_name_the_file(teacher_file, tmp_path):
    from densekit.distill import build_teacher
    with pytest.raises(FileNotFoundError, match=r'teacher checkpoint not found: .*nope\.pth .*model\.teacher=None'):
        build_teacher(dict(type='test_resnet', checkpoint=str(tmp_path / 'nope.pth')))
    with pytest.raises(ValueError, match=r'(?s)teacher\.pth does not fit ResNet.*fc\.weight'):
        build_teacher(dict(type='test_resnet', checkpoint=str(teacher_file), num_classes=7))
    with pytest.raises(ValueError, match="model.teacher.type='no_such_net' is neither"):
        build_teacher(dict(type='no_such_net', checkpoint=str(teacher_file)))
    cfg = tiny_cfg(teacher_file)
    cfg.model.update(head=dict(num_classes=7), data_preprocessor=dict(num_classes=7))
    model = build(cfg).train()
    data = model.data_preprocessor(batch(), training=True)
    with pytest.raises(ValueError, match=r'teacher .*teacher\.pth predicts \(4, 5\), the student needs \(batch, 7\)'):
        model.loss(data['inputs'], data['data_samples'])


def test_distillation_off_from_the_command_line():
    """``--cfg-options model.teacher=None``: the LeViT head learns the label
    with both branches, and no teacher is looked for."""
    cfg = load_config(str(CONFIG), {'model.teacher': None})
    cfg.model.backbone.update(arch=TINY_LEVIT, img_size=64)
    cfg.model.head.in_channels = 32
    init_default_scope(cfg.default_scope)
    model = build(cfg).train()
    data = model.data_preprocessor(batch(), training=True)
    assert set(model.loss(data['inputs'], data['data_samples'])) == {'loss'}
    assert model.teacher is None


def test_missing_teacher_is_one_clear_line(tmp_path, capsys):
    """The shipped recipe without the teacher file: tools/train.py stops at
    the first step with the path, where to get the file and how to turn
    distillation off."""
    from synthetic_cls import CLASSES, generate_imagenet_like
    generate_imagenet_like(tmp_path / 'data', num_train=1, num_val=1, size=32, seed=0)
    missing = tmp_path / 'regnety_160.pth'
    with pytest.raises(SystemExit) as exit_:
        run_main(capsys, 'train', str(CONFIG), '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                 f'data_root={tmp_path / "data"}', f'model.teacher.checkpoint={missing}',
                 # the synthetic data's classes, so that the class count check passes
                 f'model.head.num_classes={len(CLASSES)}', f'model.data_preprocessor.num_classes={len(CLASSES)}',
                 'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
                 'train_dataloader.persistent_workers=False')
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert f'train: error: FileNotFoundError: distillation teacher checkpoint not found: {missing}' in err
    assert 'https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth' in err
    assert '--cfg-options model.teacher=None' in err
    assert 'Traceback' not in err
