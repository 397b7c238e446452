# LeViT-384 (Graham et al. 2021, Table 3: 39.1M params): otherwise the recipe of levit-128s_1000e_imagenet.py.
_base_ = ['levit-128s_1000e_imagenet.py']
model = dict(backbone=dict(arch='384', drop_path_rate=0.1), head=dict(in_channels=768))
