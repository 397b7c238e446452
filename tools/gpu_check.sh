#!/usr/bin/env bash
# DenseKit's CUDA paths checked in one run (tools/gpu_check.py prints the table).
#
#   bash tools/gpu_check.sh --fetch-wheels   # with network: fill .whl/ (Python 3.12 wheels + mmcv's sdist)
#   bash tools/gpu_check.sh                  # on a GPU machine without network or OpenMMLab packages
#   bash tools/gpu_check.sh --cpu            # without CUDA (CI): the CPU parts, the CUDA rows SKIP
#
# On a GPU machine it installs the wheels of .whl/ into a private directory
# (nothing global changes), builds mmcv's ops from the carried sdist with
# tools/setup_env.sh --mmcv-wheel (all cores, CUDA ops for this GPU's compute
# capability only) while the AMP checks (no mmcv needed) run, then runs the rest.
# Outputs (table, rows, logs, the results file) go to $GPU_CHECK_OUT, else
# $OUT, else work_dirs/gpu_check/; the results file is results/benchmark.md
# (GPU_CHECK_RESULTS), where tools/benchmark.py --results writes too.
#
# The run stops starting checks when GPU_CHECK_BUDGET seconds (570) are near
# their end; those rows read SKIP. A second run on the same machine finds mmcv
# built (.gpu_check/, kept) and, with GPU_CHECK_ONLY="benchmark" (sections of
# tools/gpu_check.py), runs only those; the table holds both runs' rows.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.whl}
OUT_DIR=${GPU_CHECK_OUT:-${OUT:-$ROOT/work_dirs/gpu_check}}
RESULTS=${GPU_CHECK_RESULTS:-$ROOT/results/benchmark.md}
STATE=$ROOT/.gpu_check   # installed wheels, the mmcv build cache, rows: kept for a second run
SITE=$STATE/site
start=$(date +%s)
# the whole run's budget: later checks are reported SKIP rather than cut off unprinted
export GPU_CHECK_DEADLINE=$(( start + ${GPU_CHECK_BUDGET:-570} ))

log() { echo "[gpu_check.sh] $(( $(date +%s) - start )) s: $*"; }

# What the GPU machine lacks: the toolboxes at setup.cfg's pins, timm (the
# machine's may be another minor version) and what they import, pinned. Pure Python
# except pycocotools, shapely and wcwidth (cp312 / abi3 manylinux wheels);
# importlib-metadata 8 needs only zipp, which is there. setuptools < 81: mmcv's
# setup.py and mmengine import pkg_resources (the machine's setuptools may be newer).
PACKAGES=(mmengine==0.10.7 mmsegmentation==1.2.2 mmdet==3.3.0 mmpretrain==1.2.0 timm==1.0.31
          addict==2.4.0 termcolor==3.3.0 yapf==0.43.0 platformdirs==4.14.8 ftfy==6.3.1 wcwidth==0.9.4
          prettytable==3.18.0 terminaltables==3.1.10 mat4py==0.6.0 model-index==0.1.11 ordered-set==4.1.0
          importlib-metadata==8.7.0 pycocotools==2.0.11 shapely==2.2.0 setuptools==80.10.2)

fetch_wheels() {
  mkdir -p "$WHEELS"
  local pip=("$PY" -m pip --disable-pip-version-check -q download --no-deps -d "$WHEELS")
  local binary=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
                --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  for spec in "${PACKAGES[@]}"; do
    # a package published as an sdist only is pure Python here: built into a wheel
    "${pip[@]}" "${binary[@]}" "$spec" 2>/dev/null \
      || "$PY" -m pip --disable-pip-version-check -q wheel --no-deps -w "$WHEELS" "$spec" || {
      echo "[gpu_check.sh] error: no Python 3.12 x86-64 wheel of $spec" >&2; return 1; }
  done
  bash "$ROOT/tools/setup_env.sh" --download-mmcv "$WHEELS" >/dev/null || return 1
  local mib
  mib=$(du -sm "$WHEELS" | cut -f1)
  log "wheels in $WHEELS: $(ls "$WHEELS" | wc -l) files, $mib MiB"
  if (( mib > 56 )); then  # a device run carries 64 MiB in all, the working tree included
    echo "[gpu_check.sh] error: $WHEELS holds $mib MiB: a device run carries at most 64 MiB in all" >&2
    return 1
  fi
}

case ${1:-} in
  --fetch-wheels) fetch_wheels; exit $? ;;
  --cpu) mode=cpu; shift ;;
  *) mode=auto ;;
esac
mkdir -p "$OUT_DIR"
# scratch (data, work dirs) outside $OUT: a device run returns only a few files from there
WORK=${GPU_CHECK_WORK:-$( [[ -n ${OUT:-} ]] && echo "$STATE/work" || echo "$OUT_DIR/work" )}
if [[ $mode == auto ]] && "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  mode=cuda
fi
log "mode $mode; $("$PY" -c 'import platform, torch; print("Python", platform.python_version(), "torch", torch.__version__)')"

