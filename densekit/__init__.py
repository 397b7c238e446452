"""DenseKit: pyramid backbones for OpenMMLab segmentation, detection and
classification.

``densekit.backbones``, ``densekit.necks`` and ``densekit.heads`` hold the
models; the rest of the package is the glue they share with the tools
(registries, checkpoint loading, dataset checks, inference). Importing any of
it changes nothing in mmengine: :mod:`densekit.runtime` does, where named.
"""
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
