# UPerNet + LeViT-256 on ADE20K, 512x512 crops, 160k iterations. The LeViT paper
# reports no segmentation results: this is the Swin recipe (AdamW 6e-5, 16
# images per batch, i.e. 8 GPUs x 2) with LeViT's pyramid, not a published
# setting. Start from ImageNet weights in any supported layout:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (official LeViT-256-13b5763e.pth, timm levit_256 / levit_conv_256 .safetensors,
# mmpretrain .pth with model.backbone.init_cfg.prefix=backbone.).
#
# Levels: stem after conv2 (/4, C/4) and conv3 (/8, C/2), stage 1 (/16), stage 2
# (/32); stage 3 (/64) is not built. img_size=512 stores the attention-bias
# tables at the crop's resolution (32x32 and 16x16): the 224 tables (14x14, 7x7)
# are resampled bicubically once on loading, other test sizes on the fly.
# The LeViT family file for segmentation.
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='densekit.LeViT',
        arch='256',
        img_size=512,
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/LeViT-256-13b5763e.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 384]),
    auxiliary_head=dict(in_channels=256))
# no weight decay on attention biases and BatchNorm (LeViT's only normalisation)
optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys=dict(attention_biases=dict(decay_mult=0.))))
