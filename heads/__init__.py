"""Heads the toolboxes lack (UPerHead, FCNHead come from mmseg; LinearClsHead
from mmpretrain)."""
from .cls_heads import LeViTDistilledClsHead, NormMlpClsHead

__all__ = ['LeViTDistilledClsHead', 'NormMlpClsHead']
