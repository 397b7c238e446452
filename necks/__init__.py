"""DenseKit's own necks; FPN and UPerHead come from mmseg/mmdet."""
from .pyramid_adapter import SimpleFeaturePyramid

__all__ = ['SimpleFeaturePyramid']
