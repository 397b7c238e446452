"""Tiny instances of the seven families for the multi-process and conformance
tests: the archs of tests/test_compile.py (every code path, few blocks), built
with any extra backbone arguments. Needs tests/data (or tests) on sys.path."""
from densekit.backbones import CoAtNet, ConvMixer, LeViT, MAEViT, SwinTransformer, VisionTransformer, ViTAE

TINY = {
    'swin': (SwinTransformer, dict(arch=dict(embed_dims=16, depths=(2, 1, 1, 1), num_heads=(1, 2, 2, 4)),
                                   window_size=7, drop_path_rate=0.)),
    'vit': (VisionTransformer, dict(arch=dict(embed_dims=32, depth=3, num_heads=2), img_size=64,
                                    out_indices=(0, 2), out_norm='last')),
    'mae': (MAEViT, dict(arch=dict(embed_dims=32, depth=3, num_heads=2), img_size=64, out_indices=(0, 2),
                         drop_path_rate=0.)),
    'vitae': (ViTAE, dict(arch=dict(embed_dims=(8, 8, 16), token_dims=(8, 16, 32), depth=1, num_heads=2,
                                    mlp_ratio=2., group=4), drop_path_rate=0.)),
    'levit': (LeViT, dict(arch=dict(embed_dims=(32, 48, 64), key_dim=8, num_heads=(2, 3, 4), depths=(1, 1, 1)))),
    'coatnet': (CoAtNet, dict(arch=dict(stem_width=16, embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1)),
                              pretrain_img_size=32, drop_path_rate=0., out_norm='last')),
    'convmixer': (ConvMixer, dict(arch=dict(dim=16, depth=3, kernel_size=5, patch_size=7, act='gelu'),
                                  out_indices=(0, 2))),
}

# per family: an out_indices subset that stops before the last level, so the
# modules after it (and output norms of levels not returned) are never used
SUBSETS = {'swin': dict(out_indices=(0, 1, 2), out_norm='last'), 'vit': dict(out_indices=(0,)),
           'mae': dict(out_indices=(0, 1)), 'vitae': dict(out_indices=(0, 1)), 'levit': dict(out_indices=(0, 1, 2)),
           'coatnet': dict(out_indices=(0, 1, 2)), 'convmixer': dict(out_indices=(0, 1))}


def tiny(family: str, **kwargs):
    cls, args = TINY[family]
    return cls(**{**args, **kwargs})
