# UPerNet + Swin-T on ADE20K, 512x512, 160k iterations (Swin paper, Table 3:
# 44.5 mIoU single-scale with ImageNet-1k pretraining; 16 images per batch,
# i.e. 8 GPUs x 2). Start from ImageNet weights in any supported layout:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (official swin_tiny_patch4_window7_224.pth, timm .safetensors or mmseg .pth).
_base_ = [
    '_base_/models/upernet_swin.py', '_base_/datasets/ade20k.py',
    '_base_/default_runtime.py', '_base_/schedules/schedule_160k.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='pretrained/swin_tiny_patch4_window7_224.pth')))
