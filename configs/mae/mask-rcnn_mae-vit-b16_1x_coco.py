# Mask R-CNN + MAE-pretrained ViT-B/16 on COCO 2017, ViTDet-style: the last
# block's stride-16 map through our simple feature pyramid to 256-wide levels
# at strides 4-64, which replace the FPN (no FPN), with ViTDet's MAE fine-tuning
# optimiser: AdamW 1e-4, weight decay 0.1, layer-wise lr decay 0.7, drop path
# 0.1. Our 1x schedule (12 epochs, 1333x800), not ViTDet's 100-epoch LSJ
# recipe with window attention (ViTDet's 51.6 box AP for ViT-B is not
# reachable with it); not trained here. The MAE family file for Mask R-CNN.
# Weights: the official mae_pretrain_vit_base.pth or timm's vit_base_patch16_224.mae:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_1x.py'
]
model = dict(
    backbone=dict(
        type='densekit.MAEViT',
        arch='base',
        drop_path_rate=0.1,
        out_indices=(11,),  # the position embedding is resampled to each input's token grid
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/mae_pretrain_vit_base.pth')),
    # _delete_: the simple feature pyramid replaces the base's FPN (none of its keys apply)
    neck=dict(
        _delete_=True,
        type='densekit.SimpleFeaturePyramid',
        in_channels=768,
        out_channels=256,
        in_stride=16,
        out_strides=(4, 8, 16, 32, 64),
        mode='simple'))
optim_wrapper = dict(
    optimizer=dict(weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.7))
# images of many sizes: cuDNN's per-shape benchmarking would cost more than it saves
env_cfg = dict(cudnn_benchmark=False)
log_processor = dict(by_epoch=True)
