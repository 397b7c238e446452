# LeViT-128S (Graham et al. 2021, Table 3: 7.8M params). The paper's recipe:
# DeiT's augmentation and AdamW (lr 5e-4 x batch/512, weight decay 0.025), 5 warm-up
# epochs, cosine, 1000 epochs, and DeiT's hard distillation from a RegNetY-16GF
# teacher (timm regnety_160, DeiT's weights). Classifier: the last stage (level 4,
# stride 64), mean token, two BatchNorm+linear heads averaged in eval (timm's/official
# distilled LeViT). The teacher (densekit/distill.py) is loaded from a local file on
# the first training step (test/inference never need it); without the file:
# --cfg-options model.teacher=None (both heads learn the label).
# The LeViT family file for classification.
_base_ = ['../_base_/models/classifier.py', '../_base_/datasets/imagenet.py',
          '../_base_/schedules/imagenet_300e.py', '../_base_/default_runtime.py']

model = dict(
    type='densekit.DistilledImageClassifier',
    backbone=dict(type='densekit.LeViT', arch='128s', out_indices=(4,)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='densekit.LeViTDistilledClsHead', in_channels=384, distillation=True),
    teacher=dict(type='regnety_160', checkpoint='checkpoints/regnety_160-a5fe301d.pth',
                 url='https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth'))
optim_wrapper = dict(optimizer=dict(weight_decay=0.025))
max_epochs = 1000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs)
