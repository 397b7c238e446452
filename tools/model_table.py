#!/usr/bin/env python
"""Regenerate the model zoo table (configs/model_zoo.md) from the metafiles
(the toolboxes' and configs/<family>/metafile.yml), or check that it is up to date.

    python tools/model_table.py           # rewrite the table in configs/model_zoo.md
    python tools/model_table.py --check   # exit 1 if the file differs from the metafiles
"""
import _env_check  # noqa: F401  (first: without DenseKit, one line naming the interpreter to use)
import argparse
import sys

from densekit import zoo
from densekit.cli import user_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--file', dest='readme', default=str(zoo.ROOT / 'configs' / 'model_zoo.md'),
                        help='the Markdown file holding the table markers (default: configs/model_zoo.md)')
    parser.add_argument('--check', action='store_true', help='only compare; exit 1 when they differ')
    args = parser.parse_args(argv)
    with user_errors('model_table'):
        with open(args.readme) as f:
            text = f.read()
        new = zoo.replace_table(text, zoo.render_table(), args.readme)
        if args.check:
            if new != text:
                print(f'{args.readme}: the model table differs from the metafiles; '
                      'run python tools/model_table.py', file=sys.stderr)
                sys.exit(1)
            print(f'{args.readme}: the model table agrees with the metafiles')
            return
        with open(args.readme, 'w') as f:
            f.write(new)
        print(f'{args.readme}: model table {"unchanged" if new == text else "rewritten"}')


if __name__ == '__main__':
    main()
