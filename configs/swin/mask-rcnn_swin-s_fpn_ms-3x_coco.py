# Mask R-CNN + Swin-S, FPN, 3x with multi-scale training (mmdet's
# mask-rcnn_swin-s-p4-w7_fpn_amp-ms-crop-3x_coco: 48.2 box AP, 43.2 mask AP on
# val2017, trained with fp16: add --amp): the recipe of mask-rcnn_swin-t_fpn_ms-3x_coco.py.
_base_ = ['mask-rcnn_swin-t_fpn_ms-3x_coco.py']
model = dict(
    backbone=dict(arch='small',
                  init_cfg=dict(type='Pretrained', checkpoint='pretrained/swin_small_patch4_window7_224.pth')))
