# Mask R-CNN + ViT-B/16 on COCO 2017, ViTDet-style (Li et al., 2022): the last
# block's stride-16 map through our simple feature pyramid (2x2 deconvs /
# max-pools, 1x1 + 3x3 convs with LayerNorm) to 256-wide levels at strides
# 4-64, which replace the FPN; mmdet's RPN and RoI heads as for Swin-T.
# ViTDet's window attention, LSJ augmentation and 100-epoch schedule are not
# used: this is our Swin-T 1x recipe (1333x800, AdamW 1e-4, weight decay 0.05,
# none on the position embedding, class token and norms), with ViTDet's drop
# path 0.1. Its stride-64 level max-pools the backbone map by 4 where ViTDet
# subsamples P5. Not trained here: there is no reference AP for it. The ViT
# family file for Mask R-CNN.
# Weights as for the UPerNet ViT config:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_1x.py'
]
model = dict(
    backbone=dict(
        type='densekit.VisionTransformer',
        arch='base',
        drop_path_rate=0.1,
        out_indices=(11,),  # the position embedding is resampled to each input's token grid
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/vit_base_patch16_224.pth')),
    # _delete_: the simple feature pyramid replaces the base's FPN (none of its keys apply)
    neck=dict(
        _delete_=True,
        type='densekit.SimpleFeaturePyramid',
        in_channels=768,
        out_channels=256,
        in_stride=16,
        out_strides=(4, 8, 16, 32, 64),
        mode='simple'))
# no weight decay on the position embedding, class token and norms
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
        }))
# images of many sizes: cuDNN's per-shape benchmarking would cost more than it saves
env_cfg = dict(cudnn_benchmark=False)
log_processor = dict(by_epoch=True)
