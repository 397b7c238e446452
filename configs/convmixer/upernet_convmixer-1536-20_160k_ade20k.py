# UPerNet + ConvMixer-1536/20 (patch 7, kernel 9) on ADE20K, 512x512, 160k
# iterations. The ConvMixer paper reports classification only, so this is our
# recipe: the Swin/ViT UPerNet schedule (AdamW 6e-5, weight decay 0.01, none on
# BatchNorms and biases), blocks 4/9/14/19 (as ViT-B's 2/5/8/11) through the
# ViTDet simple feature pyramid at in_stride=7 - not a power of two, so its
# levels are resampled (bilinear) to ceil(H*7/s) - with 512-wide levels.
# Weights: timm's convmixer_1536_20 (or the official release):
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# The ConvMixer family file for segmentation.
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='densekit.ConvMixer',
        arch='1536_20',
        out_indices=(4, 9, 14, 19),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/convmixer_1536_20_ks9_p7.pth.tar')),
    neck=dict(
        type='densekit.SimpleFeaturePyramid',
        in_channels=1536,
        out_channels=512,
        in_stride=7,
        out_strides=(4, 8, 16, 32),
        mode='simple'),
    decode_head=dict(in_channels=[512, 512, 512, 512]),
    auxiliary_head=dict(in_channels=512, in_index=2))
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
