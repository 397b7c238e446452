# MAE pretraining of ViT-B/16 (He et al., CVPR 2022) on the ImageNet-1k training
# images, labels unused: 75% of the patches masked at random, the encoder sees
# the visible 25%, an 8-block 512-wide decoder predicts the masked patches'
# pixels, normalised per patch (L2 on masked patches only). Recipe of the paper
# (Table 8, appendix A.1): AdamW lr 1.5e-4 x batch/256 at batch 4096, betas
# (0.9, 0.95), weight decay 0.05, 40 warm-up epochs then cosine decay; random
# resized crop (scale 0.2-1) and flip only. 400 epochs is one of the paper's
# schedule ablations (Fig. 7; 800 for its ablations, 1600 for its headline
# numbers), as mmpretrain's mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py.
# The encoder is our ViT (densekit.MAEPretrainViT): the pretraining checkpoint
# fine-tunes as it is through the MAE recipes (configs/mae/upernet_mae-vit-b16_100e_ade20k.py):
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/.../epoch_400.pth \
#                 model.backbone.init_cfg.prefix=backbone.
# or load_from=PATH model.backbone.init_cfg=None.
# The model (MAE, decoder, head, loss) is mmpretrain's. mmpretrain trains with
# fp16: add --amp.
# Any folder of images works, labels or not: data_root=DIR (images under
# DIR/train, searched recursively; train_dataloader.dataset.data_prefix='' for DIR itself).
_base_ = ['../_base_/default_runtime.py']
default_scope = 'mmpretrain'

img_size = 224
patch_size = 16
mask_ratio = 0.75
model = dict(
    type='MAE',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='densekit.MAEPretrainViT', arch='base', img_size=img_size, mask_ratio=mask_ratio),
    neck=dict(
        type='MAEPretrainDecoder',
        num_patches=(img_size // patch_size) ** 2,
        patch_size=patch_size,
        in_chans=3,
        embed_dim=768,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.),
    head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=patch_size,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    # the decoder's initialisation (the encoder's is MAEViT.reset_parameters, the same)
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])

data_root = 'data/imagenet'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')
]
# 4096 images per step as in the paper: 8 GPUs x 512
train_dataloader = dict(
    batch_size=512,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train', with_label=False,
                 pipeline=train_pipeline))

batch_size = 4096
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.5e-4 * batch_size / 256, betas=(0.9, 0.95), weight_decay=0.05),
    # no weight decay on norms, biases and tokens (mmpretrain's MAE)
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        flat_decay_mult=0.,
        custom_keys={'cls_token': dict(decay_mult=0.), 'mask_token': dict(decay_mult=0.)}))
warmup_epochs = 40
max_epochs = 400
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# the lr above is for 4096 images per step; with another total batch size set
# --cfg-options auto_scale_lr.enable=True and mmengine scales it linearly
auto_scale_lr = dict(base_batch_size=batch_size)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False))
# each process draws its own masks
randomness = dict(seed=0, diff_rank_seed=True)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends, name='visualizer')
