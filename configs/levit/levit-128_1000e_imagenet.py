# LeViT-128 (Graham et al. 2021, Table 3: 9.2M params): otherwise the recipe of levit-128s_1000e_imagenet.py.
_base_ = ['levit-128s_1000e_imagenet.py']
model = dict(backbone=dict(arch='128'), head=dict(in_channels=384))
