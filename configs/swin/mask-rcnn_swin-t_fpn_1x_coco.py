# Mask R-CNN + Swin-T, FPN, 1x (12 epochs) on COCO 2017: mmdet's
# mask-rcnn_swin-t-p4-w7_fpn_1x_coco (42.7 box AP, 39.3 mask AP on val2017 with
# ImageNet-1k weights): single-scale 1333x800 training, AdamW 1e-4, weight
# decay 0.05, 16 images per batch (8 GPUs x 2); drop path 0.2, a LayerNorm on
# every returned stage (out_norm='all'). The Swin family file for Mask R-CNN.
# Start from ImageNet weights in any supported layout (official, timm or mmseg/mmdet .pth):
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_1x.py'
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
# the Swin paper's detection optimiser: no weight decay on norms and position tables
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'relative_position_bias_table': dict(decay_mult=0.),
    'pos_embed': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.),
}))
# images of many sizes: cuDNN's per-shape benchmarking would cost more than it saves
env_cfg = dict(cudnn_benchmark=False)
log_processor = dict(by_epoch=True)
