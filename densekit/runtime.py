"""DenseKit's changes to mmengine's checkpoint handling, switched on by name.

Importing this module switches them on (:func:`enable`, idempotent):

- weights-only loading of mmengine's training checkpoints (``--resume``,
  ``load_from``): the non-tensor types they hold are allow-listed
  (:func:`densekit.checkpoint.allow_mmengine_checkpoints`);
- atomic checkpoint saves (temporary file, fsync, rename), so a run killed
  while saving never leaves a truncated checkpoint;
- toolbox-zoo and release whole-model checkpoints converted into a DenseKit
  model's layout as they load (:func:`densekit.whole_model.convert_on_load`).

Who switches them on: DenseKit's tools (``tools/*.py``), and every shipped
config through ``custom_imports`` (so the toolboxes' own ``tools/train.py``
and their ``init_model`` / ``init_detector`` APIs get them too). A program
that only imports ``densekit.backbones`` keeps mmengine as it was.
"""
from .checkpoint import allow_mmengine_checkpoints
from .whole_model import convert_on_load

__all__ = ['enable']


def enable() -> None:
    """Switch on the changes listed in the module docstring (idempotent)."""
    allow_mmengine_checkpoints()
    convert_on_load()


enable()
