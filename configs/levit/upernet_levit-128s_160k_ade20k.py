# UPerNet + LeViT-128S on ADE20K, inheriting the LeViT-256 config.
_base_ = ['upernet_levit-256_160k_ade20k.py']
model = dict(
    backbone=dict(arch='128s', drop_path_rate=0.,
                  init_cfg=dict(checkpoint='pretrained/LeViT-128S-96703c44.pth')),
    decode_head=dict(in_channels=[32, 64, 128, 256]),
    auxiliary_head=dict(in_channels=128))
