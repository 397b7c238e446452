# UPerNet + Swin-S on ADE20K (Swin paper, Table 3), inheriting the Swin-T config.
_base_ = ['upernet_swin-t_160k_ade20k.py']
model = dict(
    backbone=dict(arch='small', init_cfg=dict(checkpoint='pretrained/swin_small_patch4_window7_224.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
