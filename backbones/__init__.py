"""Pyramid backbones, registered in the ``densekit`` scope (``type='densekit.<Name>'``)."""
from .swin import SwinTransformer

__all__ = ['SwinTransformer']
