#!/usr/bin/env bash
# Download, here, the wheels an accelerator machine lacks for the GPU checks (benchmarks/gpu_check.sh):
# the distributions listed in requirements/gpu-wheels.txt at requirements/lock.txt's versions, as
# CPython wheels for one Python / platform (--no-deps, one version each), plus longva-plugins itself
# built from this checkout. They go into an ignored folder that `run --carry` takes along.
#
#   bash scripts/gpu_wheels.sh                 # .whl/, py3.12 manylinux x86-64 (the GPU image's python3)
#   bash scripts/gpu_wheels.sh --dest DIR --python-version 3.11   # e.g. for a dry run on this machine
#
# Prints each wheel and the total; exits 1 when the total is over the carry budget (60 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.whl
PYVER=3.12
BUDGET_MIB=60
while [ $# -gt 0 ]; do
  case "$1" in
    --dest) DEST="$2"; shift 2 ;;
    --python-version) PYVER="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "gpu_wheels: unknown argument $1 (allowed: --dest DIR, --python-version X.Y)" >&2; exit 2 ;;
  esac
done
PY="${LONGVA_VENV:-.venv}/bin/python"
[ -x "$PY" ] || PY=python3
ABI="cp${PYVER/./}"
rm -rf "$DEST.partial" && mkdir -p "$DEST.partial"
PINS=()
while read -r name; do
  pin="$(grep -i -E "^${name//-/[-_.]}==" requirements/lock.txt | head -n 1 || true)"
  if [ -z "$pin" ]; then
    echo "gpu_wheels: $name (requirements/gpu-wheels.txt) has no pin in requirements/lock.txt" >&2
    exit 2
  fi
  PINS+=("$pin")
done < <(grep -v -E '^(#|$)' requirements/gpu-wheels.txt)
PIP=("$PY" -m pip --disable-pip-version-check -q)
for pin in "${PINS[@]}"; do
  if ! "${PIP[@]}" download --no-deps --only-binary=:all: --dest "$DEST.partial" --python-version "$PYVER" \
       --implementation cp --abi "$ABI" --abi abi3 --abi none \
       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
       --platform any "$pin" 2>/dev/null; then
    # no wheel published (an sdist only): build it here; such packages are pure Python
    "${PIP[@]}" wheel --no-deps --wheel-dir "$DEST.partial" "$pin"
  fi
done
"${PIP[@]}" wheel --no-deps --wheel-dir "$DEST.partial" .
rm -rf "$DEST" && mv "$DEST.partial" "$DEST"
"$PY" - "$DEST" "$BUDGET_MIB" <<'PYEOF'
import sys
from pathlib import Path
dest, budget = Path(sys.argv[1]), float(sys.argv[2])
wheels = sorted(dest.glob("*.whl"))
total = sum(w.stat().st_size for w in wheels)
for w in wheels:
    print(f"{w.stat().st_size / 2**20:8.2f} MiB  {w.name}")
print(f"{len(wheels)} wheels, {total / 2**20:.1f} MiB in {dest} (budget {budget:.0f} MiB)")
sys.exit(0 if total <= budget * 2**20 else 1)
PYEOF
