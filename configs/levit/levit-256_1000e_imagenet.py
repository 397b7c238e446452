# LeViT-256 (Graham et al. 2021, Table 3: 18.9M params): otherwise the recipe of levit-128s_1000e_imagenet.py.
_base_ = ['levit-128s_1000e_imagenet.py']
model = dict(backbone=dict(arch='256'), head=dict(in_channels=512))
