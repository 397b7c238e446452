"""Heads the toolboxes lack (UPerHead, FCNHead come from mmseg; LinearClsHead
from mmpretrain)."""
from .cls_heads import LeViTDistilledClsHead, NormMlpClsHead, TokenNormClsHead

__all__ = ['LeViTDistilledClsHead', 'NormMlpClsHead', 'TokenNormClsHead']
