# ViTAE-T (Xu et al. 2021, Table 1: 4.8M params), trained with DeiT's recipe as in
# the paper (stochastic depth 0.1).
_base_ = ['_base_/models/vitae_cls.py', '_base_/datasets/imagenet.py', '_base_/schedules/imagenet_300e.py',
          '_base_/default_runtime.py']

model = dict(backbone=dict(arch='tiny'), head=dict(in_channels=256))
