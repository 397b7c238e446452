# UPerNet + ViT-B/16 as mmseg's vit_vit-b16-ln_mln_upernet_8xb2-160k_ade20k-512x512:
# upernet_vit-b16-mln_160k_ade20k.py with the final LayerNorm on the last block's map
# (mmseg final_norm=True) and stochastic depth 0.1.
_base_ = ['upernet_vit-b16-mln_160k_ade20k.py']
model = dict(backbone=dict(drop_path_rate=0.1, out_norm='last'))
