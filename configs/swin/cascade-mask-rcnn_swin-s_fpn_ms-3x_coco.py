# Cascade Mask R-CNN + Swin-S, FPN, 3x with multi-scale + crop training (Swin
# paper, Table 2: 51.8 box AP, 44.7 mask AP, 107M parameters; official
# cascade_mask_rcnn_swin_small_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py,
# drop path 0.2 as for Swin-T): the recipe of cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py.
_base_ = ['cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py']
model = dict(
    backbone=dict(arch='small',
                  init_cfg=dict(type='Pretrained', checkpoint='pretrained/swin_small_patch4_window7_224.pth')))
