"""DenseKit's registries: children of mmengine's root registries, scope ``densekit``.

One mechanism serves every toolbox. mmseg, mmdet and mmpretrain registries are
all children of mmengine's roots, so from any of their scopes a config names
our modules as ``type='densekit.SwinTransformer'``: mmengine imports
``densekit.registry`` on seeing the scope, finds these registries in the tree,
and ``locations`` imports the modules that register into them. The scope
prefix also keeps our names apart from the toolboxes' own (mmseg, mmdet and
mmpretrain each register a ``SwinTransformer``).
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

SCOPE = 'densekit'

MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE,
                  locations=['densekit.backbones', 'densekit.necks', 'densekit.heads', 'densekit.distill'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope=SCOPE,
                    locations=['densekit.datasets', 'densekit.cls_datasets', 'densekit.det_datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope=SCOPE,
                      locations=['densekit.datasets', 'densekit.cls_datasets'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope=SCOPE, locations=['densekit.hooks'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope=SCOPE,
                          locations=['densekit.distributed', 'densekit.fsdp'])
