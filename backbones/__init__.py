"""Pyramid backbones, registered in the ``densekit`` scope (``type='densekit.<Name>'``)."""
from .coatnet import CoAtNet
from .convmixer import ConvMixer
from .levit import LeViT
from .mae import LayerDecayOptimWrapperConstructor, MAEPretrainViT, MAEViT
from .swin import SwinTransformer
from .vit import VisionTransformer
from .vitae import ViTAE

__all__ = ['CoAtNet', 'ConvMixer', 'LayerDecayOptimWrapperConstructor', 'LeViT', 'MAEPretrainViT', 'MAEViT',
           'SwinTransformer', 'VisionTransformer', 'ViTAE']
