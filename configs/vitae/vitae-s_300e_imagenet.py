# ViTAE-S (Xu et al. 2021, Table 1: 23.6M params): otherwise the recipe of vitae-t_300e_imagenet.py.
_base_ = ['vitae-t_300e_imagenet.py']
model = dict(backbone=dict(arch='small'), head=dict(in_channels=384))
