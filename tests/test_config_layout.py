"""The layout of configs/ (configs/README.md): names by one grammar, recipes
that compose from backbone-neutral bases, and no family inheriting another's.

Fast: the files are read as Python syntax (``_base_`` lists, ``_delete_``
keys) and backbones are built on the meta device where they can be.
"""
import ast
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from densekit.config import task_of
from densekit.zoo import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs'
BASES = CONFIGS / '_base_'
README_EXAMPLE = CONFIGS / 'upernet_swin_ade20k.py'  # the README's Swin-T example, kept at the top
TASK_CONFIGS = sorted(p for family in FAMILIES for p in (CONFIGS / family).glob('*.py'))
DEMOS = sorted((CONFIGS / 'demo').glob('*.py'))

# <model>_<backbone>[_<neck>]_<schedule>_<dataset>: the fields' values
MODEL_TASKS = {'upernet': 'segmentation', 'fpn': 'segmentation', 'mask-rcnn': 'detection',
               'cascade-mask-rcnn': 'detection', 'retinanet': 'detection', 'mae': 'pretraining'}
NECKS = ('fpn',)  # detectors only; omitted where the backbone's simple feature pyramid replaces the FPN
SCHEDULE = re.compile(r'\d+k|\d+e|\d+x|ms-\d+x|lsj-\d+e')
DATASET_TASKS = {'ade20k': ('segmentation',), 'coco': ('detection',), 'imagenet': ('classification', 'pretraining')}
FIELD = re.compile(r'[a-z0-9]+(-[a-z0-9]+)*')
# the backbone field's first word for each family folder (ViTDet: a ViT, MAE-pretrained or not;
# mae_vit-b16_*: MAE pretraining of a plain ViT)
BACKBONE_PREFIXES = {'swin': ('swin',), 'vit': ('vit', 'vitdet'), 'mae': ('mae', 'vitdet', 'vit'), 'vitae': ('vitae',),
                     'levit': ('levit',), 'coatnet': ('coatnet',), 'convmixer': ('convmixer',)}
# the backbone-neutral model bases and the keys where a family file states the widths it feeds
MODEL_BASES = {'upernet.py': ('decode_head.in_channels', 'auxiliary_head.in_channels'),
               'fpn.py': ('neck.in_channels',), 'mask-rcnn_fpn.py': ('neck.in_channels',),
               'cascade-mask-rcnn_fpn.py': ('neck.in_channels',), 'retinanet_fpn.py': ('neck.in_channels',),
               'classifier.py': ('head.in_channels',)}
# MAE pretraining states its whole model (encoder, decoder, pixel loss) beside the bases it
# inherits; tests/backbones/test_mae.py checks its wiring
PRETRAINING = 'pretraining'

# Every `_delete_` in a shipped config: (file, key) -> why a component is replaced on purpose.
DELETE_ALLOWED = {
    ('vit/upernet_vit-b16-mln_160k_ade20k.py', 'model.neck'):
        "mmseg's MultiLevelNeck replaces the simple feature pyramid (mmseg's model, for its checkpoints)",
    ('vit/mask-rcnn_vit-b16_1x_coco.py', 'model.neck'): 'the ViTDet simple feature pyramid replaces the FPN',
    ('mae/mask-rcnn_mae-vit-b16_1x_coco.py', 'model.neck'): 'the ViTDet simple feature pyramid replaces the FPN',
    ('convmixer/mask-rcnn_convmixer-1536-20_1x_coco.py', 'model.neck'):
        'the ViTDet simple feature pyramid replaces the FPN',
    ('demo/upernet_swin-demo_synthetic-ade.py', 'model.backbone.arch'):
        'a custom size (dict) replaces the arch name (str), which mmengine cannot merge',
    ('demo/mask-rcnn_swin-demo_synthetic-coco.py', 'model.backbone.arch'):
        'a custom size (dict) replaces the arch name (str), which mmengine cannot merge',
    ('demo/convmixer-demo_synthetic-cls.py', 'model.backbone.arch'):
        'a custom size (dict) replaces the arch name (str), which mmengine cannot merge',
    ('demo/convmixer-demo_synthetic-cls.py', 'model.train_cfg'): 'mixup/cutmix off for the 8-class demo',
    ('demo/mae_vit-demo_synthetic-cls.py', 'model.backbone.arch'):
        'a custom size (dict) replaces the arch name (str), which mmengine cannot merge',
    ('mae/mask-rcnn_vitdet-b_lsj-100e_coco.py', 'train_cfg'):
        "ViTDet's iteration loop replaces the sibling's epoch loop (its max_epochs does not apply)",
}


