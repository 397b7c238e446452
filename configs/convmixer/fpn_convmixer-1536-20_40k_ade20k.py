# Semantic FPN + ConvMixer-1536/20 on ADE20K, 512x512, 40k iterations. The
# backbone and pyramid as in upernet_convmixer-1536-20_ade20k.py: blocks
# 4/9/14/19 through the simple feature pyramid at in_stride=7 (512 wide,
# resampled to strides 4-32), then the recipe's FPN.
# The Semantic FPN recipe of PVT and PoolFormer (mmseg's poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py):
# 512x512 crops, AdamW 2e-4, weight decay 1e-4, poly decay over 40k iterations,
# 32 images per batch (8 GPUs x 4); see _base_/schedules/schedule_40k.py.
# Not trained here: the ConvMixer paper reports classification only.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/fpn.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='densekit.ConvMixer',
        arch='1536_20',
        out_indices=(4, 9, 14, 19),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/convmixer_1536_20_ks9_p7.pth.tar')),
    # an isotropic backbone: the adapter makes the pyramid the FPN reads
    neck=[
        dict(type='densekit.SimpleFeaturePyramid', in_channels=1536, out_channels=512, in_stride=7,
             out_strides=(4, 8, 16, 32), mode='simple'),
        dict(type='FPN', in_channels=[512, 512, 512, 512], out_channels=256, num_outs=4),
    ])
train_dataloader = dict(batch_size=4)
# BatchNorm after every convolution: synchronised in distributed training
sync_bn = 'torch'
