"""Classification heads mmpretrain lacks, each reproducing a released
classifier so that its weights load and its logits match.

All take the backbone's tuple of NCHW maps (the last one is classified) and
inherit mmpretrain's ``ClsHead`` (loss, accuracy, predictions).
"""
from __future__ import annotations

import torch
from mmpretrain.models.heads import ClsHead, LeViTClsHead
from torch import nn

from densekit.registry import MODELS


@MODELS.register_module()
class TokenNormClsHead(ClsHead):
    """LayerNorm at every position, mean over positions, then a linear
    classifier: the official ViTAE classifier (``norm``, ``torch.mean(x, 1)``,
    ``head``). mmpretrain's heads pool first and normalise after (or not at all),
    which is not the same function, so ViTAE's weights would not reproduce.

    Args:
        num_classes: classes.
        in_channels: channels C of the last map.
    """

    def __init__(self, num_classes: int, in_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.norm = nn.LayerNorm(in_channels)
        self.fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """feats[-1]: (B, C, H, W) -> (B, C)."""
        return self.norm(feats[-1].flatten(2).transpose(1, 2)).mean(1)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """-> (B, num_classes) logits."""
        return self.fc(self.pre_logits(feats))


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

    The paper trains ``head_dist`` on a RegNetY-16GF teacher's hard labels;
    no teacher ships here, so each head is trained on the ground truth and the
    loss is the mean of the two (DeiT's loss with the label standing in for
    the teacher's prediction). Without ``distillation`` it is the plain head.

    Input: the (B, C) mean token from a ``GlobalAveragePooling`` neck.
    """

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """-> (B, num_classes); in training with distillation, the mean of the
        two heads' logits (the per-head loss is in :meth:`loss`)."""
        x = self.pre_logits(feats)
        if not self.distillation:
            return self.head(x)
        return (self.head(x) + self.head_dist(x)) / 2

    def loss(self, feats: tuple[torch.Tensor, ...], data_samples: list) -> dict:
        if not self.distillation:
            return super().loss(feats, data_samples)
        x = self.pre_logits(feats)
        losses = [self._get_loss(head(x), data_samples) for head in (self.head, self.head_dist)]
        return {'loss': (losses[0]['loss'] + losses[1]['loss']) / 2}
