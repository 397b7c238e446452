# CoAtNet-3 (Dai et al. 2021, Table 3: 168M params), stochastic depth 0.7:
# otherwise the recipe of coatnet-0_300e_imagenet.py.
_base_ = ['coatnet-0_300e_imagenet.py']
model = dict(backbone=dict(arch='3', drop_path_rate=0.7), head=dict(in_channels=1536, hidden_channels=1536))
