# ConvMixer-1536/20 (Trockman & Kolter 2022: 51.6M params). The paper trains
# 150 epochs with timm: AdamW, one-cycle lr peaking at 0.01, weight decay 2e-5,
# RandAugment m9, mixup 0.5, cutmix 0.5, random erasing 0.25, gradient clipping 1.
# Classifier: the last block, global average pool, linear: timm's convmixer_1536_20.
# The ConvMixer family file for classification.
_base_ = ['../_base_/models/classifier.py', '../_base_/datasets/imagenet.py',
          '../_base_/schedules/imagenet_300e.py', '../_base_/default_runtime.py']

model = dict(
    backbone=dict(type='densekit.ConvMixer', arch='1536_20'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(in_channels=1536),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.5), dict(type='CutMix', alpha=0.5)]))
optim_wrapper = dict(optimizer=dict(lr=0.01, weight_decay=2e-5), clip_grad=dict(max_norm=1.0))
max_epochs = 150
param_scheduler = [dict(type='OneCycleLR', eta_max=0.01, by_epoch=True, begin=0, end=max_epochs,
                        convert_to_iter_based=True)]
train_cfg = dict(max_epochs=max_epochs)
