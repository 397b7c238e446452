"""DenseKit glue shared by the backbones and the tools: registries, safe
checkpoint loading, dataset checks and the synthetic demo data."""
from .checkpoint import allow_mmengine_checkpoints
from .whole_model import convert_on_load

# Every entry point imports densekit (directly, or through a config's
# ``densekit.`` scope), so --resume works on mmengine checkpoints everywhere.
allow_mmengine_checkpoints()
# ... and toolbox-zoo / release whole-model checkpoints load into our configs.
convert_on_load()
