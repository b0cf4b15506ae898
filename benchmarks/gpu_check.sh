#!/usr/bin/env bash
# The GPU checks in one call, on a bare accelerator machine or in this project's environment.
#
#   bash benchmarks/gpu_check.sh --out DIR              # CUDA: tests, ring bench, nano V-NIAH, 7B-shaped cell
#   bash benchmarks/gpu_check.sh --out DIR --dry-run    # the same path on CPU at small sizes
#
# Python: $LONGVA_PYTHON, else .venv/bin/python after scripts/bootstrap.sh, else python3 (the GPU
# image's, which holds torch 2.11 and transformers 5.17). When .whl/ (scripts/gpu_wheels.sh, or
# $LONGVA_WHEELS) holds wheels, they are installed offline with `pip --target` into a scratch folder
# put first on PYTHONPATH -- nothing is downloaded and the machine's packages are not touched.
# Then benchmarks/gpu_check.py runs the steps (each with its own time limit, about 8 minutes in all
# on one H200) and writes report.json, report.md and gpu_check.log into DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${LONGVA_PYTHON:-}"
if [ -z "$PY" ]; then
  PY="${LONGVA_VENV:-.venv}/bin/python"
  [ -x "$PY" ] || PY=python3
fi
WHEELS="${LONGVA_WHEELS:-.whl}"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  TARGET="${LONGVA_WHEEL_TARGET:-${TMPDIR:-/tmp}/longva-gpu-site}"
  rm -rf "$TARGET"
  echo "[gpu_check] installing $(ls "$WHEELS"/*.whl | wc -l) carried wheels from $WHEELS into $TARGET (offline, --no-deps)"
  if ! "$PY" -m pip install --disable-pip-version-check -q --no-index --no-deps --target "$TARGET" "$WHEELS"/*.whl; then
    PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    echo "[gpu_check] the wheels in $WHEELS do not install into $PY (Python $PYVER); build matching ones with" \
         "bash scripts/gpu_wheels.sh --dest DIR --python-version $PYVER and set LONGVA_WHEELS=DIR" >&2
    exit 2
  fi
  export PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" LONGVA_WHEEL_TARGET="$TARGET"
  export PATH="$TARGET/bin:$PATH"
fi
exec "$PY" benchmarks/gpu_check.py "$@"
