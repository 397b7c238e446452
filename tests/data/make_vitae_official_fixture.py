"""Record a small official ViTAE classifier, an input and its logits as
``tests/data/vitae_official_tiny.npz`` (read by tests/backbones/test_vitae.py).

The official code is not part of DenseKit and is not installable: run this once
against a checkout of it, so that CI keeps the parity without it.

    git clone https://github.com/ViTAE-Transformer/ViTAE-Transformer
    python tests/data/make_vitae_official_fixture.py ViTAE-Transformer/Image-Classification

Recorded with the repository at commit aebf1d7, timm 1.0, torch 2.14, numpy 2.
The model is the official ``ViTAE_ViT_basic`` with the structure of ViTAE-T
(``ViTAE_basic_Tiny``: RCs 'performer', 'performer', 'performer_less' at
downsampling 4, 2, 2, normal cells after RC3 only) at reduced widths, 10 classes
and 32x32 inputs; its initialisation is perturbed (every floating tensor plus
Gaussian noise, BatchNorm variances kept positive) so that no weight is at a
value that would hide a misplaced one, then rounded to float16 so that the
archive stays small. It holds the official state dict (``weight/<key>``) and
the input in float16 (exact: the model ran on these values in float32), and
the official last tokens and logits in float32.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).with_name('vitae_official_tiny.npz')
# ViTAE-T's structure (official ViTAE.py: ViTAE_basic_Tiny) at reduced widths
ARCH = dict(RC_tokens_type=['performer', 'performer', 'performer_less'],
            NC_tokens_type=['transformer', 'transformer', 'transformer'], stages=3,
            embed_dims=[8, 8, 16], token_dims=[8, 16, 32], downsample_ratios=[4, 2, 2],
            NC_depth=[0, 0, 2], NC_heads=[1, 1, 2], RC_heads=[1, 1, 1], mlp_ratio=2.,
            NC_group=[1, 1, 8], RC_group=[1, 1, 1], num_classes=10, img_size=32)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('official', help='the Image-Classification folder of ViTAE-Transformer')
    parser.add_argument('--out', default=str(OUT))
    args = parser.parse_args()
    sys.path.insert(0, args.official)
    from vitae.vitmodules import ViTAE_ViT_basic

    torch.manual_seed(0)
    model = ViTAE_ViT_basic(**ARCH).eval()
    gen = torch.Generator().manual_seed(1)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            value = value + 0.05 * torch.randn(value.shape, generator=gen)
            value = value.abs() + 0.5 if key.endswith('running_var') else value
            value = value.half().float()  # stored as float16, exactly
        state[key] = value
    model.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32, generator=gen).half().float()
    with torch.no_grad():
        tokens = x
        for layer in model.layers:
            tokens = layer(tokens)
        logits = model(x)
    half = {f'weight/{k}': v.half().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}
    np.savez_compressed(args.out, input=x.half().numpy(), tokens=tokens.numpy(), logits=logits.numpy(), **half)
    print(f'{args.out}: {len(state)} tensors, logits {tuple(logits.shape)}, '
          f'{Path(args.out).stat().st_size / 1024:.1f} KiB')


if __name__ == '__main__':
    main()
