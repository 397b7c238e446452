# Semantic FPN + ViT-B/16 on ADE20K, 512x512, 40k iterations. The backbone and
# pyramid as in upernet_vit-b16_ade20k.py: blocks 2/5/8/11 through the ViTDet
# simple feature pyramid (768 wide, strides 4-32), then the recipe's FPN.
# The Semantic FPN recipe of PVT and PoolFormer (mmseg's poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py):
# 512x512 crops, AdamW 2e-4, weight decay 1e-4, poly decay over 40k iterations,
# 32 images per batch (8 GPUs x 4); see _base_/schedules/schedule_40k.py.
# Not trained here: there is no reference mIoU for it.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/fpn.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='densekit.VisionTransformer',
        arch='base',
        img_size=512,  # the 224 checkpoint's 14x14 position grid is resampled to 32x32 on load
        drop_path_rate=0.0,
        out_indices=(2, 5, 8, 11),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/vit_base_patch16_224.pth')),
    # an isotropic backbone: the adapter makes the pyramid the FPN reads
    neck=[
        dict(type='densekit.SimpleFeaturePyramid', in_channels=768, out_channels=768, in_stride=16,
             out_strides=(4, 8, 16, 32), mode='simple'),
        dict(type='FPN', in_channels=[768, 768, 768, 768], out_channels=256, num_outs=4),
    ])
train_dataloader = dict(batch_size=4)
