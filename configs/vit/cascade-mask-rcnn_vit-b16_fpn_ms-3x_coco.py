# Cascade Mask R-CNN + ViT-B/16, FPN, 3x with multi-scale + crop training on COCO 2017.
# The recipe of swin/cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py (the Swin paper's:
# 4conv1fc box heads with GIoU, multi-scale + crop training, 3x, AdamW 1e-4,
# weight decay 0.05, 16 images per batch), with the backbone of mask-rcnn_vit-b16_coco.py: the last
# block's stride-16 map through the ViTDet simple feature pyramid (256 wide,
# strides 4-32), then the FPN and its stride-64 level; drop path 0.1, no
# weight decay on the position embedding, class token and norms. Not trained
# here: there is no reference AP for it.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/cascade-mask-rcnn_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_3x.py'
]
model = dict(
    backbone=dict(
        type='densekit.VisionTransformer',
        arch='base',
        drop_path_rate=0.1,
        out_indices=(11,),  # the position embedding is resampled to each input's token grid
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/vit_base_patch16_224.pth')),
    # an isotropic backbone: the adapter makes the pyramid the FPN reads
    neck=[
        dict(type='densekit.SimpleFeaturePyramid', in_channels=768, out_channels=256, in_stride=16,
             out_strides=(4, 8, 16, 32), mode='simple'),
        dict(type='FPN', in_channels=[256, 256, 256, 256], out_channels=256, num_outs=5),
    ])
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
        }))
env_cfg = dict(cudnn_benchmark=False)  # images of many sizes
log_processor = dict(by_epoch=True)
