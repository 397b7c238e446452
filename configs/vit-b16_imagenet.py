# ViT-B/16 (Dosovitskiy et al. 2021; 86M params) trained with DeiT-B's recipe
# (Touvron et al. 2021): the bases as they are.
_base_ = ['_base_/models/vit_cls.py', '_base_/datasets/imagenet.py', '_base_/schedules/imagenet_300e.py',
          '_base_/default_runtime.py']
