# Mask R-CNN + ConvMixer-1536/20, 1x on COCO 2017, ViTDet-style as
# vit/mask-rcnn_vit-b16_1x_coco.py: the last block's stride-7 map through the
# simple feature pyramid to 256-wide levels at strides 4-64 (resampled to
# ceil(H*7/s), 7 not being a power of two), no FPN. The Swin-T recipe
# (1333x800, AdamW 1e-4, weight decay 0.05, none on BatchNorms and biases).
# ConvMixer reports classification only; this config has not been trained here.
# The ConvMixer family file for Mask R-CNN.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_1x.py'
]
model = dict(
    backbone=dict(
        type='densekit.ConvMixer',
        arch='1536_20',
        out_indices=(19,),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/convmixer_1536_20_ks9_p7.pth.tar')),
    # _delete_: the simple feature pyramid replaces the base's FPN (none of its keys apply)
    neck=dict(
        _delete_=True,
        type='densekit.SimpleFeaturePyramid',
        in_channels=1536,
        out_channels=256,
        in_stride=7,
        out_strides=(4, 8, 16, 32, 64),
        mode='simple'))
# BatchNorm after every convolution, 2 images per GPU: synchronised in distributed training
sync_bn = 'torch'
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
# images of many sizes: cuDNN's per-shape benchmarking would cost more than it saves
env_cfg = dict(cudnn_benchmark=False)
log_processor = dict(by_epoch=True)
