"""The model zoo: every known checkpoint for DenseKit's families, where it comes
from, what it scored, and the DenseKit config it fits; downloading with resume
and hash checks (``tools/get_weights.py``).

Three sources, read as data:

- the toolboxes' own metafiles, shipped in their wheels
  (``<mmseg|mmdet|mmpretrain>/.mim/configs/<model>/metafile.y*ml``): name, metric, URL;
- the official releases those metafiles say their weights were converted from
  (``Converted From: Weights``), with the converted copy's metric;
- our per-family metafiles ``configs/<family>/metafile.yml``: which checkpoint each
  DenseKit config can use (``Use: test`` a whole trained model, ``Use: init`` backbone
  weights to fine-tune from), checkpoints no toolbox lists (timm, official releases)
  with their published metric and its source, and, kept apart under ``Measured``,
  what DenseKit measured itself.

The hash is the one a release publishes: a full sha256, or the sha256 prefix in
the file name (``...-e380ad3e.pth``) as ``torch.hub`` checks it.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs'
FAMILIES = ('swin', 'vit', 'mae', 'vitae', 'levit', 'coatnet', 'convmixer')

# The toolbox model folders that hold our families: package -> {folder: family}.
TOOLBOX_FOLDERS = {
    'mmseg': {'swin': 'swin', 'vit': 'vit', 'mae': 'mae'},
    'mmdet': {'swin': 'swin'},
    'mmpretrain': {'swin_transformer': 'swin', 'vision_transformer': 'vit', 'mae': 'mae',
                   'levit': 'levit', 'convmixer': 'convmixer'},
}
# "Converted From" pages that are not files (a cloud console page): no download.
_NOT_A_FILE = ('console.cloud.google.com',)
# torch.hub's rule: the hash prefix is the hex run between the last '-' and the first '.'.
HASH_REGEX = re.compile(r'-([a-f0-9]*)\.')


class DownloadError(OSError):
    """A checkpoint could not be fetched; the message says how to fetch it by hand."""


@dataclasses.dataclass
class Checkpoint:
    """One known checkpoint.

    ``metrics`` are the published ones (``metric_source`` says where they are
    published); ``sha256`` is the full digest or a prefix, or '' when the
    release publishes none. ``fits`` lists the DenseKit configs it fits as dicts
    ``config``, ``use`` ('test': the whole trained model, 'init': backbone weights),
    ``options`` (``--cfg-options`` it needs) and ``note``.
    """
    name: str
    family: str
    source: str
    what: str
    url: str
    sha256: str = ''
    metrics: dict = dataclasses.field(default_factory=dict)
    metric_source: str = ''
    fits: list = dataclasses.field(default_factory=list)

    @property
    def filename(self) -> str:
        return self.url.rstrip('/').rsplit('/', 1)[-1].split('?')[0]


def hash_of(url: str) -> str:
    """The sha256 prefix a file name carries (``..._20210531_112542-e380ad3e.pth``), or ''."""
    match = HASH_REGEX.search(url.rsplit('/', 1)[-1])
    return match.group(1) if match and len(match.group(1)) >= 8 else ''


# ----------------------------------------------------------------------------- reading

def _results(model: dict) -> tuple[str, str, dict]:
    """(task, dataset, metrics) of a toolbox metafile entry; mmseg writes one
    ``Results`` dict, mmdet and mmpretrain a list of them."""
    results = model.get('Results') or []
    results = [results] if isinstance(results, dict) else results
    metrics = {}
    for result in results:
        metrics.update(result.get('Metrics') or {})
    first = results[0] if results else {}
    return first.get('Task', ''), first.get('Dataset', ''), metrics


def toolbox_metafiles() -> list[tuple[str, str, Path]]:
    """(package, family, metafile path) for each installed toolbox folder of our families."""
    found = []
    for package, folders in TOOLBOX_FOLDERS.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        configs = Path(list(spec.submodule_search_locations)[0]) / '.mim' / 'configs'
        for folder, family in folders.items():
            for path in sorted((configs / folder).glob('metafile.y*ml')):
                found.append((package, family, path))
    return found


def read_toolbox(package: str, family: str, path: Path) -> list[Checkpoint]:
    """The checkpoints one toolbox metafile lists, and the official releases it converted."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    where = f'{package} metafile {package}/.mim/{path.relative_to(path.parents[2])}'
    out = []
    for model in data.get('Models') or []:
        url = model.get('Weights')
        if not url:
            continue
        task, dataset, metrics = _results(model)
        arch = (model.get('Metadata') or {}).get('Architecture') or []
        arch = ' + '.join(a for a in arch if isinstance(a, str)) if isinstance(arch, list) else str(arch)
        what = ', '.join(x for x in (arch or model.get('In Collection', ''), dataset, task) if x)
        out.append(Checkpoint(f"{package}/{model['Name']}", family, package, what, url, hash_of(url),
                              metrics, where))
        official = (model.get('Converted From') or {}).get('Weights')
        if official and not any(host in official for host in _NOT_A_FILE):
            stem = HASH_REGEX.sub('.', official.rsplit('/', 1)[-1]).split('.')[0]
            out.append(Checkpoint(
                f'official/{stem}', family, 'official', f'{what} (official release)', official,
                hash_of(official), metrics,
                f"{where}, measured on its converted copy {package}/{model['Name']}"))
    return out


