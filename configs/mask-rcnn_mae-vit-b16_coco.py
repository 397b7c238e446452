# Mask R-CNN + MAE-pretrained ViT-B/16 on COCO 2017, ViTDet-style: the
# pyramid of mask-rcnn_vit-b16_coco.py (last block -> simple feature pyramid,
# 256-wide levels at strides 4-64, no FPN) with ViTDet's MAE fine-tuning
# optimiser: AdamW 1e-4, weight decay 0.1, layer-wise lr decay 0.7, drop path
# 0.1. Our 1x schedule (12 epochs, 1333x800), not ViTDet's 100-epoch LSJ
# recipe with window attention (ViTDet's 51.6 box AP for ViT-B is not
# reachable with it); not trained here.
# Weights: the official mae_pretrain_vit_base.pth or timm's vit_base_patch16_224.mae:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['mask-rcnn_vit-b16_coco.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='densekit.MAEViT',
        arch='base',
        drop_path_rate=0.1,
        out_indices=(11,),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/mae_pretrain_vit_base.pth')))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.7))
