"""Classification heads mmpretrain lacks, each reproducing a released
classifier so that its weights load and its logits match.

All take the backbone's tuple of NCHW maps (the last one is classified) and
inherit mmpretrain's ``ClsHead`` (loss, accuracy, predictions).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmpretrain.models.heads import ClsHead, LeViTClsHead
from torch import nn

from densekit.registry import MODELS


@MODELS.register_module()
class NormMlpClsHead(ClsHead):
    """Average pool, LayerNorm, ``Linear + tanh`` pre-logits, linear classifier:
    timm's ``NormMlpClassifierHead``, the head of the CoAtNet paper variants
    (timm ``coatnet_N_224``, ``head_hidden_size`` = the last width). timm's
    ``head.norm``, ``head.pre_logits.fc``, ``head.fc`` are our ``norm``,
    ``hidden.fc``, ``fc`` (``pre_logits`` is a method of ``ClsHead``).

    Args:
        num_classes: classes.
        in_channels: channels C of the last map.
        hidden_channels: width of the tanh layer (None: no hidden layer).
        eps: LayerNorm epsilon (timm: 1e-6 for CoAtNet).
    """

    def __init__(self, num_classes: int, in_channels: int, hidden_channels: int | None = None,
                 eps: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.norm = nn.LayerNorm(in_channels, eps=eps)
        self.hidden = nn.Sequential()
        if hidden_channels:
            self.hidden.add_module('fc', nn.Linear(in_channels, hidden_channels))
            self.hidden.add_module('act', nn.Tanh())
        self.fc = nn.Linear(hidden_channels or in_channels, num_classes)

    def pre_logits(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """feats[-1]: (B, C, H, W) -> (B, hidden_channels or C)."""
        return self.hidden(self.norm(feats[-1].mean((2, 3))))

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """-> (B, num_classes) logits."""
        return self.fc(self.pre_logits(feats))


@MODELS.register_module()
class LeViTDistilledClsHead(LeViTClsHead):
    """mmpretrain's ``LeViTClsHead`` (BatchNorm + linear ``head`` and
    ``head_dist``, their mean in eval: timm's and the official LeViT), made
    trainable: mmpretrain refuses to train it in distillation mode.

    The loss is DeiT's hard distillation (LeViT paper, Sec. 5.1):
    ``0.5 * loss(head, label) + 0.5 * CE(head_dist, teacher's argmax)``, with
    the teacher's labels from ``densekit.DistilledImageClassifier``. Without a
    teacher the label stands in for its prediction (both heads learn the
    label). Without ``distillation`` it is the plain head.

    Input: the (B, C) mean token from a ``GlobalAveragePooling`` neck.
    """

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """-> (B, num_classes); in training with distillation, the mean of the
        two heads' logits (the per-head loss is in :meth:`loss`)."""
        x = self.pre_logits(feats)
        if not self.distillation:
            return self.head(x)
        return (self.head(x) + self.head_dist(x)) / 2

    def loss(self, feats: tuple[torch.Tensor, ...], data_samples: list,
             teacher_labels: torch.Tensor | None = None) -> dict:
        """``teacher_labels``: (B,) class indices, the teacher's argmax.
        Returns ``loss`` (no teacher) or the two halves ``loss_cls`` and
        ``loss_dist`` (mmengine sums every ``loss*`` key)."""
        if not self.distillation:
            return super().loss(feats, data_samples)
        x = self.pre_logits(feats)
        loss_cls = self._get_loss(self.head(x), data_samples)['loss']
        if teacher_labels is None:
            return {'loss': (loss_cls + self._get_loss(self.head_dist(x), data_samples)['loss']) / 2}
        # DeiT's hard distillation: plain cross-entropy, no smoothing, no mixing
        return {'loss_cls': loss_cls / 2, 'loss_dist': F.cross_entropy(self.head_dist(x), teacher_labels) / 2}