def metafile(family: str) -> Path:
    """Our metafile of ``family``, beside its configs (mmseg 1.x's layout)."""
    return CONFIGS / family / 'metafile.yml'


def read_ours(family: str, path: Path | None = None) -> dict:
    """Our metafile of ``family`` as a dict with ``Models`` and ``Checkpoints`` lists."""
    path = path or metafile(family)
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    for key in ('Models', 'Checkpoints'):
        data[key] = data.get(key) or []
    for model in data['Models']:
        for key in ('Name', 'Config', 'Weights'):
            if key not in model:
                raise KeyError(f"{path}: model {model.get('Name', '?')!r} has no '{key}'")
        for weights in model['Weights']:
            if weights.get('Use') not in ('test', 'init'):
                raise ValueError(f"{path}: {model['Name']}: Weights {weights.get('Name')!r} needs "
                                 f"Use: test (whole model) or init (backbone), got {weights.get('Use')!r}")
    return data


def _timm_url(tag: str) -> str:
    """A timm pretrained tag's file URL, from the installed timm's own pretrained config."""
    from timm.models import get_pretrained_cfg
    cfg = get_pretrained_cfg(tag)
    if cfg is None:
        raise KeyError(f"timm has no pretrained tag '{tag}'")
    if cfg.hf_hub_id:
        return f'https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors'
    return cfg.url


def load_zoo(families=FAMILIES) -> dict[str, Checkpoint]:
    """Every known checkpoint by name, with the DenseKit configs each fits."""
    zoo: dict[str, Checkpoint] = {}
    for package, family, path in toolbox_metafiles():
        if family in families:
            for ckpt in read_toolbox(package, family, path):
                zoo.setdefault(ckpt.name, ckpt)
    for family in families:
        ours = read_ours(family)
        for entry in ours['Checkpoints']:
            url = entry.get('URL') or _timm_url(entry['Timm'])
            zoo[entry['Name']] = Checkpoint(
                entry['Name'], family, entry['Name'].split('/', 1)[0], entry['What'], url,
                str(entry.get('Hash') or hash_of(url)), dict(entry.get('Metrics') or {}),
                entry.get('Metric Source', ''))
        for model in ours['Models']:
            for weights in model['Weights']:
                if weights['Name'] not in zoo:
                    raise KeyError(f"configs/{family}/metafile.yml: {model['Name']} uses "
                                   f"{weights['Name']!r}, which no metafile lists")
                zoo[weights['Name']].fits.append(dict(
                    config=model['Config'], use=weights['Use'], options=weights.get('Options', ''),
                    note=weights.get('Note', '')))
    return zoo


