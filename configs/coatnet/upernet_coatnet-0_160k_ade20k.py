# UPerNet + CoAtNet-0 (paper config, timm coatnet_0_224) on ADE20K, 512x512,
# 160k iterations. The UPerNet-Swin-T recipe (AdamW 6e-5, 16 images per batch,
# no weight decay on norms and relative-position tables, drop path 0.3), with
# CoAtNet-0 (25M parameters, about the size of Swin-T) as the backbone. The
# CoAtNet paper reports no segmentation results, and this config has not been
# trained here, so there is no reference mIoU for it.
#
# Weights: there are no official PyTorch CoAtNet weights, and timm has none for
# the paper config: pretrain timm's coatnet_0_224 yourself (its state dict,
# .pth or .safetensors, loads as it is), or use timm's coatnet_0_rw_224 (depths 2-3-7-2,
# the same 96/192/384/768 widths, released ImageNet-1k weights):
#   --cfg-options model.backbone.arch=0-rw model.backbone.init_cfg.checkpoint=PATH/model.safetensors
# Inputs are normalised as timm trained these models: (x - 127.5) / 127.5.
# The relative-position tables keep their 224 size and are resampled to each
# stage map in every forward pass (see backbones/coatnet.py). Global attention
# at S3 costs O((H/16 * W/16)^2), which is fine for 512 crops and ADE's
# 512-short-side test images. The CoAtNet family file for segmentation.
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py'
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
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
# no weight decay on norms and relative-position tables (mmseg's Swin recipe)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'relative_position_bias_table': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.),
}))
