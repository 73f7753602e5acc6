#!/usr/bin/env bash
# The prepared runs for a lent GPU machine, in three parts that each fit one 10-minute call.
# Results land under $OUT (at most 8 files come back from the device tool). Usage there
# (PyTorch and Triton come with the machine's python3; carry .whl/ with pydantic's wheels):
#   PART=1 bash bench/device_check.sh   # CUDA exactness tests (1000 and 10,000 neurons), the benchmark,
#                                       # the split catch-up's timing and exactness (~7 min, one call)
#   PART=2 bash bench/device_check.sh   # issue 4's numbers (60 s vs 6 s memory, monitor overhead,
#                                       # checkpoint times), the main job, the full-size experiment (~7 min)
#   PART=3 bash bench/device_check.sh   # finer: per-step profile, a synapse-statistics sample's cost,
#                                       # GPU time per kernel, block-size variants (~4 min)
set -uo pipefail
OUT=${OUT:-/tmp/wmnet-device}
PART=${PART:-1}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import pydantic" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
WMNET=(python3 -c "from wmnet.cli import main; main()")  # an array: `timeout` cannot run a function

if [ "$PART" = 1 ]; then
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, triton, numba, pydantic; print('torch', torch.__version__, 'triton', triton.__version__, 'numba', numba.__version__, 'pydantic', pydantic.__version__)"
    git log -1 --format='commit %h %s' 2>/dev/null; } 2>&1 | tee "$OUT/gpu.txt"
  # 1. Exactness on CUDA: the GPU-parametrised tests (float64 against the reference in three
  #    plasticity modes at 1000 neurons, with small launch shapes and the split catch-up too, and
  #    at 10,000 neurons, where every kernel runs many programs; float32, graphs/determinism,
  #    stop-and-resume bitwise on the GPU). --durations: the slowest, to size the next check.
  timeout 280 python3 -m pytest -q -rs --durations=8 tests/test_equivalence.py tests/test_checkpoint.py \
    -k "cuda or gpu" 2>&1 | tee "$OUT/tests-cuda.log"
  # 2. Benchmark: default (float atomics and deterministic), low activity, scale points, reference.
  timeout 170 python3 bench/bench.py --device cuda --points default,default_det,low,scale100k,scale1M \
    --duration 1000 --ref-duration 20 --json "$OUT/bench-cuda.json" 2>&1 | tee "$OUT/bench-cuda.log"
  # 3. The split catch-up ((row, block) items) against whole rows: µs per step, and bitwise
  #    equal in float64 deterministic mode? Switch it on in Blocks if faster and exact.
  timeout 90 python3 bench/gpu_profile.py split 2>&1 | grep -v Warn | tee "$OUT/split.log"
elif [ "$PART" = 3 ]; then
  log="$OUT/part3.log"
  # Where a step's time goes (graph vs eager vs the synapse kernel alone).
  timeout 60 python3 bench/gpu_profile.py time 2>&1 | grep -v Warn | tee -a "$log"
  timeout 40 python3 bench/gpu_profile.py sample 2>&1 | grep -v Warn | tee -a "$log"
  timeout 60 python3 bench/gpu_profile.py kernels 2>&1 | grep -v Warn | tee -a "$log"
  timeout 90 python3 bench/gpu_profile.py tune 2>&1 | grep -v Warn | tee -a "$log"
else
  log="$OUT/part2.log"
  # 4. Issue 4: peak host and device memory, 60 s against 6 s of the default network, every spike.
  timeout 250 python3 bench/memory_growth.py --set device=cuda --json "$OUT/memory-cuda.json" 2>&1 | tee -a "$log"
  # 5. Issue 4: each monitor's overhead, and checkpoint write/load times.
  timeout 100 python3 bench/monitor_overhead.py --device cuda --duration 5000 2>&1 | tee -a "$log"
  timeout 30 python3 bench/checkpoint_time.py --device cuda 2>&1 | tee -a "$log"
  # 6. The main job, as the README runs it (default network, 1000 ms, results and plots).
  ( time timeout 50 "${WMNET[@]}" run --out /tmp/wmnet-run ) 2>&1 | tail -5 | tee -a "$log"
  cp /tmp/wmnet-run/run.json "$OUT/run.json" 2>/dev/null
  # 7. The working-memory experiment at full size (docs/tutorial.md has the CPU-run numbers).
  ( time timeout 150 "${WMNET[@]}" run configs/working_memory.yaml --out /tmp/wmnet-wm --quiet ) 2>&1 | tail -8 | tee -a "$log"
  (cd /tmp/wmnet-wm 2>/dev/null && tar czf "$OUT/wm.tar.gz" run.json epoch_rates.tsv events.tsv figures 2>/dev/null)
fi
