"""The README's "Bring your own backbone" walkthrough runs as written."""
import re
import types
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from contextlib import contextmanager

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def private_models():
    """densekit's MODELS without MyNet, restored afterwards: the walkthrough's
    MyNet registers only inside, and a checkout that followed the README (a
    real backbones/mynet.py registering MyNet) does not clash with it."""
    from densekit.registry import MODELS
    MODELS.import_from_location()
    saved = dict(MODELS._module_dict)
    MODELS._module_dict.pop('MyNet', None)
    try:
        yield MODELS
    finally:
        MODELS._module_dict.clear()
        MODELS._module_dict.update(saved)


def _block(starting: str) -> str:
    blocks = re.findall(r'```python\n(.*?)```', (ROOT / 'README.md').read_text(), re.S)
    return next(b for b in blocks if b.startswith(starting))


def test_bring_your_own_backbone(tmp_path):
    with private_models():
        _walkthrough(tmp_path)


def _walkthrough(tmp_path):
    # the backbone module, as if saved to backbones/mynet.py
    module = types.ModuleType('densekit.backbones.mynet')
    module.__package__ = 'densekit.backbones'
    exec(compile(_block('# backbones/mynet.py'), 'README:mynet.py', 'exec'), module.__dict__)
    MyNet = module.MyNet
    net = MyNet().eval()
    outs = net(torch.randn(1, 3, 97, 130))
    assert [o.shape[1] for o in outs] == [32, 64, 128, 256]
    assert net.out_strides == (4, 8, 16, 32)

    # the config, saved beside the shipped bases as the README says
    mine = tmp_path / 'configs' / 'mynet' / 'upernet_mynet_160k_ade20k.py'
    mine.parent.mkdir(parents=True)
    (tmp_path / 'configs' / '_base_').symlink_to(ROOT / 'configs' / '_base_')
    mine.write_text(_block('# configs/mynet/upernet_mynet_160k_ade20k.py'))
    cfg = Config.fromfile(str(mine))
    assert cfg.model.backbone == dict(type='densekit.MyNet', widths=(32, 64, 128, 256),
                                      init_cfg=dict(type='Pretrained', checkpoint='pretrained/mynet.pth'))
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmseg')
    from mmengine.registry import MODELS
    model = MODELS.build(cfg.model)
    assert isinstance(model.backbone, MyNet)
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, 150, 16, 16)


def test_walkthrough_runs_beside_a_registered_mynet(tmp_path):
    """As on a checkout that followed the README, where MyNet is registered
    already: the walkthrough passes and leaves the user's MyNet in place."""
    from densekit.registry import MODELS
    with private_models():
        @MODELS.register_module(name='MyNet')
        class UsersMyNet(torch.nn.Module):
            pass

        test_bring_your_own_backbone(tmp_path)  # no "already registered"
        assert MODELS.module_dict['MyNet'] is UsersMyNet
    assert 'MyNet' not in MODELS.module_dict
