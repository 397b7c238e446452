# UPerNet + Swin-B with 12x12 windows on ADE20K (Swin paper, Table 3: the
# 384x384-pretrained Swin-B; mmseg's
# swin-base-patch4-window12-in1k-384x384-pre_upernet_8xb2-160k_ade20k-512x512),
# inheriting the Swin-B config. Weights: swin_base_patch4_window12_384.pth.
_base_ = ['upernet_swin-b_160k_ade20k.py']
model = dict(
    backbone=dict(window_size=12, init_cfg=dict(checkpoint='pretrained/swin_base_patch4_window12_384.pth')))
