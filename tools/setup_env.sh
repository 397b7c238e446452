#!/usr/bin/env bash
# Creates .venv/ with the pinned OpenMMLab stack on today's PyTorch. Idempotent:
# a second run with nothing to do returns in seconds.
#
#   bash tools/setup_env.sh                       # .venv/ (the default)
#   bash tools/setup_env.sh --download-mmcv DIR   # only fetch and verify mmcv's sdist into DIR
#   PYTHON=python3 MMCV_SDIST=DIR/mmcv-2.1.0.tar.gz bash tools/setup_env.sh --mmcv-wheel
#       # only build (or find cached) the mmcv wheel for PYTHON's torch; prints its path
#       # (tools/gpu_check.sh: a machine without network, its own torch)
#
# Why a script and not just `pip install -e .`: mmcv 2.1.0 ships no wheels for
# torch 2.14, and its sdist cannot be built by pip's defaults (it imports torch
# and pkg_resources in setup.py, and hard-codes a C++ standard older than the
# one torch's headers require). We build it once, patched, and keep the wheel
# in a cache keyed by mmcv/torch/Python/CUDA and the GPU architectures the CUDA
# ops are compiled for (TORCH_CUDA_ARCH_LIST: by default the visible GPU's), so
# later set-ups only install it and a wheel built for another GPU is never reused.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
# The exact versions the test suite runs on (setup.cfg declares the ranges).
PINS=(mmengine==0.10.7 mmsegmentation==1.2.2 mmdet==3.3.0 mmpretrain==1.2.0 timm==1.0.31
      opencv-python==4.14.0.94 numpy==2.4.6 onnx==1.23.2 onnxruntime==1.32.0 pytest==9.2.0 pytest-timeout==2.4.0)
# mmcv's sdist sha256 on PyPI, checked before it is built.
MMCV_SHA256=d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f
CACHE=${DENSEKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/densekit}
STAMP=$VENV/.densekit-installed

log() { echo "[setup_env] $*" >&2; }
pipq() { local py=$1; shift; "$py" -m pip --disable-pip-version-check -q "$@"; }

# mmcv's sdist, checked against its PyPI sha256, in directory $2 (downloaded
# with Python $1 unless there); prints its path. pip reads the sdist's metadata
# by running its setup.py: $1 needs setuptools (< 81) and wheel, as .venv has.
mmcv_sdist() {
  local py=$1 dir=$2
  local sdist=$dir/mmcv-$MMCV_VERSION.tar.gz
  if [[ ! -f $sdist ]]; then
    pipq "$py" download --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$dir" 2>&1 \
      | grep -v "is ignored" >&2 || true
  fi
  echo "$MMCV_SHA256  $sdist" | sha256sum -c --quiet >&2
  echo "$sdist"
}

