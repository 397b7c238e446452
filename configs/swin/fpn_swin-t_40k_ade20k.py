# Semantic FPN + Swin-T on ADE20K, 512x512, 40k iterations. The backbone as in
# upernet_swin_ade20k.py (drop path 0.3, a LayerNorm on every returned stage).
# The Semantic FPN recipe of PVT and PoolFormer (mmseg's poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py):
# 512x512 crops, AdamW 2e-4, weight decay 1e-4, poly decay over 40k iterations,
# 32 images per batch (8 GPUs x 4); see _base_/schedules/schedule_40k.py.
# Not trained here: the Swin paper reports UPerNet only, so there is no reference mIoU.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/fpn.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='densekit.SwinTransformer',
        arch='tiny',
        window_size=7,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        out_norm='all',
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/swin_tiny_patch4_window7_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
train_dataloader = dict(batch_size=4)
