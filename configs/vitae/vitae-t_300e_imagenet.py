# ViTAE-T (Xu et al. 2021, Table 1: 4.8M params), trained with DeiT's recipe as in
# the paper (stochastic depth 0.1). Classifier: the stride-16 tokens (level 2),
# their mean, one linear layer: the official ViTAE_ViT_basic classifier
# (``forward_features`` ends in ``torch.mean(x, 1)``, no norm; ViTAEv2 the same),
# whose release files load as they are (densekit/whole_model.py: ``head`` ->
# ``head.fc``). The ViTAE family file for classification.
_base_ = ['../_base_/models/classifier.py', '../_base_/datasets/imagenet.py',
          '../_base_/schedules/imagenet_300e.py', '../_base_/default_runtime.py']

model = dict(
    backbone=dict(type='densekit.ViTAE', arch='tiny', drop_path_rate=0.1, out_indices=(2,)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(in_channels=256))
