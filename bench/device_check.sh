#!/usr/bin/env bash
# One prepared run for a lent GPU machine: versions, CUDA tests, the main job, the benchmark.
# Results land under $OUT. Usage there (PyTorch and Triton come with the machine's python3):
#   bash bench/device_check.sh            # carry .whl/ with pydantic's wheels if it lacks them
set -uo pipefail
OUT=${OUT:-/tmp/wmnet-device}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import pydantic" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, numba, pydantic; print('torch', torch.__version__, 'triton', triton.__version__, 'numba', numba.__version__, 'pydantic', pydantic.__version__)" | tee -a "$OUT/gpu.txt"
# 1. Exactness on CUDA (the GPU-parametrised tests only: the CPU ones ran in CI).
timeout ${TEST_TIMEOUT:-120} python3 -m pytest -q -rs -x tests/test_equivalence.py -k "cuda or gpu" 2>&1 | tee "$OUT/tests-cuda.log"
# 2. Benchmark: default (float atomics and deterministic), low activity, scale points, reference.
timeout ${BENCH_TIMEOUT:-200} python3 bench/bench.py --device cuda --points ${POINTS:-default,default_det,low,scale100k,scale1M} \
  --duration 1000 --ref-duration 20 --json "$OUT/bench-cuda.json" 2>&1 | tee "$OUT/bench-cuda.log"
# 3. The main job, as the README runs it (default network, 1000 ms, results and plots).
( time timeout 90 python3 -c "from wmnet.cli import main; main()" run --out /tmp/wmnet-run ) 2>&1 | tail -5 | tee "$OUT/run.log"
cp /tmp/wmnet-run/run.json "$OUT/run.json" 2>/dev/null
# 4. Where a step's time goes (graph vs eager vs the synapse kernel alone).
timeout 90 python3 bench/gpu_profile.py time 2>&1 | grep -v Warn | tee "$OUT/profile.log"
# 5. The working-memory experiment at full size (docs/tutorial.md has its CPU-run numbers to compare).
( time timeout ${WM_TIMEOUT:-150} python3 -c "from wmnet.cli import main; main()" run configs/working_memory.yaml \
    --out /tmp/wmnet-wm --quiet ) 2>&1 | tail -8 | tee "$OUT/working_memory.log"
for f in run.json epoch_rates.tsv events.tsv figures/trials.png figures/learning.png; do
  cp "/tmp/wmnet-wm/$f" "$OUT/wm_$(basename "$f")" 2>/dev/null
done
