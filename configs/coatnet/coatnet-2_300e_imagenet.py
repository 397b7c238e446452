# CoAtNet-2 (Dai et al. 2021, Table 3: 75M params), stochastic depth 0.5:
# otherwise the recipe of coatnet-0_300e_imagenet.py.
_base_ = ['coatnet-0_300e_imagenet.py']
model = dict(backbone=dict(arch='2', drop_path_rate=0.5), head=dict(in_channels=1024, hidden_channels=1024))
