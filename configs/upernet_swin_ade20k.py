# UPerNet + Swin-T on ADE20K, 512x512, 160k iterations: the README's example,
# kept at the top; the recipe is swin/upernet_swin-t_160k_ade20k.py.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['swin/upernet_swin-t_160k_ade20k.py']
