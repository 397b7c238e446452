"""Imported first by every tool: run with an interpreter that lacks DenseKit
or its libraries (the system python instead of the project's environment), a
tool says in one line which interpreter to use, instead of a
ModuleNotFoundError traceback. Standard library only: it runs before anything
else is imported. Not a command itself.
"""
import importlib.util
import os.path as osp
import sys

# what every tool imports (numpy and OpenCV come with them)
REQUIRED = ('densekit', 'torch', 'mmengine')
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def missing() -> list[str]:
    """The packages of :data:`REQUIRED` this interpreter cannot import."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def _short(path: str) -> str:
    """``path`` relative to the current directory when it is below it."""
    rel = osp.relpath(osp.abspath(path))
    return osp.abspath(path) if rel.startswith('..') else rel


def advice(tool: str, absent: list[str]) -> str:
    """One line: what ``sys.executable`` lacks, and the three ways to run ``tool`` (a path)."""
    venv = osp.join(REPO, '.venv', 'bin')
    return (f'{osp.basename(tool)}: error: {sys.executable} has no {", ".join(absent)}: run '
            f'`{_short(osp.join(venv, "python"))} {_short(tool)} ...` (the project\'s environment, '
            f'made by `make setup`), or `source {_short(osp.join(venv, "activate"))}` first, or '
            f'`pip install -e {_short(REPO)}` into this environment')


if __name__ == '__main__':
    sys.exit(f'{_short(__file__)}: not a command: the tools import it to name the interpreter they need')
if missing():
    # the tool's own path (runpy, as tools/analysis/ uses it, changes sys.argv[0])
    sys.exit(advice(getattr(sys.modules['__main__'], '__file__', None) or sys.argv[0], missing()))
