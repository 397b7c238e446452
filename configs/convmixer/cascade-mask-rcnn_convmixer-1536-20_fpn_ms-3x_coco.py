# Cascade Mask R-CNN + ConvMixer-1536/20, FPN, 3x with multi-scale + crop
# training on COCO 2017.
# The recipe of swin/cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py (the Swin paper's:
# 4conv1fc box heads with GIoU, multi-scale + crop training, 3x, AdamW 1e-4,
# weight decay 0.05, 16 images per batch), with the backbone of
# mask-rcnn_convmixer-1536-20_coco.py: the last block's stride-7 map through the
# simple feature pyramid (256 wide, resampled to strides 4-32), then the FPN;
# no weight decay on BatchNorms and biases. ConvMixer reports classification
# only; this config has not been trained here.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/cascade-mask-rcnn_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_3x.py'
]
model = dict(
    backbone=dict(
        type='densekit.ConvMixer',
        arch='1536_20',
        out_indices=(19,),
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/convmixer_1536_20_ks9_p7.pth.tar')),
    # an isotropic backbone: the adapter makes the pyramid the FPN reads
    neck=[
        dict(type='densekit.SimpleFeaturePyramid', in_channels=1536, out_channels=256, in_stride=7,
             out_strides=(4, 8, 16, 32), mode='simple'),
        dict(type='FPN', in_channels=[256, 256, 256, 256], out_channels=256, num_outs=5),
    ])
# BatchNorm after every convolution, 2 images per GPU: synchronised in distributed training
sync_bn = 'torch'
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
env_cfg = dict(cudnn_benchmark=False)  # images of many sizes
log_processor = dict(by_epoch=True)
