# ViT-B/16 (Dosovitskiy et al. 2021; 86M params) trained with DeiT-B's recipe
# (Touvron et al. 2021): the class token after the final LayerNorm, linear head:
# timm's vit_base_patch16_224 (global_pool='token'), DeiT-B's architecture.
# The ViT family file for classification.
_base_ = ['../_base_/models/classifier.py', '../_base_/datasets/imagenet.py',
          '../_base_/schedules/imagenet_300e.py', '../_base_/default_runtime.py']

model = dict(
    backbone=dict(type='densekit.VisionTransformer', arch='base', img_size=224, drop_path_rate=0.1,
                  out_norm='last', out_type='cls_token'),
    head=dict(in_channels=768))
