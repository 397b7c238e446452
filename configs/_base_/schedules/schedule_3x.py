# 36 epochs (mmdet's 3x), the Swin paper's detection schedule: the 1x
# optimiser (AdamW 1e-4, weight decay 0.05, 16 images per batch), lr x0.1
# after epochs 27 and 33.
_base_ = ['schedule_1x.py']
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1)
]
