# LeViT-128S (Graham et al. 2021, Table 3: 7.8M params). The paper's recipe:
# DeiT's augmentation and AdamW (lr 5e-4 x batch/512, weight decay 0.025), 5 warm-up
# epochs, cosine, 1000 epochs, and DeiT's hard distillation from a RegNetY-16GF
# teacher (timm regnety_160, DeiT's weights): model.teacher in _base_/models/levit_cls.py.
_base_ = ['_base_/models/levit_cls.py', '_base_/datasets/imagenet.py', '_base_/schedules/imagenet_300e.py',
          '_base_/default_runtime.py']

model = dict(backbone=dict(arch='128s'), head=dict(in_channels=384))
optim_wrapper = dict(optimizer=dict(weight_decay=0.025))
max_epochs = 1000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs)
