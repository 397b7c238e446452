# Cascade Mask R-CNN + MAE-pretrained ViT-B/16, FPN, 3x with multi-scale + crop
# training on COCO 2017.
# The recipe of swin/cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py (the Swin paper's:
# 4conv1fc box heads with GIoU, multi-scale + crop training, 3x, AdamW 1e-4,
# weight decay 0.05, 16 images per batch), with the backbone and optimiser of mask-rcnn_mae-vit-b16_coco.py:
# the last block's map through the ViTDet simple feature pyramid (256 wide,
# strides 4-32), then the FPN; ViTDet's MAE fine-tuning optimiser (AdamW 1e-4,
# weight decay 0.1, layer-wise lr decay 0.7, drop path 0.1). Not trained here.
# Weights: the official mae_pretrain_vit_base.pth or timm's vit_base_patch16_224.mae:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/cascade-mask-rcnn_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_3x.py'
]
model = dict(
    backbone=dict(
        type='densekit.MAEViT',
        arch='base',
        drop_path_rate=0.1,
        out_indices=(11,),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/mae_pretrain_vit_base.pth')),
    # an isotropic backbone: the adapter makes the pyramid the FPN reads
    neck=[
        dict(type='densekit.SimpleFeaturePyramid', in_channels=768, out_channels=256, in_stride=16,
             out_strides=(4, 8, 16, 32), mode='simple'),
        dict(type='FPN', in_channels=[256, 256, 256, 256], out_channels=256, num_outs=5),
    ])
# layer-wise decay sets every group's lr and decay
optim_wrapper = dict(
    optimizer=dict(weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.7))
env_cfg = dict(cudnn_benchmark=False)  # images of many sizes
log_processor = dict(by_epoch=True)
