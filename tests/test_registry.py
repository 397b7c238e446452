"""One registration mechanism, reachable from every toolbox's scope."""
import pytest
from mmengine.registry import init_default_scope

from densekit.backbones import SwinTransformer


@pytest.mark.parametrize('scope,registry', [
    ('mmseg', 'mmseg.registry'), ('mmdet', 'mmdet.registry'), ('mmpretrain', 'mmpretrain.registry')])
def test_densekit_models_build_from_each_toolbox_scope(scope, registry):
    import importlib
    MODELS = importlib.import_module(registry).MODELS
    init_default_scope(scope)
    model = MODELS.build(dict(type='densekit.SwinTransformer', arch='tiny', out_indices=(3,)))
    assert type(model) is SwinTransformer
    # the toolbox's own SwinTransformer is untouched by ours
    assert MODELS.get('SwinTransformer') is not SwinTransformer
    assert MODELS.get('SwinTransformer').__module__.startswith(scope)


def test_unknown_type_names_the_type_and_registry():
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    with pytest.raises(KeyError, match='SwinTransfomer is not in the'):
        MODELS.build(dict(type='densekit.SwinTransfomer'))


def test_misspelt_argument_names_class_and_argument():
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    with pytest.raises(TypeError, match="SwinTransformer.*unexpected keyword argument 'drop_path'"):
        MODELS.build(dict(type='densekit.SwinTransformer', drop_path=0.2))
