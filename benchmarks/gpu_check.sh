#!/usr/bin/env bash
# The GPU checks, ready for the day a CUDA device is lent (about 10 minutes on one H100/H200):
# the GPU-marked tests, the attention benchmark at long lengths, and one long V-NIAH cell of a
# random model with LongVA-7B's shapes (bf16) with its peak memory against the memory model.
# On a machine without CUDA it says so and exits 0.
#   bash benchmarks/gpu_check.sh            (after scripts/bootstrap.sh, or in any env with longva-plugins)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${LONGVA_VENV:-.venv}/bin/python"
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device here; these checks need a GPU (the CPU suite is scripts/test.sh)"
  exit 0
fi
"$PY" - <<'PYEOF'
import torch
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| bf16:", torch.cuda.is_bf16_supported())
try:
    import flash_attn
    print("flash-attn", flash_attn.__version__)
except ImportError:
    print("flash-attn not installed: flash tests skip (pip install 'longva-plugins[gpu]')")
PYEOF
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$PY" -m pytest -q -m gpu -p no:cacheprovider tests
"$PY" benchmarks/bench_ring_attention.py --device cuda --lengths 4096,16384,65536 --dtype bfloat16 --no-ranks
"$PY" benchmarks/gpu_vniah_cell.py --frames 1000
