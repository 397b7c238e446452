#!/usr/bin/env bash
# Creates .venv/ with the pinned OpenMMLab stack on today's PyTorch. Idempotent:
# a second run with nothing to do returns in seconds.
#
# Why a script and not just `pip install -e .`: mmcv 2.1.0 ships no wheels for
# torch 2.14, and its sdist cannot be built by pip's defaults (it imports torch
# and pkg_resources in setup.py, and hard-codes a C++ standard older than the
# one torch's headers require). We build it once, patched, and keep the wheel
# in a cache keyed by mmcv/torch/Python/CUDA so later set-ups only install it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
# mmcv's sdist sha256 on PyPI, checked before it is built.
MMCV_SHA256=d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f
CACHE=${DENSEKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/densekit}
STAMP=$VENV/.densekit-installed

log() { echo "[setup_env] $*"; }

# The stamp holds the hash of every file that decides what gets installed; if
# none changed and the venv still imports, there is nothing to do.
want=$(cat "$ROOT/setup.cfg" "$ROOT/tools/setup_env.sh" | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]] \
   && "$VENV/bin/python" -c 'import mmcv._ext, mmseg, mmdet, mmpretrain, timm' 2>/dev/null; then
  log "environment up to date ($VENV)"
  exit 0
fi

start=$(date +%s)
if [[ ! -x $VENV/bin/python ]]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }

# torch first, exactly pinned: a looser spec lets pip pick a newer build.
# setuptools < 81 keeps pkg_resources, which mmcv's setup.py imports.
log "installing torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION and build tools"
pip install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
  "setuptools>=77,<81" wheel ninja psutil "numpy>=2,<3" 2>&1 | grep -v "is ignored" || true

# Build mmcv with compiled ops, CUDA ops too where nvcc and a GPU are present.
read -r pytag cxxstd cuda < <("$VENV/bin/python" - <<'PY'
import inspect, re, shutil, sys
import torch, torch.utils.cpp_extension as ext
# The C++ standard torch's own extension builder passes (c++20 from torch 2.14,
# c++17 before): mmcv's setup.py hard-codes an older one.
std = max(int(s) for s in re.findall(r"-std=c\+\+(\d+)", inspect.getsource(ext)))
gpu = torch.cuda.is_available() and shutil.which("nvcc") and torch.version.cuda
print(f"cp{sys.version_info[0]}{sys.version_info[1]}", std, f"cu{torch.version.cuda}" if gpu else "cpu")
PY
)
key="mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$pytag-$cuda"
wheel_dir=$CACHE/wheels/$key
if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
  log "building mmcv $MMCV_VERSION with ops for $key (c++$cxxstd); about 16 minutes on 2 cores, once"
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  sdist=$build/mmcv-$MMCV_VERSION.tar.gz
  pip download --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$build" 2>&1 \
    | grep -v "is ignored" || true
  echo "$MMCV_SHA256  $sdist" | sha256sum -c --quiet
  tar -xzf "$sdist" -C "$build"
  sed -i "s/-std=c++1[47]/-std=c++$cxxstd/g" "$build/mmcv-$MMCV_VERSION/setup.py"
  flags=()
  [[ $cuda != cpu ]] && flags=(FORCE_CUDA=1)
  mkdir -p "$wheel_dir.tmp"
  if ! env MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${flags[@]}" \
      "$VENV/bin/python" -m pip wheel --no-deps --no-build-isolation \
      "$build/mmcv-$MMCV_VERSION" -w "$wheel_dir.tmp" > "$build/build.log" 2>&1; then
    tail -n 60 "$build/build.log"
    mkdir -p "$CACHE" && cp "$build/build.log" "$CACHE/mmcv-build-failed.log"
    log "mmcv build failed; full log: $CACHE/mmcv-build-failed.log"
    exit 1
  fi
  rm -rf "$wheel_dir" && mv "$wheel_dir.tmp" "$wheel_dir"   # publish only a complete wheel
else
  log "using cached mmcv wheel $wheel_dir"
fi
pip install --no-deps "$wheel_dir"/mmcv-*.whl

# Everything else comes from setup.cfg (pinned there), plus the test tools.
log "installing DenseKit and its dependencies"
pip install -e "$ROOT[test]" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c 'import mmcv._ext, mmseg, mmdet, mmpretrain, timm, backbones'
echo "$want" > "$STAMP"
log "done in $(( $(date +%s) - start )) s"
