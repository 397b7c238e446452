# ConvMixer-1024/20 (Trockman & Kolter 2022: 24.4M params): otherwise the recipe of convmixer-1536-20_150e_imagenet.py.
_base_ = ['convmixer-1536-20_150e_imagenet.py']
model = dict(backbone=dict(arch='1024_20_ks9_p14'), head=dict(in_channels=1024))
