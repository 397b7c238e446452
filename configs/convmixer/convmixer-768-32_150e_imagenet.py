# ConvMixer-768/32 (Trockman & Kolter 2022: 21.1M params): otherwise the recipe of convmixer-1536-20_150e_imagenet.py.
_base_ = ['convmixer-1536-20_150e_imagenet.py']
model = dict(backbone=dict(arch='768_32'), head=dict(in_channels=768))