def find(zoo: dict[str, Checkpoint], name: str) -> Checkpoint:
    """The checkpoint called ``name`` (the source prefix may be left out when unique).

    Raises KeyError listing the close matches.
    """
    if name in zoo:
        return zoo[name]
    short = [n for n in zoo if n.split('/', 1)[-1] == name]
    if len(short) == 1:
        return zoo[short[0]]
    if short:
        raise KeyError(f"'{name}' is in several sources: {', '.join(short)}; give one of them")
    close = [n for n in zoo if name.lower() in n.lower()][:8]  # a part of the name, e.g. 'swin_tiny'
    close += difflib.get_close_matches(name, list(zoo), n=5, cutoff=0.5)
    bare = {n.split('/', 1)[-1]: n for n in zoo}  # names without their source prefix
    close += [bare[b] for b in difflib.get_close_matches(name, list(bare), n=5, cutoff=0.5)]
    hint = f" Close matches: {', '.join(dict.fromkeys(close))}." if close else ''
    raise KeyError(f"unknown checkpoint '{name}'.{hint} tools/get_weights.py --list shows them all")


def describe(ckpt: Checkpoint) -> str:
    """The ``--list`` block of one checkpoint."""
    metrics = ', '.join(f'{k} {v}' for k, v in ckpt.metrics.items()) or 'none published'
    fits = ', '.join(f"{f['config']} ({f['use']}{'; ' + f['note'] if f['note'] else ''})"
                     for f in ckpt.fits) or 'no DenseKit config yet'
    digest = f'sha256 {ckpt.sha256}' + ('' if len(ckpt.sha256) == 64 else ' (prefix)') \
        if ckpt.sha256 else 'no published hash'
    return (f'{ckpt.name}\n    {ckpt.what}\n    fits: {fits}\n'
            f"    published: {metrics}{f' [{ckpt.metric_source}]' if ckpt.metric_source else ''}\n"
            f'    {ckpt.url}  ({digest})')


# ----------------------------------------------------------------------------- fetching

def cache_dir() -> Path:
    """``$DENSEKIT_CACHE``, else ``~/.cache/densekit/weights``."""
    return Path(os.environ.get('DENSEKIT_CACHE') or Path.home() / '.cache' / 'densekit' / 'weights')


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def check_hash(path: Path, expected: str, name: str) -> str:
    """The file's sha256; removes the file and raises ValueError when it does not
    start with ``expected`` (a full digest or a prefix; '' checks nothing)."""
    actual = sha256_of(path)
    if expected and not actual.startswith(expected.lower()):
        path.unlink()
        raise ValueError(f'{path}: sha256 {actual[:max(len(expected), 8)]} does not match the published '
                         f'{expected} of {name}; the file was removed: download it again')
    return actual


