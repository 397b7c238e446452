"""The model zoo (densekit/zoo.py, tools/get_weights.py, tools/model_table.py):
the toolbox metafiles as read, our metafiles against the configs, the README
table, and downloads from a local HTTP server (resume, hash mismatch, offline).
No test touches the network."""
import hashlib
import http.server
import re
import socket
import threading
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import ROOT, TINY_SEG, run_main
from densekit import zoo


@pytest.fixture(scope='module')
def known():
    return zoo.load_zoo()


def test_toolbox_checkpoints_come_from_the_installed_metafiles(known):
    ckpt = known['mmseg/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512']
    assert ckpt.metrics == {'mIoU': 44.41, 'mIoU(ms+flip)': 45.79}  # mmseg's published numbers
    assert ckpt.url.startswith('https://download.openmmlab.com/mmsegmentation/')
    # the hash is torch.hub's reading of the file name
    assert ckpt.sha256 == re.search(torch.hub.HASH_REGEX, ckpt.filename).group(1) == 'e380ad3e'
    assert [f['config'] for f in ckpt.fits] == ['configs/swin/upernet_swin-t_160k_ade20k.py']
    levit = known['official/LeViT-256']  # mmpretrain's "Converted From"
    assert levit.url == 'https://dl.fbaipublicfiles.com/LeViT/LeViT-256-13b5763e.pth'
    assert levit.sha256 == '13b5763e' and 'levit-256_3rdparty_in1k' in levit.metric_source
    for source in ('mmseg', 'mmdet', 'mmpretrain', 'official', 'timm'):
        assert any(c.source == source for c in known.values()), source


def test_every_config_is_in_exactly_one_metafile(known):
    """Each task config (configs/<family>/*.py; not the demos, nor the README's
    example configs/upernet_swin_ade20k.py, which only inherits the Swin-T recipe)
    has one metafile entry, in its family's metafile, and each entry's config
    exists: a new config without a metafile row fails here."""
    listed = []
    for family in zoo.FAMILIES:
        for model in zoo.read_ours(family)['Models']:
            assert (ROOT / model['Config']).is_file(), model['Config']
            assert model.get('Measured') == [], f"{model['Name']}: Measured must come from tools/test.py runs"
            assert model['Config'].startswith(f'configs/{family}/'), (family, model['Config'])
            listed.append(model['Config'])
    configs = sorted(str(p.relative_to(ROOT)) for family in zoo.FAMILIES
                     for p in (ROOT / 'configs' / family).glob('*.py'))
    assert sorted(listed) == configs


def test_model_zoo_table_agrees_with_the_metafiles():
    readme = (ROOT / 'configs' / 'model_zoo.md').read_text()
    assert zoo.replace_table(readme, zoo.render_table()) == readme, 'run python tools/model_table.py'


def test_list_prints_what_url_hash_metric_and_config(capsys):
    out, _ = run_main(capsys, 'get_weights', '--list', '--family', 'levit')
    block = out.split('official/LeViT-256\n', 1)[1].split('\n\n')[0]
    assert 'configs/levit/levit-256_1000e_imagenet.py (test)' in block
    assert 'configs/levit/upernet_levit-256_160k_ade20k.py (init)' in block
    assert 'https://dl.fbaipublicfiles.com/LeViT/LeViT-256-13b5763e.pth' in block and 'sha256 13b5763e' in block
    assert 'Top 1 Accuracy' in block and 'swin' not in out


def test_unknown_name_lists_close_matches(capsys):
    with pytest.raises(SystemExit) as exc:
        run_main(capsys, 'get_weights', 'swin-tiny_16xb64_in1')
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "unknown checkpoint 'swin-tiny_16xb64_in1'" in err and 'mmpretrain/swin-tiny_16xb64_in1k' in err


def test_bad_metafile_use_is_named(tmp_path):
    bad = tmp_path / 'swin.yml'
    bad.write_text(yaml.safe_dump({'Models': [{'Name': 'x', 'Config': 'configs/x.py',
                                               'Weights': [{'Name': 'timm/y', 'Use': 'finetune'}]}]}))
    with pytest.raises(ValueError, match=r"swin.yml: x: Weights 'timm/y' needs Use: test .* got 'finetune'"):
        zoo.read_ours('swin', bad)


# ----------------------------------------------------------------------------- downloads

class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; answers ``Range: bytes=N-`` with 206 as download servers do."""
    ranges: list = []

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        match = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range', ''))
        start = int(match.group(1)) if match else 0
        self.ranges.append(start if match else None)
        if start >= len(data) and match:
            self.send_error(416)
            return
        self.send_response(206 if match else 200)
        if match:
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 over tmp_path/'served'; yields (folder, base URL, ranges)."""
    served = tmp_path / 'served'
    served.mkdir()
    handler = type('Handler', (RangeHandler,), {'ranges': []})
    httpd = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), lambda *a, **k: handler(*a, directory=str(served), **k))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f'http://127.0.0.1:{httpd.server_address[1]}', handler.ranges
    httpd.shutdown()
    httpd.server_close()


