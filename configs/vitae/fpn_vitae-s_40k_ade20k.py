# Semantic FPN + ViTAE-S on ADE20K, 512x512, 40k iterations. The backbone as in
# upernet_vitae-s_ade20k.py (96/192/384/384 at strides 4-32, drop path 0.1).
# The Semantic FPN recipe of PVT and PoolFormer (mmseg's poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py):
# 512x512 crops, AdamW 2e-4, weight decay 1e-4, poly decay over 40k iterations,
# 32 images per batch (8 GPUs x 4); see _base_/schedules/schedule_40k.py.
# Not trained here: the ViTAE paper reports no segmentation results.
# Weights: the official ViTAE-S.pth.tar (needs DENSEKIT_TRUST_CHECKPOINTS=1):
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/fpn.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='densekit.ViTAE',
        arch='small',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/ViTAE-S.pth.tar')),
    neck=dict(in_channels=[96, 192, 384, 384]))
train_dataloader = dict(batch_size=4)
# BatchNorm in the PCMs: synchronised across GPUs in distributed training
sync_bn = 'torch'
