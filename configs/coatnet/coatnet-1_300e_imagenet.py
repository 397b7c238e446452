# CoAtNet-1 (Dai et al. 2021, Table 3: 42M params), stochastic depth 0.3:
# otherwise the recipe of coatnet-0_300e_imagenet.py.
_base_ = ['coatnet-0_300e_imagenet.py']
model = dict(backbone=dict(arch='1', drop_path_rate=0.3), head=dict(in_channels=768, hidden_channels=768))
