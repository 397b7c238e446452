# Mask R-CNN + ConvMixer-1536/20, 1x on COCO 2017, ViTDet-style as
# mask-rcnn_vit-b16_coco.py: the last block's stride-7 map through the simple
# feature pyramid to 256-wide levels at strides 4-64 (resampled to
# ceil(H*7/s), 7 not being a power of two), no FPN. The Swin-T recipe
# (1333x800, AdamW 1e-4, weight decay 0.05, none on BatchNorms and biases).
# ConvMixer reports classification only; this config has not been trained here.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['mask-rcnn_vit-b16_coco.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='densekit.ConvMixer',
        arch='1536_20',
        out_indices=(19,),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/convmixer_1536_20_ks9_p7.pth.tar')),
    neck=dict(in_channels=1536, in_stride=7))
# BatchNorm after every convolution, 2 images per GPU: synchronised in distributed training
sync_bn = 'torch'
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, norm_decay_mult=0., bias_decay_mult=0.))
