# Cascade Mask R-CNN + Swin-T, FPN, 3x (36 epochs) with multi-scale + crop
# training on COCO 2017, the Swin paper's setting (Table 2: 50.5 box AP, 43.7
# mask AP on val2017, 86M parameters; official
# cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py):
# 4conv1fc box heads with GIoU, AdamW 1e-4, weight decay 0.05 (none on norms
# and relative-position tables), lr x0.1 after epochs 27 and 33, 16 images per
# batch (8 GPUs x 2), drop path 0.2. The official run used fp16: add --amp.
# Start from ImageNet weights in any supported layout (official, timm or mmdet .pth):
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/cascade-mask-rcnn_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_3x.py'
]
model = dict(
    backbone=dict(
        type='densekit.SwinTransformer',
        arch='tiny',
        window_size=7,
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        out_norm='all',
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/swin_tiny_patch4_window7_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
# no weight decay on norms, position embeddings and relative-position tables
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'relative_position_bias_table': dict(decay_mult=0.),
    'pos_embed': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.),
}))
env_cfg = dict(cudnn_benchmark=False)  # images of many sizes
log_processor = dict(by_epoch=True)
