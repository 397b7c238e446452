# UPerNet + ViT-B/16 on ADE20K exactly as mmseg's
# vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512 (so its published checkpoint
# loads and reproduces): mmseg's MultiLevelNeck (1x1 conv, then resize by
# 4/2/1/0.5) instead of our simple feature pyramid, no final LayerNorm, and the
# position embedding resized with plain bicubic as mmseg does. Otherwise the
# recipe of upernet_vit-b16_160k_ade20k.py.
_base_ = ['upernet_vit-b16_160k_ade20k.py']
model = dict(
    backbone=dict(pos_antialias=False),
    # _delete_: mmseg's neck replaces the simple feature pyramid (none of its keys apply)
    neck=dict(_delete_=True, type='MultiLevelNeck', in_channels=[768, 768, 768, 768], out_channels=768,
              scales=[4, 2, 1, 0.5]))
