#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install longva-plugins into it, with the
# exact versions of requirements/lock.txt (what CI tests is what a newcomer gets).
#
#   LONGVA_VENV   where the environment lives (default: .venv in the repository)
#   LONGVA_LOCK   the lock file whose versions are installed (default: requirements/lock.txt);
#                 "none" installs the newest releases the ranges in pyproject.toml allow
#                 (scripts/deps.py uses that to refresh the lock and for the drift check)
#   LONGVA_TORCH  the torch requirement installed first (default: the lock's torch pin, else
#                 torch==2.13.0, the CPU build this machine's pip offers from its local wheels;
#                 "skip" keeps whatever torch the environment already has)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LONGVA_VENV:-.venv}"
LOCK="${LONGVA_LOCK:-requirements/lock.txt}"
if [ "$LOCK" != "none" ] && [ ! -f "$LOCK" ]; then
  echo "[bootstrap] lock file $LOCK not found (set LONGVA_LOCK=none to install from the ranges)" >&2
  exit 2
fi
LOCKED_TORCH=""
if [ "$LOCK" != "none" ]; then
  LOCKED_TORCH="$(grep -E '^torch==' "$LOCK" | head -n 1 || true)"
fi
TORCH_REQ="${LONGVA_TORCH:-${LOCKED_TORCH:-torch==2.13.0}}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q)

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if [ "$TORCH_REQ" != "skip" ]; then
    echo "[bootstrap] installing $TORCH_REQ first (so nothing else pulls a multi-GB CUDA build)"
    "${PIP[@]}" "$TORCH_REQ"
  fi
fi

STAMP="$VENV/.longva-installed"
if ! "$PY" -c "import longva_plugins, lmms_eval, pytest" >/dev/null 2>&1 \
   || [ pyproject.toml -nt "$STAMP" ] || { [ "$LOCK" != "none" ] && [ "$LOCK" -nt "$STAMP" ]; } \
   || [ "$(cat "$STAMP" 2>/dev/null)" != "$LOCK" ]; then
  # Hold the installed torch fixed: otherwise the resolver may "upgrade" it to satisfy the newest
  # torchvision that lmms-eval asks for, swapping a working torch for a multi-GB CUDA build.
  CONSTRAINTS="$VENV/constraints.txt"
  : > "$CONSTRAINTS"
  if "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -c "import torch; print('torch==' + torch.__version__.split('+')[0])" >> "$CONSTRAINTS"  # no local label (+cpu, +cu130): pip cannot match it with the cap of /etc/xdg/pip
  fi
  if [ "$LOCK" != "none" ]; then
    echo "[bootstrap] installing longva-plugins (editable) with the versions of $LOCK"
    grep -v -E '^(torch==|#|$)' "$LOCK" >> "$CONSTRAINTS"
  else
    echo "[bootstrap] installing longva-plugins (editable) with the newest releases its ranges allow"
  fi
  "${PIP[@]}" -c "$CONSTRAINTS" -e ".[dev]"
  echo "$LOCK" > "$STAMP"
fi

# PyPI's torchvision wheels are CUDA builds: beside a CPU torch they fail to import
# ("operator torchvision::nms does not exist") and that failure breaks transformers' image
# processors. lmms-eval lists torchvision but none of the code paths used here need it, so a
# torchvision that cannot be imported is removed; transformers then uses its PIL processors.
if "$PY" -m pip show torchvision >/dev/null 2>&1 && ! "$PY" -c "import torchvision" >/dev/null 2>&1; then
  echo "[bootstrap] removing a torchvision that cannot load beside this torch ($("$PY" -c 'import torch; print(torch.__version__)'))"
  # remembered for scripts/deps.py, which writes it into the lock so the install stays exact
  "$PY" -c "import importlib.metadata as m; print('torchvision==' + m.version('torchvision'))" > "$VENV/.removed-torchvision"
  "$PY" -m pip uninstall -y -q torchvision
fi
# An editable install gets no start-up hook (the wheel ships longva_plugins_startup.pth; hatchling's
# editable wheel carries only the path file): put the same one-line file in place, so that this
# environment behaves as a user's -- lmms-eval tasks list and transformers' Auto classes see
# longva-plugins without it being imported.
PURELIB="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cmp -s src/longva_plugins_startup.pth "$PURELIB/longva_plugins_startup.pth" || cp src/longva_plugins_startup.pth "$PURELIB/"
echo "[bootstrap] ready: $("$PY" -c 'import torch, transformers, lmms_eval.api; import importlib.metadata as m; print("torch", torch.__version__, "| transformers", transformers.__version__, "| lmms-eval", m.version("lmms_eval"), "| filelock", m.version("filelock"))')"
