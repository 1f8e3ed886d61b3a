#!/bin/bash
# The one device command of the GPU check (benchmarks/gpu/check.py); carry .whl .gpu_cache .gpu_ref,
# made here by python3 benchmarks/gpu/prepare.py. Everything it writes is under $OUT.
set -o pipefail
cd "$(dirname "$0")/../.."
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 benchmarks/gpu/check.py --out "$OUT" --budget "${BUDGET:-420}" 2>&1 | tee "$OUT/log.txt"
