"""DenseKit glue shared by the backbones and the tools: registries, safe
checkpoint loading and dataset checks."""
import importlib.util
import os.path as _osp
import sys

if importlib.util.find_spec('torch') is None or importlib.util.find_spec('mmengine') is None:
    # the usual cause: the system python instead of the project's environment
    _MSG = (f'DenseKit needs torch and mmengine, which {sys.executable} does not have: run it with the '
            "project's environment, .venv/bin/python (created by `make setup`), or activate it first "
            '(source .venv/bin/activate)')
    _main = _osp.abspath(getattr(sys.modules.get('__main__'), '__file__', None) or '')
    if _osp.dirname(_main).startswith(_osp.join(_osp.dirname(_osp.dirname(_osp.abspath(__file__))), 'tools')):
        sys.exit(f'{_osp.basename(_main)}: error: {_MSG}')  # a tool: one line, no traceback
    raise ImportError(_MSG)

from .checkpoint import allow_mmengine_checkpoints  # noqa: E402
from .whole_model import convert_on_load  # noqa: E402

# Every entry point imports densekit (directly, or through a config's
# ``densekit.`` scope), so --resume works on mmengine checkpoints everywhere.
allow_mmengine_checkpoints()
# ... and toolbox-zoo / release whole-model checkpoints load into our configs.
convert_on_load()
