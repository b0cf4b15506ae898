#!/usr/bin/env bash
# Set up the environment (scripts/bootstrap.sh) and run the main job: V-NIAH through lmms-eval,
# offline, on the shipped LongVA-nano checkpoint (trained on long text and short images only) and
# the synthetic haystack video, 10 to 250 frames.
# Extra arguments go to `longva-plugins demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "${LONGVA_VENV:-.venv}/bin/longva-plugins" demo "$@"