def parse_name(path: Path) -> dict:
    """The grammar's fields of ``configs/<family>/<name>.py``.

    Raises:
        AssertionError: naming the file and the field that breaks the grammar.
    """
    fields = path.stem.split('_')
    where = f'{path.relative_to(CONFIGS)}'
    assert 3 <= len(fields) <= 5, f'{where}: expected <model>_<backbone>[_<neck>]_<schedule>_<dataset>'
    model = fields.pop(0) if len(fields) > 3 else None
    backbone, *neck, schedule, dataset = fields
    assert model is None or model in MODEL_TASKS, f'{where}: model {model!r} is not one of {sorted(MODEL_TASKS)}'
    assert FIELD.fullmatch(backbone), f'{where}: backbone {backbone!r}: lower case, words joined by -'
    if neck:
        assert MODEL_TASKS.get(model) == 'detection' and neck[0] in NECKS, f'{where}: neck {neck[0]!r}'
    assert SCHEDULE.fullmatch(schedule), f'{where}: schedule {schedule!r} (160k, 1x, ms-3x, lsj-100e, 300e, ...)'
    assert dataset in DATASET_TASKS, f'{where}: dataset {dataset!r} is not one of {sorted(DATASET_TASKS)}'
    task = MODEL_TASKS[model] if model else 'classification'
    assert task in DATASET_TASKS[dataset], f'{where}: a {task} model on {dataset}'
    return dict(family=path.parent.name, model=model, backbone=backbone, neck=neck[0] if neck else None,
                schedule=schedule, dataset=dataset, task=task)


def bases_of(path: Path) -> list[Path]:
    """The files ``path``'s ``_base_`` names, resolved against its folder."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '_base_' for t in node.targets):
            value = ast.literal_eval(node.value)
            return [(path.parent / b).resolve() for b in ([value] if isinstance(value, str) else value)]
    return []


def chain(path: Path) -> list[Path]:
    """Every file ``path`` inherits from, depth first."""
    out = []
    for base in bases_of(path):
        out += [base] + chain(base)
    return out


def delete_keys(path: Path) -> list[str]:
    """The key paths (``model.neck``) that set ``_delete_`` in ``path`` itself."""
    found = []

    def visit(node, key):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'dict':
            items = [(kw.arg, kw.value) for kw in node.keywords]
        elif isinstance(node, ast.Dict):
            items = [(getattr(k, 'value', None), v) for k, v in zip(node.keys, node.values)]
        else:
            for child in ast.iter_child_nodes(node):
                visit(child, key)
            return
        for name, value in items:
            if name == '_delete_':
                found.append(key)
            else:
                visit(value, f'{key}.{name}')

    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    visit(node.value, target.id)
    return found


def stated_keys(path: Path) -> set[str]:
    """The ``model.*`` key paths ``path`` itself assigns (not its bases)."""
    stated = set()

    def visit(node, key):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'dict':
            for kw in node.keywords:
                stated.add(f'{key}.{kw.arg}')
                visit(kw.value, f'{key}.{kw.arg}')
        elif isinstance(node, ast.List):  # a neck list (adapter, FPN): its modules' keys
            for element in node.elts:
                visit(element, key)

    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'model' for t in node.targets):
            visit(node.value, 'model')
    return stated


def rel(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


# ----------------------------------------------------------------------------- names and folders

def test_configs_live_in_family_folders():
    """configs/ holds the README's example, the zoo table, _base_/, demo/, examples/ and one folder per family."""
    top = {p.name for p in CONFIGS.iterdir() if not p.name.startswith('.')}
    assert top == {README_EXAMPLE.name, 'README.md', 'model_zoo.md', '_base_', 'demo', 'examples', *FAMILIES}
    assert bases_of(README_EXAMPLE) == [(CONFIGS / 'swin' / 'upernet_swin-t_160k_ade20k.py').resolve()]
    for family in FAMILIES:
        assert (CONFIGS / family / 'metafile.yml').is_file(), family


