#!/usr/bin/env bash
# LongVA-nano from scratch, one command (2 CPU cores: about 35 minutes):
#   bash examples/nano/run_recipe.sh [--out outputs/nano] [--install]
# Sets up the environment (scripts/bootstrap.sh), adds scikit-image for its sample photographs
# (the photo haystack), then runs examples/nano/recipe.py with the arguments given.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/bootstrap.sh
VENV="${LONGVA_VENV:-.venv}"
"$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('skimage') is None)" \
  || "$VENV/bin/python" -m pip install --disable-pip-version-check -q -c "$VENV/constraints.txt" "scikit-image>=0.22"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$VENV/bin/python" examples/nano/recipe.py "$@"
