#!/usr/bin/env bash
# GPU check: runs the project's GPU tests and GPU benchmarks in one go on a CUDA machine that
# has torch but no network, prints a short table and keeps full logs under $OUT (default
# gpu_logs/). Target: under 5 minutes on one H100/H200. The whole script stays within
# BUDGET_S seconds (default 540): each step gets its own limit or what is left, whichever is
# less, so one slow step cannot push the run past a fixed time slot.
#
#   bash benchmarks/gpu_check.sh
#   BUDGET_S=300 OUT=/tmp/gpu bash benchmarks/gpu_check.sh
#   ONLY=sampler_throughput BUDGET_S=330 bash benchmarks/gpu_check.sh   # just the named steps
#
# Steps (ONLY takes a comma-separated list of these names): pytest_gpu, sampler_throughput,
# sampler_speed, metrics_speed, train_speed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_logs}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
TABLE="$OUT/summary.txt"
: > "$TABLE"
BUDGET_S="${BUDGET_S:-540}"
ONLY="${ONLY:-}"
START_S=$SECONDS
# wanted NAME: true if ONLY is empty or lists NAME
wanted() { [[ -z "$ONLY" || ",$ONLY," == *",$1,"* ]]; }

row() { printf '%-44s %s\n' "$1" "$2" | tee -a "$TABLE"; }
# limit SECONDS: this step's own limit, or what is left of the budget if that is less (at least 1)
limit() { local left=$(( BUDGET_S - (SECONDS - START_S) )); (( left < 1 )) && left=1; (( $1 < left )) && echo "$1" || echo "$left"; }

# torch-fidelity may be missing on a bare CUDA machine: install it from wheels carried in .whl/
# (pip download torch-fidelity on a networked machine), without touching the machine's torch.
if ! python3 -c "import torch_fidelity" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/hvqeval_site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/hvqeval_site"
fi

python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), 'torch', torch.__version__)" \
  2>&1 | tee "$OUT/device.log" || { echo "no CUDA device: nothing to check"; exit 1; }

# 1. GPU tests
if wanted pytest_gpu; then
  timeout "$(limit 150)" python3 -m pytest -q -m gpu tests -p no:cacheprovider > "$OUT/pytest_gpu.log" 2>&1
  row "pytest -m gpu" "$(tail -n 1 "$OUT/pytest_gpu.log")"
fi

# 2. GPU benchmarks (each prints one 'RESULT <name> <value>' line per number)
run_bench() {
  local name=$1 seconds=$2; shift 2
  wanted "$name" || return 0
  timeout "$(limit "$seconds")" "$@" > "$OUT/$name.log" 2>&1
  local status=$?
  if grep -q '^RESULT' "$OUT/$name.log"; then
    grep '^RESULT' "$OUT/$name.log" | while read -r _ key value; do row "$key" "$value"; done
  else
    row "$name" "failed (exit $status), see $OUT/$name.log"
  fi
}
# Benchmarks register themselves below: run_bench NAME SECONDS python3 benchmarks/X.py --gpu ...
# Sampling throughput (issue 16): imagenet128_ff at the largest batch that fits (target >= 55
# samples/s, peak memory), then imagenet256_ff (two levels + prior), 9 samples (target <= 60 s).
run_bench sampler_throughput 300 python3 benchmarks/sampler_speed.py --gpu-throughput
# Sampling (Appendix C): cached vs naive on imagenet128_ff at real size, 25 samples end to end.
run_bench sampler_speed 300 python3 benchmarks/sampler_speed.py --gpu
# Evaluation: IS+FID of 50k 128x128 samples vs cached reference stats (strict fp32, target <= 30 s);
# exact 10-NN of 4,096 vs 1.28M 4096-d features (target <= 1 s).
run_bench metrics_speed 240 python3 benchmarks/metrics_speed.py --gpu

# Training (Appendix A): 128x128 level-1 autoencoders (64x64 crops) and the Table-4 prior,
# bf16 autocast vs fp32 images/s and peak memory.
run_bench train_speed 240 python3 benchmarks/train_speed.py --gpu

row "total seconds" "$(( SECONDS - START_S )) of a $BUDGET_S s budget"
echo
echo "summary written to $TABLE"