@pytest.mark.parametrize('path', TASK_CONFIGS, ids=rel)
def test_name_parses_and_matches_folder_and_task(path):
    name = parse_name(path)
    assert name['backbone'].split('-')[0] in BACKBONE_PREFIXES[name['family']], \
        f"{rel(path)}: backbone {name['backbone']!r} is not of family {name['family']!r}"
    if name['task'] != 'pretraining':  # task_of knows the three toolboxes' tasks
        assert task_of(Config.fromfile(str(path))) == name['task'], rel(path)


def test_the_grammar_refuses_what_it_should():
    for bad in ('swin/upernet_swin_ade20k.py', 'swin/upernet_swin-t_fpn_160k_ade20k.py',
                'swin/mask-rcnn_swin-t_fpn_12e_ade20k.py', 'swin/UPerNet_swin-t_160k_ade20k.py',
                'swin/segformer_swin-t_160k_ade20k.py', 'swin/swin-t_300e_coco.py'):
        with pytest.raises(AssertionError):
            parse_name(CONFIGS / bad)
    assert parse_name(CONFIGS / 'swin/cascade-mask-rcnn_swin-t_fpn_ms-3x_coco.py')['neck'] == 'fpn'
    assert parse_name(CONFIGS / 'vit/mask-rcnn_vitdet-b_lsj-100e_coco.py')['backbone'] == 'vitdet-b'


# ----------------------------------------------------------------------------- composition

@pytest.mark.parametrize('path', TASK_CONFIGS + DEMOS, ids=rel)
def test_inheritance_stays_in_the_family(path):
    """A config inherits the bases and its own family's files only (a demo: one
    family's): a family file names the bases (one model base among them), a
    variant one sibling."""
    demo = path.parent.name == 'demo'
    families = {base.parent for base in chain(path) if BASES not in base.parents}
    for base in chain(path):
        assert base.is_file(), f'{rel(path)}: _base_ {base} does not exist'
    if demo:
        assert len(families) <= 1 and families <= {CONFIGS / f for f in FAMILIES}, \
            f'{rel(path)} inherits from {sorted(map(rel, families))}: one family folder at most'
    else:
        assert families <= {path.parent}, \
            f"{rel(path)} inherits from {sorted(map(rel, families - {path.parent}))}: another family's recipe"
    direct = bases_of(path)
    models = [b for b in direct if b.parent == BASES / 'models']
    if not demo and parse_name(path)['task'] == PRETRAINING:
        assert all(BASES in b.parents for b in direct), f'{rel(path)}: inherits the bases only'
    elif not demo:
        assert len(models) == 1 and all(BASES in b.parents for b in direct) or \
            len(direct) == 1 and direct[0].parent == path.parent, \
            f'{rel(path)}: a family file inherits the bases, a variant one sibling; got {direct}'


def test_one_family_file_per_family_and_task():
    """Per family and model (classification: none), one file names a model base
    and states the backbone; every other config of that task inherits within the family."""
    family_files = {}
    task_configs = [p for p in TASK_CONFIGS if parse_name(p)['task'] != PRETRAINING]
    for path in task_configs:
        if any(b.parent == BASES / 'models' for b in bases_of(path)):
            key = (path.parent.name, parse_name(path)['model'])
            assert key not in family_files, f'{rel(path)} and {rel(family_files[key])}: two family files for {key}'
            family_files[key] = path
    for path in task_configs:
        key = (path.parent.name, parse_name(path)['model'])
        assert key in family_files and family_files[key] in [path, *chain(path)], \
            f'{rel(path)} does not inherit its family file for {key}'
    assert {f for f, _ in family_files} == set(FAMILIES)


@pytest.mark.parametrize('base', sorted(MODEL_BASES))
def test_model_bases_are_backbone_neutral(base):
    """No backbone, and no width a backbone feeds: the family file states them
    (an empty backbone dict: a dict cannot merge into a base's None without _delete_)."""
    cfg = Config.fromfile(str(BASES / 'models' / base))
    assert cfg.model.backbone == {}, base
    for key in MODEL_BASES[base]:
        node = cfg.model
        for part in key.split('.'):
            node = node[part]
        assert node is None, f'{base}: model.{key}={node!r}; leave it to the family file'
    # no family's no-decay keys in a shared schedule; DeiT's ImageNet rules (norms, biases,
    # tokens, position tables) name what every backbone has, so imagenet_300e.py keeps them
    for schedule in (BASES / 'schedules').glob('*.py'):
        assert 'paramwise_cfg' not in Config.fromfile(str(schedule)).optim_wrapper or \
            schedule.name == 'imagenet_300e.py', schedule.name


