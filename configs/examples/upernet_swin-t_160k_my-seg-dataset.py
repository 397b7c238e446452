# Your own semantic segmentation data, trained with the UPerNet + Swin-T
# ADE20K recipe (../upernet_swin_ade20k.py): a folder of images and PNG label
# maps of the same name, whose pixel values are class indices 0..N-1 (255 = not
# labelled, ignored by the loss and the metric):
#   data/my-seg-dataset/images/{train,val}/NAME.jpg
#   data/my-seg-dataset/masks/{train,val}/NAME.png
# Copy this file and set data_root, the class names and their drawing colours.
_base_ = ['../upernet_swin_ade20k.py']
data_root = 'data/my-seg-dataset'
metainfo = dict(classes=('background', 'building', 'road'),
                palette=[[0, 0, 0], [180, 120, 120], [128, 64, 128]])
model = dict(decode_head=dict(num_classes=3), auxiliary_head=dict(num_classes=3))

# ADE20K's files store "unlabelled" as 0 and its pipelines shift every label
# down by one (reduce_zero_label=True); here 0 is a class, so the pipelines
# load the masks as they are.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True)
         for r in [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]])
]
train_dataloader = dict(dataset=dict(
    type='densekit.BaseSegDataset', data_root=data_root, metainfo=metainfo,
    img_suffix='.jpg', seg_map_suffix='.png',
    data_prefix=dict(img_path='images/train', seg_map_path='masks/train'), pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(
    type='densekit.BaseSegDataset', data_root=data_root, metainfo=metainfo,
    img_suffix='.jpg', seg_map_suffix='.png',
    data_prefix=dict(img_path='images/val', seg_map_path='masks/val'), pipeline=test_pipeline))
test_dataloader = val_dataloader
