"""Tests for tools/synthetic_ade.py (the synthetic ADE20K-layout demo dataset)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import synthetic_ade as synthetic
from tests.helpers import run_tool
from synthetic_ade import CLASSES, MARKER, PALETTE, SPLITS, generate_ade_like

K = len(CLASSES) - 1  # number of shape classes; label values are 0..K+1
SIZE = (64, 64)


def _gen(root: Path, **kw) -> dict:
    args = dict(num_train=6, num_val=3, size=SIZE, seed=0)
    args.update(kw)
    return generate_ade_like(root, **args)


def _stems(folder: Path, ext: str) -> list[str]:
    return sorted(p.stem for p in folder.glob(f'*.{ext}'))


def _label_bytes(root: Path, split: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / 'annotations' / split).glob('*.png'))}


def _read_label(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob('*') if p.is_file()}


@pytest.fixture(scope='module')
def small(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp('small')
    return root, _gen(root)


@pytest.fixture(scope='module')
def larger(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('larger')
    _gen(root, num_train=30, num_val=1)
    return root


def test_classes_and_palette():
    assert CLASSES[0] == 'background' and 5 <= K <= 6
    assert len(set(CLASSES)) == len(CLASSES)
    assert len(PALETTE) == len(CLASSES)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in PALETTE)


def test_layout_and_matching_stems(small):
    root, summary = small
    assert summary['counts'] == {'training': 6, 'validation': 3}
    assert summary['size'] == list(SIZE) and summary['classes'] == list(CLASSES)
    assert summary['root'] == str(root) and summary['generated'] is True
    for split, n in (('training', 6), ('validation', 3)):
        imgs = _stems(root / 'images' / split, 'jpg')
        anns = _stems(root / 'annotations' / split, 'png')
        assert len(imgs) == n and imgs == anns
    marker = json.loads((root / MARKER).read_text())
    assert marker['counts'] == {'training': 6, 'validation': 3}


def test_shapes_and_label_values(small):
    root, _ = small
    for split in SPLITS:
        for img_path in sorted((root / 'images' / split).glob('*.jpg')):
            img = cv2.imread(str(img_path), cv2.IMREAD_UNCHANGED)
            label = _read_label(root / 'annotations' / split / f'{img_path.stem}.png')
            assert img.shape == (*SIZE, 3) and img.dtype == np.uint8
            assert label.shape == SIZE and label.dtype == np.uint8
            assert set(np.unique(label).tolist()) <= set(range(K + 2))
            assert img.std() > 5  # textured, not a flat fill


def test_non_square_size_is_h_w(tmp_path):
    generate_ade_like(tmp_path, num_train=1, num_val=1, size=(32, 48), seed=3)
    assert cv2.imread(str(tmp_path / 'images/training/synth_000000.jpg')).shape == (32, 48, 3)
    assert _read_label(tmp_path / 'annotations/validation/synth_000000.png').shape == (32, 48)


def test_every_class_and_unlabelled_frame_appear(larger):
    labels = [_read_label(p) for p in sorted((larger / 'annotations/training').glob('*.png'))]
    seen = set(np.unique(np.stack(labels)).tolist())
    assert set(range(1, K + 2)) <= seen  # background and every shape class
    framed = [lb for lb in labels if (lb[:2] == 0).all() and (lb[:, -2:] == 0).all()]
    assert framed, 'expected some images with an unlabelled 2-pixel frame'
    assert all((lb[2:-2, 2:-2] > 0).all() for lb in labels)  # 0 only ever in the frame


def test_image_content_matches_labels(larger):
    """Shape pixels carry their class hue and are more saturated than the background."""
    hsv, labels = [], []
    for p in sorted((larger / 'images/training').glob('*.jpg')):
        img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        hsv.append(cv2.cvtColor(img, cv2.COLOR_RGB2HSV))
        labels.append(_read_label(larger / 'annotations/training' / f'{p.stem}.png'))
    hsv, labels = np.stack(hsv), np.stack(labels)
    # erode away boundaries, where JPEG blurs colours across labels
    inner = np.stack([cv2.erode(lb, np.ones((3, 3), np.uint8)) == cv2.dilate(lb, np.ones((3, 3), np.uint8))
                      for lb in labels]) & (labels > 0)
    bg_sat = np.median(hsv[..., 1][inner & (labels == 1)])
    for cls in range(2, K + 2):
        sel = inner & (labels == cls)
        assert sel.sum() > 20, CLASSES[cls - 1]
        assert np.median(hsv[..., 1][sel]) > bg_sat + 0.2, CLASSES[cls - 1]
        want = cv2.cvtColor(np.float32([[PALETTE[cls - 1]]]) / 255, cv2.COLOR_RGB2HSV)[0, 0, 0]
        diff = np.abs((hsv[..., 0][sel] - want + 180) % 360 - 180)  # circular hue distance
        assert np.median(diff) < 20, CLASSES[cls - 1]


def test_deterministic_for_seed(tmp_path, small):
    root, _ = small
    _gen(tmp_path / 'again')
    for split in SPLITS:
        assert _label_bytes(tmp_path / 'again', split) == _label_bytes(root, split)
    _gen(tmp_path / 'other', seed=1)
    assert _label_bytes(tmp_path / 'other', 'training') != _label_bytes(root, 'training')


def test_train_and_val_differ(small):
    root, _ = small
    train = set(_label_bytes(root, 'training').values())
    val = set(_label_bytes(root, 'validation').values())
    assert len(train) == 6 and len(val) == 3 and not train & val


def test_marker_short_circuits_second_call(tmp_path):
    _gen(tmp_path)
    before = _mtimes(tmp_path)
    assert _gen(tmp_path)['generated'] is False
    assert _mtimes(tmp_path) == before


def test_marker_mismatch_or_missing_file_raises(tmp_path):
    _gen(tmp_path)
    with pytest.raises(FileExistsError):
        _gen(tmp_path, seed=5)
    (tmp_path / 'annotations/validation/synth_000001.png').unlink()
    with pytest.raises(FileExistsError):
        _gen(tmp_path)  # same params but incomplete: not silently accepted


def test_foreign_folder_raises_and_is_untouched(tmp_path):
    root = tmp_path / 'mine'
    root.mkdir()
    (root / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match=str(root)):
        _gen(root)
    assert (root / 'notes.txt').read_text() == 'keep me'
    assert sorted(p.name for p in root.iterdir()) == ['notes.txt']


def test_empty_existing_folder_is_fine(tmp_path):
    assert _gen(tmp_path, num_train=1, num_val=1)['generated'] is True
    assert (tmp_path / MARKER).is_file()


def test_overwrite_regenerates_and_keeps_foreign_files(tmp_path):
    _gen(tmp_path)
    (tmp_path / 'notes.txt').write_text('keep me')
    stray = tmp_path / 'images/training/stray.jpg'
    stray.write_bytes(b'x')
    summary = _gen(tmp_path, seed=1, overwrite=True)
    assert summary['generated'] is True and summary['seed'] == 1
    assert not stray.exists()  # split folders were rebuilt
    assert (tmp_path / 'notes.txt').read_text() == 'keep me'
    _gen(tmp_path / 'ref', seed=1)
    assert _label_bytes(tmp_path, 'training') == _label_bytes(tmp_path / 'ref', 'training')
    assert json.loads((tmp_path / MARKER).read_text())['params']['seed'] == 1


def test_marker_written_only_after_all_files(tmp_path, monkeypatch):
    real, calls = cv2.imwrite, []

    def flaky(path, *args):
        calls.append(path)
        if len(calls) == 5:
            raise OSError('disk full')
        return real(path, *args)

    monkeypatch.setattr(synthetic.cv2, 'imwrite', flaky)
    with pytest.raises(OSError):
        _gen(tmp_path)
    assert not (tmp_path / MARKER).exists()
    monkeypatch.setattr(synthetic.cv2, 'imwrite', real)
    with pytest.raises(FileExistsError):  # partial output is not mistaken for a dataset
        _gen(tmp_path)
    assert _gen(tmp_path, overwrite=True)['generated'] is True


def test_main_cli(tmp_path, capsys):
    out = tmp_path / 'cli'
    summary = synthetic.main(['--out', str(out), '--num', '2', '--num-val', '1',
                              '--size', '32', '40', '--seed', '7'])
    printed = json.loads(capsys.readouterr().out)
    assert printed == summary and printed['counts'] == {'training': 2, 'validation': 1}
    assert _stems(out / 'images/training', 'jpg') == ['synth_000000', 'synth_000001']
    assert _read_label(out / 'annotations/validation/synth_000000.png').shape == (32, 40)
    assert synthetic.main(['--out', str(out), '--num', '2', '--num-val', '1',
                           '--size', '32', '40', '--seed', '7', '--overwrite'])['generated'] is True


def test_generators_run_as_commands_with_the_same_flags(tmp_path):
    """tools/synthetic_{ade,coco,cls}.py run standalone (outside the installed
    package) and take --out DIR --num N --num-val N --seed S; counts are images."""
    for tool, size in (('synthetic_ade', ['32', '32']), ('synthetic_coco', ['48', '48']), ('synthetic_cls', ['32'])):
        out = tmp_path / tool
        proc = run_tool(tool, '--out', str(out), '--num', '8', '--num-val', '8', '--size', *size, '--seed', '1')
        summary = json.loads(proc.stdout)
        assert summary['root'] == str(out) and sum(summary['counts'].values()) == 16, (tool, summary)
    bad = run_tool('synthetic_cls', '--out', str(tmp_path / 'bad'), '--num', '10', check=False)
    assert bad.returncode == 2 and '--num 10: the 8 classes need a positive multiple of 8 images' in bad.stderr


def test_class_count_constraint_is_in_help_and_a_bad_count_is_one_line(capsys):
    from synthetic_cls import CLASSES, main  # tools/ is on the path, as for synthetic_ade above
    with pytest.raises(SystemExit):
        main(['--help'])
    help_text = ' '.join(capsys.readouterr().out.split())
    n = len(CLASSES)
    assert f'--num N training images, a positive multiple of {n}: the {n} classes get equal shares' in help_text
    with pytest.raises(SystemExit) as exit_:
        main(['--num', '10', '--out', 'unused'])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()  # no usage block before it
    assert line.endswith(f'.py: error: --num 10: the {n} classes need a positive multiple of {n} images')
