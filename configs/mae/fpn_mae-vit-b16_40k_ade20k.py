# Semantic FPN + MAE-pretrained ViT-B/16 on ADE20K, 512x512, 40k iterations.
# The backbone and pyramid as in upernet_mae-vit-b16_ade20k.py: blocks 3/5/7/11
# through BEiT's deconv/identity/max-pool pyramid (768 wide), then the
# recipe's FPN; MAE's layer-wise lr decay 0.65 on top of the recipe's optimiser,
# as MAE weights are fine-tuned.
# The Semantic FPN recipe of PVT and PoolFormer (mmseg's poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py):
# 512x512 crops, AdamW 2e-4, weight decay 1e-4, poly decay over 40k iterations,
# 32 images per batch (8 GPUs x 4); see _base_/schedules/schedule_40k.py.
# Not trained here: there is no reference mIoU for it.
# Weights: the official mae_pretrain_vit_base.pth or timm's vit_base_patch16_224.mae:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/fpn.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='densekit.MAEViT',
        arch='base',
        img_size=512,
        drop_path_rate=0.1,
        out_indices=(3, 5, 7, 11),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/mae_pretrain_vit_base.pth')),
    # an isotropic backbone: the adapter makes the pyramid the FPN reads
    neck=[
        dict(type='densekit.SimpleFeaturePyramid', in_channels=768, out_channels=None, in_stride=16,
             out_strides=(4, 8, 16, 32), mode='beit', norm_cfg=dict(type='SyncBN', requires_grad=True)),
        dict(type='FPN', in_channels=[768, 768, 768, 768], out_channels=256, num_outs=4),
    ])
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay_rate=0.65))