def download(url: str, dst: Path, progress: bool = True, timeout: float = 30.) -> Path:
    """Fetch ``url`` to ``dst``, resuming ``dst.part`` with an HTTP Range request.

    A server that ignores the Range header (200 instead of 206) restarts the file.
    Raises DownloadError with one line: the URL to fetch by hand and where to put it.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + '.part')
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={'Range': f'bytes={have}-'} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = have and getattr(response, 'status', 200) == 206
            total = response.headers.get('Content-Length')
            total = int(total) + (have if resumed else 0) if total else None
            with open(part, 'ab' if resumed else 'wb') as f, _bar(progress, total, have if resumed else 0,
                                                                  dst.name) as bar:
                for block in iter(lambda: response.read(1 << 16), b''):
                    f.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the part file is already whole
            part.replace(dst)
            return dst
        raise DownloadError(f'cannot download {url} (HTTP {err.code}): fetch it by hand and put it at '
                            f'{dst}') from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, 'reason', err)
        raise DownloadError(f'cannot download {url} ({reason}): fetch it by hand and put it at '
                            f'{dst}') from err
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f'{url}: got {part.stat().st_size} of {total} bytes (kept in {part}; '
                            'run again to resume)')
    part.replace(dst)
    return dst


def _bar(enabled: bool, total: int | None, initial: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit='B', unit_scale=True, unit_divisor=1024,
                desc=desc, disable=not enabled)


def fetch(ckpt: Checkpoint, cache: Path | None = None, progress: bool = True) -> Path:
    """The checkpoint's file in the cache, downloaded (or resumed) if absent, hash-checked.

    A file already in the cache (put there by hand, say) is checked, not fetched again.
    """
    dst = (cache or cache_dir()) / ckpt.source / ckpt.filename
    if not dst.exists():
        download(ckpt.url, dst, progress)
    check_hash(dst, ckpt.sha256, ckpt.name)
    return dst


def convert_for(config: str, src: Path, dst: Path) -> Path:
    """Convert backbone weights ``src`` into the layout of ``config``'s backbone
    (its family's ``checkpoint_filter``) and write ``dst``."""
    from mmengine.config import Config

    from .convert import build_backbone, convert_checkpoint
    backbone = dict(Config.fromfile(str(ROOT / config)).model.backbone)
    backbone.pop('init_cfg', None)
    model = build_backbone(backbone.pop('type'), **backbone)
    convert_checkpoint(model, src, dst, progress=False)
    return dst


def commands(ckpt: Checkpoint, path: Path, converted: dict | None = None) -> list[str]:
    """The command lines that use the checkpoint with each config it fits;
    ``converted`` maps a config to the file converted for it."""
    lines = []
    for fit in ckpt.fits:
        options = f" --cfg-options {fit['options']}" if fit['options'] else ''
        if fit['use'] == 'test':
            lines.append(f"python tools/test.py {fit['config']} {path}{options}")
        else:
            checkpoint = (converted or {}).get(fit['config'], path)
            lines.append(f"python tools/train.py {fit['config']} --cfg-options "
                         f"model.backbone.init_cfg.checkpoint={checkpoint}{' ' + fit['options'] if options else ''}")
    return lines


# ----------------------------------------------------------------------------- results table

def render_table(families=FAMILIES) -> str:
    """The model zoo table (configs/model_zoo.md) (Markdown) from the metafiles: one row per DenseKit
    config and checkpoint it can use, the published metric and its source, and
    what DenseKit measured (from ``Measured`` in our metafiles)."""
    zoo = load_zoo(families)
    rows = ['| config | checkpoint | use | published | source | measured by DenseKit |',
            '|---|---|---|---|---|---|']
    for family in families:
        for model in read_ours(family)['Models']:
            measured = '; '.join(', '.join(f'{k} {v}' for k, v in m['Metrics'].items()) + f" ({m['Command']})"
                                 for m in model.get('Measured') or []) or 'not yet'
            config = f"`{Path(model['Config']).relative_to('configs')}`"  # <family>/<name>.py
            if not model['Weights']:
                rows.append(f'| {config} | none published | - | - | - | {measured} |')
            for weights in model['Weights']:
                ckpt = zoo[weights['Name']]
                metrics = ', '.join(f'{k} {v}' for k, v in ckpt.metrics.items()) or '-'
                source = ckpt.metric_source or '-'
                use = weights['Use'] + (f" ({weights['Note']})" if weights.get('Note') else '')
                rows.append(f'| {config} | [{ckpt.name}]({ckpt.url}) | {use} | {metrics} | {source} | {measured} |')
    return '\n'.join(rows)


TABLE_BEGIN = '<!-- model table: generated by tools/model_table.py from the metafiles; do not edit -->'
TABLE_END = '<!-- end of model table -->'


def replace_table(text: str, table: str, where: str = 'configs/model_zoo.md') -> str:
    """``text`` with the table between the markers replaced by ``table``.

    Raises ValueError naming ``where`` when the markers are missing.
    """
    begin, end = text.find(TABLE_BEGIN), text.find(TABLE_END)
    if begin < 0 or end < begin:
        raise ValueError(f'{where}: no model table markers ({TABLE_BEGIN} ... {TABLE_END})')
    return f'{text[:begin + len(TABLE_BEGIN)]}\n{table}\n{text[end:]}'