if [[ $mode == cpu ]]; then
  ROWS=$OUT_DIR/rows.jsonl
  rm -f "$ROWS"
  "$PY" tools/gpu_check.py --device cpu --rows "$ROWS" --work-dir "$WORK" "$@" | tee "$OUT_DIR/table.md"
  rc=${PIPESTATUS[0]}
  log "done (rc $rc)"
  exit "$rc"
fi

nvidia-smi -L 2>/dev/null || true
mkdir -p "$STATE"
ROWS=$STATE/rows.jsonl
[[ -n ${GPU_CHECK_ONLY:-} ]] || rm -f "$ROWS"   # a first run starts a new table
export PYTHONPATH=$STATE/densekit:$SITE${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
build_pid=
if ! "$PY" -c 'import mmcv._ext, mmengine, mmseg, mmdet, mmpretrain' 2>/dev/null; then
  shopt -s nullglob
  wheels=("$WHEELS"/*.whl)
  sdist=("$WHEELS"/mmcv-*.tar.gz)
  if (( ${#wheels[@]} == 0 || ${#sdist[@]} == 0 )); then
    echo "[gpu_check.sh] error: $WHEELS has no wheels or no mmcv sdist: fill it with 'bash tools/gpu_check.sh --fetch-wheels' where there is network, and carry it (.whl)" >&2
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "${wheels[@]}" || exit 2
  # Python 3.12 has no distutils, which mmengine's Runner imports (collect_env): setuptools'
  # shim provides it, switched on by a .pth file that a --target directory does not run
  if ! "$PY" -c 'import distutils' 2>/dev/null; then
    echo "__import__('_distutils_hack').add_shim()  # tools/gpu_check.sh: distutils for mmengine" \
      > "$SITE/sitecustomize.py"
  fi
  "$PY" -c 'import distutils.errors, pkg_resources' || exit 2
  log "installed ${#wheels[@]} wheels into $SITE; building mmcv in the background (log: $OUT_DIR/mmcv_build.log)"
  ( time MMCV_SDIST=${sdist[0]} PYTHON=$PY DENSEKIT_CACHE=$STATE/cache MAX_JOBS=$(nproc) \
      bash tools/setup_env.sh --mmcv-wheel > "$OUT_DIR/mmcv_wheel.txt" ) > "$OUT_DIR/mmcv_build.log" 2>&1 &
  build_pid=$!
fi

# DenseKit itself, installed as a user would (setup.cfg maps backbones/ into densekit.backbones)
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --upgrade \
  --target "$STATE/densekit" "$ROOT" || exit 2

# the check that needs no mmcv and times nothing, while it builds (the build's 16 compilers
# would perturb the attention timings)
"$PY" tools/gpu_check.py --only amp --rows "$ROWS" --no-table --work-dir "$WORK" "$@"

sections=(mmcv attention train benchmark)
if [[ -n $build_pid ]]; then
  log "waiting for the mmcv build"
  while kill -0 "$build_pid" 2>/dev/null && (( $(date +%s) < GPU_CHECK_DEADLINE - 60 )); do sleep 2; done
  if kill -0 "$build_pid" 2>/dev/null; then
    log "mmcv still building at the budget's end: no mmcv rows; raise GPU_CHECK_BUDGET or MAX_JOBS"
    sections=(mmcv attention)
  elif ! wait "$build_pid"; then
    cp "$STATE/cache/mmcv-build-failed.log" "$OUT_DIR/mmcv_build.log" 2>/dev/null
    log "mmcv build failed: $OUT_DIR/mmcv_build.log"
    sections=(mmcv attention)
  else
    wheel=$(tail -n 1 "$OUT_DIR/mmcv_wheel.txt")
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$wheel" || exit 2
    GPU_CHECK_MMCV_KEY="$(basename "$(dirname "$wheel")"), built in $(grep -m1 '^real' "$OUT_DIR/mmcv_build.log" | cut -f2)"
    export GPU_CHECK_MMCV_KEY
    log "mmcv installed: $GPU_CHECK_MMCV_KEY"
  fi
fi
"$PY" tools/gpu_check.py --only "${sections[@]}" --rows "$ROWS" --results "$RESULTS" \
  --work-dir "$WORK" "$@" | tee "$OUT_DIR/table.md"
rc=${PIPESTATUS[0]}
cp "$RESULTS" "$ROWS" "$OUT_DIR/" 2>/dev/null
for f in train.log benchmark.log; do cp "$WORK/$f" "$OUT_DIR/" 2>/dev/null; done
log "done (rc $rc); outputs in $OUT_DIR"
exit "$rc"
