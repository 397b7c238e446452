# RetinaNet + Swin-T, FPN, 1x (12 epochs) on COCO 2017 boxes, as mmdet's
# retinanet_swin-t-p4-w7_fpn_1x_coco: stages 1-3 (strides 8/16/32) feed the FPN.
# mmdet trains it with SGD (lr 0.01); we keep the Swin paper's AdamW 1e-4 (weight
# decay 0.05) of our other Swin-T configs, 16 images per batch (8 GPUs x 2). The
# Swin family file for RetinaNet. This config has not been trained here.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/retinanet_fpn.py', '../_base_/datasets/coco_detection.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_1x.py'
]
model = dict(
    backbone=dict(
        type='densekit.SwinTransformer',
        arch='tiny',
        window_size=7,
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),  # RetinaNet starts at P3 (stride 8)
        out_norm='all',
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/swin_tiny_patch4_window7_224.pth')),
    neck=dict(in_channels=[192, 384, 768]))
# the Swin paper's detection optimiser: no weight decay on norms and position tables
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'relative_position_bias_table': dict(decay_mult=0.),
    'pos_embed': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.),
}))
env_cfg = dict(cudnn_benchmark=False)  # images of many sizes
log_processor = dict(by_epoch=True)
