#!/usr/bin/env bash
# Set up the environment (scripts/bootstrap.sh) and run the whole test suite, offline.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m golden`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "${LONGVA_VENV:-.venv}/bin/python" -m pytest "$@"