# The mmcv wheel with compiled ops for Python $1's torch (CUDA ops too where
# nvcc and a GPU are present), built from sdist $2 (downloaded when empty)
# unless the cache has it; prints its path.
mmcv_wheel() {
  local py=$1 sdist=${2:-}
  local pytag cxxstd cuda torchv arch
  read -r pytag cxxstd cuda torchv arch < <("$py" - <<'PY'
import inspect, os, re, shutil, sys
import torch, torch.utils.cpp_extension as ext
# The C++ standard torch's own extension builder passes (c++20 from torch 2.14,
# c++17 before): mmcv's setup.py hard-codes an older one.
std = max(int(s) for s in re.findall(r"-std=c\+\+(\d+)", inspect.getsource(ext)))
gpu = torch.cuda.is_available() and shutil.which("nvcc") and torch.version.cuda
# The architectures the CUDA ops are compiled for: TORCH_CUDA_ARCH_LIST if set,
# else the visible GPU's compute capability only (one target: a fraction of the build time).
arch = ";".join(os.environ.get("TORCH_CUDA_ARCH_LIST", "").replace(";", " ").split())
if gpu and not arch:
    arch = "%d.%d" % torch.cuda.get_device_capability()
print(f"cp{sys.version_info[0]}{sys.version_info[1]}", std, f"cu{torch.version.cuda}" if gpu else "cpu",
      torch.__version__.split("+")[0], arch or "-")
PY
  )
  local key="mmcv-$MMCV_VERSION-torch$torchv-$pytag-$cuda"
  [[ $cuda != cpu ]] && key+="-sm${arch//;/_}"   # a wheel for another GPU is another key
  local wheel_dir=$CACHE/wheels/$key
  if ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
    log "using cached mmcv wheel $wheel_dir"
  else
    log "building mmcv $MMCV_VERSION with ops for $key (c++$cxxstd, ${MAX_JOBS:-$(nproc)} jobs); about 16 minutes on 2 cores, once"
    local build
    build=$(mktemp -d)
    trap "rm -rf '$build'" EXIT
    [[ -n $sdist ]] || sdist=$(mmcv_sdist "$py" "$build")
    echo "$MMCV_SHA256  $sdist" | sha256sum -c --quiet >&2
    tar -xzf "$sdist" -C "$build"
    sed -i "s/-std=c++1[47]/-std=c++$cxxstd/g" "$build/mmcv-$MMCV_VERSION/setup.py"
    local flags=()
    [[ $cuda != cpu ]] && flags=(FORCE_CUDA=1 "TORCH_CUDA_ARCH_LIST=$arch")
    mkdir -p "$wheel_dir.tmp"
    if ! env MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${flags[@]}" \
        "$py" -m pip wheel --no-deps --no-build-isolation --no-index \
        "$build/mmcv-$MMCV_VERSION" -w "$wheel_dir.tmp" > "$build/build.log" 2>&1; then
      tail -n 60 "$build/build.log" >&2
      mkdir -p "$CACHE" && cp "$build/build.log" "$CACHE/mmcv-build-failed.log"
      log "mmcv build failed; full log: $CACHE/mmcv-build-failed.log"
      exit 1
    fi
    rm -rf "$wheel_dir" && mv "$wheel_dir.tmp" "$wheel_dir"   # publish only a complete wheel
  fi
  ls "$wheel_dir"/mmcv-*.whl
}

case ${1:-} in
  --download-mmcv)
    dir=${2:?usage: tools/setup_env.sh --download-mmcv DIR}
    mkdir -p "$dir"
    py=$PY; [[ -x $VENV/bin/python ]] && py=$VENV/bin/python
    mmcv_sdist "$py" "$dir"
    exit 0 ;;
  --mmcv-wheel)
    mmcv_wheel "$PY" "${MMCV_SDIST:-}"
    exit 0 ;;
  '') ;;
  *) echo "usage: tools/setup_env.sh [--download-mmcv DIR | --mmcv-wheel]" >&2; exit 2 ;;
esac

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
pip() { pipq "$VENV/bin/python" "$@"; }

# torch first, exactly pinned: a looser spec lets pip pick a newer build.
# setuptools < 81 keeps pkg_resources, which mmcv's setup.py imports.
log "installing torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION and build tools"
pip install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
  "setuptools>=77,<81" wheel ninja psutil "numpy>=2,<3" 2>&1 | grep -v "is ignored" || true

# Build mmcv with compiled ops, CUDA ops too where nvcc and a GPU are present.
wheel=$(mmcv_wheel "$VENV/bin/python")
pip install --no-deps "$wheel"

# Everything else: setup.cfg's ranges, held at the exact versions the suite runs on.
log "installing DenseKit and its dependencies"
constraints=$(mktemp)
printf '%s\n' "${PINS[@]}" > "$constraints"
pip install -c "$constraints" -e "$ROOT[test]" 2>&1 | grep -v "is ignored" || true
rm -f "$constraints"
"$VENV/bin/python" -c 'import mmcv._ext, mmseg, mmdet, mmpretrain, timm, densekit.backbones'
echo "$want" > "$STAMP"
log "done in $(( $(date +%s) - start )) s"
