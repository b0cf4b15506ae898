#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install longva-plugins into it.
#
#   LONGVA_VENV   where the environment lives (default: .venv in the repository)
#   LONGVA_TORCH  the torch requirement installed first (default: torch==2.13.0, the CPU build
#                 this machine's pip offers from its local wheels; set to "skip" to keep
#                 whatever torch the environment already has)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LONGVA_VENV:-.venv}"
TORCH_REQ="${LONGVA_TORCH:-torch==2.13.0}"

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

if ! "$PY" -c "import longva_plugins, lmms_eval, pytest" >/dev/null 2>&1 \
   || [ pyproject.toml -nt "$VENV/.longva-installed" ]; then
  echo "[bootstrap] installing longva-plugins (editable) with its dependencies"
  # Hold the installed torch fixed: otherwise the resolver may "upgrade" it to satisfy the newest
  # torchvision that lmms-eval asks for, swapping a working torch for a multi-GB CUDA build.
  CONSTRAINTS="$VENV/torch-constraint.txt"
  if "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -c "import torch; print('torch==' + torch.__version__)" > "$CONSTRAINTS"
  else
    : > "$CONSTRAINTS"
  fi
  "${PIP[@]}" -c "$CONSTRAINTS" -e ".[dev]"
  touch "$VENV/.longva-installed"
fi

# PyPI's torchvision wheels are CUDA builds: beside a CPU torch they fail to import
# ("operator torchvision::nms does not exist") and that failure breaks transformers' image
# processors. lmms-eval lists torchvision but none of the code paths used here need it, so a
# torchvision that cannot be imported is removed; transformers then uses its PIL processors.
if "$PY" -m pip show torchvision >/dev/null 2>&1 && ! "$PY" -c "import torchvision" >/dev/null 2>&1; then
  echo "[bootstrap] removing a torchvision that cannot load beside this torch ($("$PY" -c 'import torch; print(torch.__version__)'))"
  "$PY" -m pip uninstall -y -q torchvision
fi
echo "[bootstrap] ready: $("$PY" -c 'import torch, transformers, lmms_eval.api; import importlib.metadata as m; print("torch", torch.__version__, "| transformers", transformers.__version__, "| lmms-eval", m.version("lmms_eval"))')"
