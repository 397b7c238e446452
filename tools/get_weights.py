#!/usr/bin/env python
"""List the model zoo, or download one checkpoint into the cache, check its hash,
convert it to DenseKit's layout where it initialises a backbone, and print the
commands that use it.

    python tools/get_weights.py --list [--family swin]
    python tools/get_weights.py mmseg/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512
    python tools/get_weights.py official/LeViT-256 [--cache DIR] [--no-convert]

The zoo is read from the toolboxes' metafiles (mmseg, mmdet, mmpretrain) and from
configs/<family>/metafile.yml. Files go to $DENSEKIT_CACHE (default
~/.cache/densekit/weights)/<source>/; an interrupted download resumes.
"""
import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse
import sys
from pathlib import Path

from densekit import zoo
from densekit.cli import user_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('name', nargs='?', help='checkpoint name, as --list prints it (the source prefix '
                        'may be left out when unique)')
    parser.add_argument('--list', action='store_true', help='print every known checkpoint')
    parser.add_argument('--family', choices=zoo.FAMILIES, help='with --list: only this family')
    parser.add_argument('--cache', type=Path, help='download folder (default: $DENSEKIT_CACHE or '
                        '~/.cache/densekit/weights)')
    parser.add_argument('--no-convert', action='store_true', help='keep the file in its release layout')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    if not args.list and not args.name:
        parser.error('give a checkpoint NAME or --list')
    with user_errors('get_weights'):
        known = zoo.load_zoo((args.family,) if args.family else zoo.FAMILIES)
        if args.list:
            fitting = sum(bool(c.fits) for c in known.values())
            print(f'{len(known)} checkpoints ({fitting} fit a DenseKit config); '
                  'fits: test = the whole trained model, init = backbone weights to fine-tune from\n')
            print('\n\n'.join(zoo.describe(c) for c in known.values()))
            return
        ckpt = zoo.find(known, args.name)
        try:
            path = zoo.fetch(ckpt, args.cache, progress=not args.quiet)
        except zoo.DownloadError as err:
            print(f'get_weights: error: {err}', file=sys.stderr)
            sys.exit(1)
        digest = zoo.sha256_of(path)
        check = f'matches the published {ckpt.sha256}' if ckpt.sha256 else 'no published hash to check against'
        print(f'{ckpt.name}: {path}\n  sha256 {digest} ({check})')
        converted = {}
        if not args.no_convert:
            for fit in ckpt.fits:
                if fit['use'] == 'init' and not fit['options']:
                    dst = path.parent / 'converted' / Path(fit['config']).stem / f'{path.name.split(".")[0]}.pth'
                    converted[fit['config']] = zoo.convert_for(fit['config'], path, dst)
                    print(f"  converted for {fit['config']}: {dst}")
        print('\n'.join(['use it:'] + [f'  {line}' for line in zoo.commands(ckpt, path, converted)])
              if ckpt.fits else 'no DenseKit config fits it yet')


if __name__ == '__main__':
    main()
