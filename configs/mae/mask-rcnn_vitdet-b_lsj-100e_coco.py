# Mask R-CNN ViTDet-B on COCO 2017 (Li et al., ECCV 2022, "Exploring Plain Vision
# Transformer Backbones for Object Detection", Table 3 / detectron2's
# projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py: 51.6 box AP, 45.9 mask AP):
# - backbone: MAE-pretrained ViT-B/16 at 1024, window attention (14x14 tokens) in
#   all blocks but 2, 5, 8, 11 (global), decomposed relative position bias, drop
#   path 0.1, the last block's stride-16 map only;
# - neck: our simple feature pyramid (2x2 deconvs / max-pool, 1x1 + 3x3 convs with
#   LayerNorm) to 256-wide levels at strides 4-64;
# - heads: mmdet's RPN with 2 convs, 4conv1fc box head and mask head with
#   LayerNorm (mmpretrain's LN2d) in their convs;
# - data: large-scale jitter at 1024 (resize by 0.1-2.0, 1024x1024 crop, pad to
#   1024x1024), 64 images per batch (16 GPUs x 4);
# - schedule: 100 epochs = 184375 iterations, lr x0.1 at 88 and 96 epochs, 250
#   warm-up iterations; AdamW lr 1e-4, weight decay 0.1, layer-wise lr decay 0.7.
# Known differences from detectron2: the stride-64 level max-pools the backbone
# map by 4 (detectron2 subsamples P5), norms and biases have no weight decay (our
# layer-decay constructor, as MAE fine-tuning), images are padded with the mean
# pixel before normalisation (zero after it, as detectron2's square_pad).
# detectron2 trains with AMP: add --amp on a CUDA machine. Not trained here.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH (official mae_pretrain_vit_base.pth,
#   timm's vit_base_patch16_224.mae, or an mmpretrain MAE checkpoint)
# Inherits the MAE Mask R-CNN family file (MAE-ViT-B, simple feature pyramid, AdamW with
# layer decay 0.7) and states ViTDet's attention, data and schedule.
_base_ = ['mask-rcnn_mae-vit-b16_1x_coco.py']
image_size = (1024, 1024)
norm_cfg = dict(type='mmpretrain.LN2d', eps=1e-6, requires_grad=True)  # detectron2's "LN" on NCHW maps
model = dict(
    # test images pad to 1024x1024 here, after normalisation (zeros, as detectron2's square_pad), so that
    # img_shape stays the resized image's and boxes are clipped to it, not to the padding
    data_preprocessor=dict(pad_size_divisor=1024),
    backbone=dict(
        img_size=1024,
        window_size=14,
        global_attn_indexes=(2, 5, 8, 11),
        use_rel_pos=True,
        pos_antialias=False,  # detectron2 resamples the 14x14 MAE position grid with plain bicubic
    ),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

# large-scale jitter; the pad value is the mean pixel (BGR, as loaded)
pad = dict(type='Pad', size=image_size, pad_val=dict(img=(104, 116, 124)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    pad,
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(batch_size=4, num_workers=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# 100 epochs = 184375 iterations x 64 images / 118k images
max_iters = 184375
interval = 5000
# _delete_: iterations replace the sibling's epochs (its max_epochs does not apply)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    # epochs 88 and 96
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[163889, 177546], gamma=0.1)
]
# --cfg-options auto_scale_lr.enable=True scales lr to other total batch sizes
auto_scale_lr = dict(enable=False, base_batch_size=64)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=interval, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=True)  # one input size (1024x1024)
