# UPerNet + Swin-B on ADE20K (Swin paper, Table 3), inheriting the Swin-T config.
_base_ = ['upernet_swin-t_160k_ade20k.py']
model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint='pretrained/swin_base_patch4_window7_224.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
