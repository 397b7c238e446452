# UPerNet + MAE-pretrained ViT-B/16 on ADE20K, 512x512 (MAE paper, appendix:
# UperNet as in BEiT's segmentation code, fine-tuned end-to-end for 100 epochs
# with 16 images per batch; 48.1 mIoU). ADE20K has 20,210 training images, so
# 100 epochs are 100 x 1,264 = 126,400 iterations at 8 GPUs x 2. The paper
# searched the learning rate per entry without stating it; we take mmseg's MAE
# reproduction: AdamW 1e-4, weight decay 0.05, layer-wise lr decay 0.65, drop
# path 0.1, blocks 3/5/7/11 through BEiT's deconv/identity/max-pool pyramid,
# a 768-wide head, sliding-window testing.
# Left out, for our ViT has no such parts: the relative position bias the
# paper turns on for transfer (initialised at zero) and mmseg's layer scale
# (init_values=1.0). mmseg also trains with fp16: add --amp.
# Weights: the official mae_pretrain_vit_base.pth (decoder ignored) or timm's
# vit_base_patch16_224.mae:  --cfg-options model.backbone.init_cfg.checkpoint=PATH
# The MAE family file for segmentation.
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py'
]
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='densekit.MAEViT',
        arch='base',
        img_size=512,
        drop_path_rate=0.1,
        out_indices=(3, 5, 7, 11),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/mae_pretrain_vit_base.pth')),
    neck=dict(
        type='densekit.SimpleFeaturePyramid',
        in_channels=768,
        out_channels=None,
        in_stride=16,
        out_strides=(4, 8, 16, 32),
        mode='beit',
        norm_cfg=norm_cfg),
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=768),
    auxiliary_head=dict(in_channels=768, in_index=2),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65))
max_iters = 126400
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=max_iters, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=12640)
default_hooks = dict(checkpoint=dict(interval=12640))
