"""DeiT hard distillation from a frozen teacher (LeViT's recipe).

mmpretrain 1.2 trains distilled heads (DeiT, LeViT, EfficientFormer) only in
inference form: it has no teacher model (its distillation lives in mmrazor,
not a dependency here). :class:`DistilledImageClassifier` is mmpretrain's
``ImageClassifier`` plus a teacher whose argmax trains the head's
distillation branch (``heads/cls_heads.py: LeViTDistilledClsHead``).

The teacher is built and loaded on the first training step, not with the
model: evaluating, converting or running inference on a distilled student
needs no teacher file. It is kept outside the module tree, so it is in
neither the student's ``state_dict`` (checkpoints), nor its optimizer, nor
what DDP/FSDP wrap; it stays frozen in eval mode and runs without gradients.
"""
from __future__ import annotations

import os

import timm
import torch
from mmpretrain.models import ImageClassifier
from torch import nn

from .checkpoint import load_pretrained
from .registry import MODELS


def build_teacher(cfg: dict) -> nn.Module:
    """The frozen teacher of ``cfg``: ``type`` (a timm model name, built with
    ``pretrained=False``, or a registered model), ``checkpoint`` (a local
    file, loaded weights-only and strictly), optional ``url`` (where to get the
    file, shown when it is missing) and the model's own keyword arguments."""
    cfg = dict(cfg)
    name, path, url = cfg.pop('type'), cfg.pop('checkpoint', None), cfg.pop('url', None)
    if not path or not os.path.isfile(path):
        where = f' (download it from {url})' if url else ''
        raise FileNotFoundError(
            f'distillation teacher checkpoint not found: {path} (model.teacher.checkpoint, resolved from '
            f'{os.getcwd()}){where}. Put the file there, point model.teacher.checkpoint at it, or train '
            f'without distillation: --cfg-options model.teacher=None')
    with MODELS.switch_scope_and_registry(None) as registry:  # the config's default scope
        if timm.is_model(name):
            teacher = timm.create_model(name, pretrained=False, **cfg)
        elif registry.get(name) is not None:
            teacher = registry.build(dict(type=name, **cfg))
        else:
            raise ValueError(f"model.teacher.type='{name}' is neither a timm model nor a registered model")
    # the file must fit exactly: a teacher with missing weights would distil noise
    load_pretrained(teacher, path, convert=lambda state, model: state, strict=True)
    return teacher.requires_grad_(False).eval()


@MODELS.register_module()
class DistilledImageClassifier(ImageClassifier):
    """``ImageClassifier`` whose head also learns a frozen teacher's argmax.

    Args:
        teacher: see :func:`build_teacher`; None trains without a teacher
            (the head's distillation branch then learns the label).
        *args, **kwargs: ``ImageClassifier``'s; the head must take
            ``teacher_labels`` in its ``loss`` (``LeViTDistilledClsHead``).
    """

    def __init__(self, *args, teacher: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if teacher is not None and not getattr(self.head, 'distillation', False):
            raise ValueError(f'model.teacher needs a head with a distillation branch '
                             f'(LeViTDistilledClsHead with distillation=True), not {type(self.head).__name__}')
        self.teacher_cfg = teacher
        self.teacher: nn.Module | None = None  # built by the first training step

    def teacher_labels(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs: (B, 3, H, W), the student's (normalised, mixed) batch ->
        (B,) the teacher's predicted classes."""
        if self.teacher is None:
            # through __dict__: a plain attribute, not a submodule (module docstring)
            self.__dict__['teacher'] = build_teacher(self.teacher_cfg).to(inputs.device)
        with torch.no_grad():
            logits = self.teacher(inputs)
        if logits.shape != (inputs.shape[0], self.head.num_classes):
            raise ValueError(f'teacher {self.teacher_cfg["checkpoint"]} predicts {tuple(logits.shape)}, '
                             f'the student needs (batch, {self.head.num_classes}) logits')
        return logits.argmax(1)

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict:
        if self.teacher_cfg is None:
            return super().loss(inputs, data_samples)
        labels = self.teacher_labels(inputs)  # first: a missing teacher fails before any work
        return self.head.loss(self.extract_feat(inputs), data_samples, teacher_labels=labels)
