# UPerNet + Swin-T on ADE20K, 512x512, 160k iterations (Swin paper, Table 3:
# 44.5 mIoU single-scale with ImageNet-1k pretraining; 16 images per batch,
# i.e. 8 GPUs x 2): the Swin family file for segmentation; its variants inherit it.
# Start from ImageNet weights in any supported layout:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (official swin_tiny_patch4_window7_224.pth, timm .safetensors or mmseg .pth).
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py'
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
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
# mmseg's Swin recipe: no weight decay on norms and relative position biases
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'relative_position_bias_table': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.),
}))
