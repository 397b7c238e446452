# Your own detection / instance segmentation data in COCO's format, trained
# with the Mask R-CNN + Swin-T 1x recipe (../swin/mask-rcnn_swin-t_fpn_1x_coco.py):
#   data/my-coco-dataset/images/{train,val}/*.jpg
#   data/my-coco-dataset/annotations/{train,val}.json   (COCO "instances" files)
# metainfo.classes are category names of the files, in the order the model
# numbers them; the files' other categories are left out. Copy this file and set
# data_root, the classes and their drawing colours. Files without masks: base
# it on ../swin/retinanet_swin-t_fpn_1x_coco.py and set model.bbox_head.num_classes.
_base_ = ['../swin/mask-rcnn_swin-t_fpn_1x_coco.py']
data_root = 'data/my-coco-dataset/'
metainfo = dict(classes=('circle', 'square'), palette=[(220, 20, 60), (0, 0, 142)])
model = dict(roi_head=dict(bbox_head=dict(num_classes=2), mask_head=dict(num_classes=2)))
train_dataloader = dict(dataset=dict(
    data_root=data_root, metainfo=metainfo, ann_file='annotations/train.json', data_prefix=dict(img='images/train/')))
val_dataloader = dict(dataset=dict(
    data_root=data_root, metainfo=metainfo, ann_file='annotations/val.json', data_prefix=dict(img='images/val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
