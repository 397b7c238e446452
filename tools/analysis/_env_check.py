"""tools/_env_check.py for the tools in this folder (a tool's import path is
its own folder): one line naming the interpreter to use when DenseKit is
missing. Not a command itself."""
import os.path as osp
import runpy
import sys

if __name__ == '__main__':
    sys.exit('tools/analysis/_env_check.py: not a command: the tools import it to name the interpreter they need')
runpy.run_path(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '_env_check.py'))
