# Swin-B (Liu et al. 2021, Table 1: 88M params), stochastic depth 0.5: otherwise the recipe of swin-t_300e_imagenet.py.
_base_ = ['swin-t_300e_imagenet.py']
model = dict(backbone=dict(arch='base', drop_path_rate=0.5), head=dict(in_channels=1024))
