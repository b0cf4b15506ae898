#!/usr/bin/env bash
# The GPU checks, ready for the day a CUDA device is lent: GPU-marked tests, then the attention
# benchmark at long lengths on the device. Prints what it runs; exits non-zero on a failed test.
#   bash benchmarks/gpu_check.sh            (after scripts/bootstrap.sh, or in any env with longva-plugins)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${LONGVA_VENV:-.venv}/bin/python"
[ -x "$PY" ] || PY=python3
"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "no CUDA device: nothing to check (run the CPU suite with scripts/test.sh)"
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
