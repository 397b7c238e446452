# Swin-S (Liu et al. 2021, Table 1: 50M params), stochastic depth 0.3: otherwise the recipe of swin-t_300e_imagenet.py.
_base_ = ['swin-t_300e_imagenet.py']
model = dict(backbone=dict(arch='small', drop_path_rate=0.3), head=dict(in_channels=768))
