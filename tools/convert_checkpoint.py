#!/usr/bin/env python
"""Convert an official, timm, mmseg or mmpretrain checkpoint into DenseKit's
backbone layout, with a report of matched, missing, unexpected and ignored keys.

    python tools/convert_checkpoint.py swin swin_tiny_patch4_window7_224.pth pretrained/swin_tiny_patch4_window7_224.pth --arch tiny
    python tools/convert_checkpoint.py levit model.safetensors pretrained/LeViT-256-13b5763e.pth --arch 256
    python tools/convert_checkpoint.py swin upernet_swin.pth swin_t.pth --prefix backbone.   # its backbone
    python tools/convert_checkpoint.py configs/upernet_swin_ade20k.py upernet_swin.pth ours.pth  # whole model

DST under pretrained/ as above is the file the configs' init_cfg reads
(configs/upernet_swin_ade20k.py: pretrained/swin_tiny_patch4_window7_224.pth).

A checkpoint that does not fit the backbone fully (weights missing, or
tensors it cannot place) is refused, naming the --arch it fits;
--allow-partial writes the partial conversion. Weights a classifier release
cannot hold (the pyramid's output norms before the last level) are reported
as expected and left at their initialisation.

FAMILY_OR_TYPE is a family (swin, vit, mae, vitae, levit, coatnet, convmixer) or
a type (SwinTransformer). DST ending in .safetensors is written with
safetensors, else as {'state_dict', 'meta'} that loads with weights_only=True.
Given a CONFIG (a .py file) instead, SRC is a whole model (an mmseg, mmdet or
mmpretrain zoo checkpoint, or an official classifier release) and DST the
config's whole model, for tools/test.py or load_from.
"""
import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse
import os

import densekit.runtime  # noqa: F401  (weights-only resume, atomic saves, zoo checkpoints)
from densekit.cli import quiet_libraries, user_errors
from densekit.convert import build_backbone, convert_checkpoint, convert_whole_model, describe_backbone
from mmengine.config import DictAction


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('family', metavar='FAMILY_OR_TYPE', help='e.g. swin, vit, levit or SwinTransformer; '
                        'or a config file (whole-model conversion)')
    parser.add_argument('src', help='release checkpoint (.pth, .pt, .bin or .safetensors)')
    parser.add_argument('dst', help='output file (.pth or .safetensors)')
    parser.add_argument('--arch', help="variant, e.g. tiny, base, 256, 768_32, 0 (default: the family's)")
    parser.add_argument('--prefix', help="keep only keys under this prefix (default: 'backbone.' when SRC is "
                        'a whole mmseg/mmdet/mmpretrain model)')
    parser.add_argument('--allow-partial', action='store_true',
                        help='write the conversion even when backbone weights are missing or tensors do not fit')
    parser.add_argument('--options', nargs='+', action=DictAction, default={}, metavar='KEY=VALUE',
                        help='other backbone arguments, e.g. out_norm=last img_size=384')
    parser.add_argument('--strict', action='store_true', help='fail when any backbone weight is missing '
                        'from the checkpoint or a converted key is not in the backbone')
    parser.add_argument('--verbose', action='store_true',
                        help="also show the libraries' own notices (deprecations, tracer warnings)")
    args = parser.parse_args(argv)
    with user_errors('convert_checkpoint', args.options, args.verbose), quiet_libraries('convert_checkpoint', args.verbose):
        if os.path.abspath(args.src) == os.path.abspath(args.dst):
            raise ValueError(f'{args.dst}: refusing to overwrite the source checkpoint')
        if args.family.endswith('.py'):
            if args.arch or args.prefix or args.options:
                raise ValueError('--arch, --prefix and --options select a backbone; with a config '
                                 f'({args.family}) the whole model is converted')
            report, out = convert_whole_model(args.family, args.src, args.dst, strict=args.strict)
            print(report)
            print(f'wrote {len(out)} tensors ({args.family}) to {args.dst}')
            return
        model = build_backbone(args.family, args.arch, **args.options)
        report, out = convert_checkpoint(model, args.src, args.dst, prefix=args.prefix, strict=args.strict,
                                         allow_partial=args.allow_partial, family=args.family,
                                         arch_options=args.options, arch=args.arch)
        print(f'{describe_backbone(model, args.arch)}: matched {report.loaded} of {len(model.state_dict())} backbone '
              f'tensors; missing {len(report.missing)}, unexpected {len(report.unexpected)}, ignored '
              f'{len(report.ignored)} (in the checkpoint, not backbone weights)'
              + (f', expected absent {len(report.expected)} (a classifier release lacks them)'
                 if report.expected else ''))
        print(report)
        print(f'wrote {len(out)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