def _release(served: Path, payload: bytes, stem: str = 'weights', hash_prefix: str | None = None) -> str:
    """Write ``payload`` as a release file named with its sha256 prefix (or ``hash_prefix``)."""
    prefix = hash_prefix or hashlib.sha256(payload).hexdigest()[:8]
    name = f'{stem}-{prefix}.pth'
    (served / name).write_bytes(payload)
    return name


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    served, base, ranges = server
    payload = torch.randint(0, 256, (300_000,), dtype=torch.uint8).numpy().tobytes()
    name = _release(served, payload)
    ckpt = zoo.Checkpoint('test/weights', 'swin', 'test', 'a test file', f'{base}/{name}', zoo.hash_of(name))
    cache = tmp_path / 'cache'
    part = cache / 'test' / f'{name}.part'
    part.parent.mkdir(parents=True)
    part.write_bytes(payload[:100_000])  # what an interrupted download left
    path = zoo.fetch(ckpt, cache, progress=False)
    assert ranges == [100_000]  # asked only for the rest
    assert path.read_bytes() == payload and not part.exists()
    assert zoo.fetch(ckpt, cache, progress=False) == path and ranges == [100_000]  # cached: no request


def test_hash_mismatch_removes_the_file(server, tmp_path):
    served, base, _ = server
    name = _release(served, b'not the published weights', hash_prefix='0123abcd')
    ckpt = zoo.Checkpoint('test/bad', 'swin', 'test', 'a test file', f'{base}/{name}', zoo.hash_of(name))
    with pytest.raises(ValueError, match=r'sha256 [0-9a-f]{8} does not match the published 0123abcd of '
                                         r'test/bad; the file was removed'):
        zoo.fetch(ckpt, tmp_path / 'cache', progress=False)
    assert not list((tmp_path / 'cache').rglob('*.pth*'))


def test_file_url_and_full_sha256(tmp_path):
    src = tmp_path / 'release.bin'
    src.write_bytes(b'x' * 1000)
    ckpt = zoo.Checkpoint('test/file', 'swin', 'test', 'a test file', src.as_uri(),
                          hashlib.sha256(b'x' * 1000).hexdigest())
    assert zoo.fetch(ckpt, tmp_path / 'cache', progress=False).read_bytes() == b'x' * 1000


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_offline_prints_one_line_with_the_url_and_where_to_put_it(monkeypatch, capsys, tmp_path):
    url = f'http://127.0.0.1:{_closed_port()}/LeViT-256-13b5763e.pth'
    ckpt = zoo.Checkpoint('official/LeViT-256', 'levit', 'official', 'LeViT-256', url, '13b5763e')
    monkeypatch.setattr(zoo, 'load_zoo', lambda families: {ckpt.name: ckpt})
    monkeypatch.setenv('DENSEKIT_CACHE', str(tmp_path / 'cache'))
    with pytest.raises(SystemExit) as exc:
        run_main(capsys, 'get_weights', 'official/LeViT-256', '--quiet')
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and url in err[0]
    assert err[0].endswith(f"put it at {tmp_path / 'cache' / 'official' / 'LeViT-256-13b5763e.pth'}")


def test_get_weights_downloads_converts_and_prints_the_commands(server, monkeypatch, capsys, tmp_path):
    """A backbone release for a config's init: downloaded, converted by the family's
    checkpoint_filter for that config's backbone, and the fine-tuning command printed."""
    from mmengine.config import Config

    from densekit.convert import build_backbone
    served, base, _ = server
    backbone = dict(Config.fromfile(str(TINY_SEG)).model.backbone)
    backbone.pop('init_cfg', None)
    torch.manual_seed(0)
    model = build_backbone(backbone.pop('type'), **backbone)
    buffer = tmp_path / 'release.pth'
    torch.save({'model': model.state_dict()}, buffer)  # the official releases' {'model': ...}
    name = _release(served, buffer.read_bytes(), stem='tiny_swin')
    config = str(TINY_SEG.relative_to(ROOT))
    ckpt = zoo.Checkpoint('test/tiny_swin', 'swin', 'test', 'a tiny Swin', f'{base}/{name}', zoo.hash_of(name),
                          fits=[dict(config=config, use='init', options='', note='')])
    monkeypatch.setattr(zoo, 'load_zoo', lambda families: {ckpt.name: ckpt})
    out, _ = run_main(capsys, 'get_weights', 'tiny_swin', '--cache', str(tmp_path / 'cache'), '--quiet')
    converted = tmp_path / 'cache' / 'test' / 'converted' / TINY_SEG.stem / 'tiny_swin-{}.pth'.format(ckpt.sha256)
    assert f'matches the published {ckpt.sha256}' in out
    assert f'python tools/train.py {config} --cfg-options model.backbone.init_cfg.checkpoint={converted}' in out
    state = torch.load(converted, map_location='cpu', weights_only=True)['state_dict']
    fresh = model.state_dict()
    assert state.keys() <= fresh.keys() and len(state) >= len(fresh) - 8  # the output norms may be absent
    assert all(torch.equal(state[k], fresh[k]) for k in state)
