# UPerNet + ViT-B/16 on ADE20K, 512x512, 160k iterations: mmseg's ViT-B recipe
# (vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512: blocks 2/5/8/11, AdamW 6e-5,
# weight decay 0.01 but none on the position embedding, class token and norms,
# 16 images per batch, i.e. 8 GPUs x 2). mmseg uses no layer-wise lr decay for
# the supervised ViT; neither do we. Where mmseg turns the four stride-16 maps
# into a pyramid with MultiLevelNeck (1x1 conv + bilinear resize), we use the
# ViTDet simple feature pyramid, keeping mmseg's 768-wide head inputs
# (upernet_vit-b16-mln_160k_ade20k.py is mmseg's model, for its published checkpoints).
# The ViT family file for segmentation.
# Start from ImageNet weights (timm vit_base_patch16_224, the official
# Google/JAX-converted or DeiT release, or an mmseg checkpoint):
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='densekit.VisionTransformer',
        arch='base',
        img_size=512,  # the 224 checkpoint's 14x14 position grid is resampled to 32x32 on load
        drop_path_rate=0.0,
        out_indices=(2, 5, 8, 11),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/vit_base_patch16_224.pth')),
    neck=dict(
        type='densekit.SimpleFeaturePyramid',
        in_channels=768,
        out_channels=768,
        in_stride=16,
        out_strides=(4, 8, 16, 32),
        mode='simple'),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768, in_index=3))
# no weight decay on the position embedding, class token and norms
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
        }))
