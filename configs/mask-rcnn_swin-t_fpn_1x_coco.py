# Mask R-CNN + Swin-T, FPN, 1x (12 epochs) on COCO 2017: mmdet's
# mask-rcnn_swin-t-p4-w7_fpn_1x_coco (42.7 box AP, 39.3 mask AP on val2017 with
# ImageNet-1k weights): single-scale 1333x800 training, AdamW 1e-4, weight
# decay 0.05, 16 images per batch (8 GPUs x 2). Start from ImageNet weights
# in any supported layout (official, timm or mmseg/mmdet .pth):
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '_base_/models/mask-rcnn_swin-t_fpn.py', '_base_/datasets/coco_instance.py',
    '_base_/default_runtime.py', '_base_/schedules/schedule_1x.py'
]
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='pretrained/swin_tiny_patch4_window7_224.pth')))
# images of many sizes: cuDNN's per-shape benchmarking would cost more than it saves
env_cfg = dict(cudnn_benchmark=False)
log_processor = dict(by_epoch=True)
