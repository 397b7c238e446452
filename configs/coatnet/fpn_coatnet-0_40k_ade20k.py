# Semantic FPN + CoAtNet-0 on ADE20K, 512x512, 40k iterations. The backbone and
# input normalisation ((x - 127.5) / 127.5, as timm trains it) as in
# upernet_coatnet-0_ade20k.py (96/192/384/768 at strides 4-32, drop path 0.3).
# The Semantic FPN recipe of PVT and PoolFormer (mmseg's poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py):
# 512x512 crops, AdamW 2e-4, weight decay 1e-4, poly decay over 40k iterations,
# 32 images per batch (8 GPUs x 4); see _base_/schedules/schedule_40k.py.
# Not trained here: the CoAtNet paper reports no segmentation results.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/fpn.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        type='densekit.CoAtNet',
        arch='0',
        pretrain_img_size=224,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        out_norm='all',
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/coatnet_0_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
train_dataloader = dict(batch_size=4)
# BatchNorm in the MBConv stages: synchronised in distributed training
sync_bn = 'torch'
