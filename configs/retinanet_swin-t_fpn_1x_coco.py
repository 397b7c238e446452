# RetinaNet + Swin-T, FPN, 1x (12 epochs) on COCO 2017 boxes. mmdet's
# retinanet_swin-t-p4-w7_fpn_1x_coco trains it with SGD (lr 0.01); we keep the
# Swin paper's AdamW 1e-4 (weight decay 0.05) of our other Swin-T configs,
# 16 images per batch (8 GPUs x 2). This config has not been trained here.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '_base_/models/retinanet_swin-t_fpn.py', '_base_/datasets/coco_detection.py',
    '_base_/default_runtime.py', '_base_/schedules/schedule_1x.py'
]
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='pretrained/swin_tiny_patch4_window7_224.pth')))
env_cfg = dict(cudnn_benchmark=False)  # images of many sizes
log_processor = dict(by_epoch=True)
