# The embedded MAE demo: a small ViT pretrained with MAE on the images of the
# synthetic ImageNet-layout data (labels unused), a few minutes on 2 CPU cores.
# It inherits the ViT-B/16 MAE recipe and changes only what a CPU demo needs:
# 64x64 images in 8x8 patches (64 patches, 16 visible), a narrow encoder and
# decoder, 16 epochs (800 steps of 32 images) at a higher learning rate, the
# loss logged every 25 steps. tools/demo.py --task mae then draws reconstructions
# of held-out images (tools/mae_reconstruct.py).
_base_ = ['../mae/mae_vit-b16_400e_imagenet.py']

data_root = 'data/synthetic_cls'
img_size = 64
patch_size = 8
embed_dims = 96
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=embed_dims, depth=4, num_heads=3, patch_size=patch_size),
                  img_size=img_size),
    neck=dict(num_patches=(img_size // patch_size) ** 2, patch_size=patch_size, embed_dim=embed_dims,
              decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4),
    head=dict(patch_size=patch_size))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')
]
train_dataloader = dict(
    batch_size=32,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))

max_epochs = 16
optim_wrapper = dict(optimizer=dict(lr=1.5e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, eta_min=1e-5, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=32)
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
