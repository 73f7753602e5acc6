#!/usr/bin/env bash
# One prepared run for a lent GPU machine: CUDA tests, then the benchmark, results under $OUT.
# Usage there:  bash bench/device_check.sh    (expects .venv carried, or torch on the machine)
set -uo pipefail
OUT=${OUT:-/tmp/wmnet-device}
mkdir -p "$OUT"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
$PY -m pytest -q -rs tests/test_equivalence.py 2>&1 | tee "$OUT/tests-cuda.log"
$PY bench/bench.py --device cuda --points default,low --duration 200 --json "$OUT/bench-cuda.json" 2>&1 | tee "$OUT/bench-cuda.log"