def test_delete_only_where_a_component_is_replaced():
    found = {(rel(p), key) for p in CONFIGS.rglob('*.py') for key in delete_keys(p)}
    assert found == set(DELETE_ALLOWED), f'unlisted: {found - set(DELETE_ALLOWED)}; ' \
                                         f'stale: {set(DELETE_ALLOWED) - found}'


def test_delete_keys_are_found():
    """The scanner itself: nested dict() calls and dict literals."""
    probe = ROOT / 'configs' / 'demo' / 'convmixer-demo_synthetic-cls.py'
    assert sorted(delete_keys(probe)) == ['model.backbone.arch', 'model.train_cfg']


# ----------------------------------------------------------------------------- widths

def _build(cfg_module: dict):
    """Build on the meta device; Swin and ViTAE fill index buffers with computed
    values at construction, which meta tensors cannot hold: those on the CPU."""
    try:
        with torch.device('meta'):
            return MODELS.build(cfg_module)
    except NotImplementedError:
        return MODELS.build(cfg_module)


def _family_file(path: Path) -> Path:
    return next(p for p in [path, *chain(path)] if any(b.parent == BASES / 'models' for b in bases_of(p)))


@pytest.mark.parametrize('path', [p for p in TASK_CONFIGS if parse_name(p)['task'] != PRETRAINING], ids=rel)
def test_family_file_states_the_widths_the_backbone_feeds(path):
    """The widths keys are written in the family file (not left to a base) and
    equal the channels the built backbone (and adapter neck) returns."""
    family_file = _family_file(path)
    model_base = next(b.name for b in bases_of(family_file) if b.parent == BASES / 'models')
    assert {'model.backbone'} | {f'model.{k}' for k in MODEL_BASES[model_base]} <= stated_keys(family_file), \
        f'{rel(family_file)} must state model.backbone and {MODEL_BASES[model_base]}'
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    backbone_cfg = dict(cfg.model.backbone, init_cfg=None)
    backbone = _build(backbone_cfg)
    channels = list(backbone.out_channels)
    model = cfg.model
    task = parse_name(path)['task']
    if task == 'classification':
        assert model.head.in_channels == channels[-1], rel(path)
        return
    neck = model.get('neck')
    if isinstance(neck, list):  # an adapter, then the FPN on its pyramid
        adapter, neck = neck
        assert adapter.in_channels in (channels[-1], channels), rel(path)
        channels = list(_build(dict(adapter)).out_channels)
    if neck is not None and neck.type == 'FPN':  # the FPN reads every returned level
        assert list(neck.in_channels) == channels, rel(path)
        return
    if neck is not None:  # an adapter: one map in (the last), a pyramid out
        assert neck.in_channels in (channels[-1], channels), rel(path)
        built = _build(dict(neck))
        channels = list(built.out_channels) if not isinstance(built.out_channels, int) else \
            [built.out_channels] * len(neck.scales)
    if task == 'detection':
        assert set(channels) == {model.rpn_head.in_channels}, rel(path)
        return
    assert list(model.decode_head.in_channels) == channels, rel(path)
    assert model.auxiliary_head.in_channels == channels[model.auxiliary_head.in_index], rel(path)


def test_derive_your_own_example_resolves(tmp_path):
    """configs/README.md's "Derive your own" block, as a user would save it."""
    text = (CONFIGS / 'README.md').read_text().split('## Derive your own', 1)[1]
    block = text.split('```python\n', 1)[1].split('```', 1)[0]
    mine = tmp_path / 'my_configs' / 'upernet_swin-t_160k_my-data.py'
    mine.parent.mkdir()
    mine.write_text(block.replace("'../configs/", f"'{CONFIGS}/"))
    cfg = Config.fromfile(str(mine))
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == 12
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[name].dataset.data_root == 'data/my_data'
        assert cfg[name].dataset.type == 'densekit.ADE20KDataset'  # the rest comes from the family file
    assert cfg.model.backbone.type == 'densekit.SwinTransformer'
