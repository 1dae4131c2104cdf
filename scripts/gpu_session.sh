#!/usr/bin/env bash
# Issue #8's GPU measurements as one device call: the three targets first (GPT-2 124M, 350M, 1.5B
# baselines), then the levers most likely to matter, then a profile and the rest. It starts no benchmark
# after SECONDS (default 480) and stops one still running then, so the call returns its figures inside
# the device tool's 600 s per call and a session's 15 minutes of device time, machine start included.
#
#   scripts/gpu_session.sh OUTDIR [SECONDS]
#
# Appends each benchmark's record to OUTDIR/{124m,350m,1558m}.jsonl as it ends, logs to OUTDIR/log.txt and
# the call's output, copies the profile's trace to OUTDIR when it is small enough to come back, and prints
# the tables last.
# Where ml_collections is missing (the GPU image) it first installs the wheels that
# scripts/device_wheels.sh put in .whl/ (the call carries .whl).
set -uo pipefail

if [[ $# -lt 1 ]]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
out=$1 budget=${2:-480}
cd "$(dirname "$0")/.."
mkdir -p "$out" || exit 2
export LEVERS_UNTIL=$(( $(date +%s) + budget ))
if ! python3 -c "import ml_collections" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "error: could not install .whl/*.whl (run scripts/device_wheels.sh first and carry .whl)" >&2; exit 2; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95} PYTHONUNBUFFERED=1
# The profile lever compiles the 124M baseline's program again: the cache saves it that compile.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/scaling-jax-cache}
export PROFILE_DIR=$(mktemp -d)  # this call's trace only
trap 'rm -rf "$PROFILE_DIR"' EXIT

status=0
levers() {  # SIZE LEVER...: the levers of configs/gpt2.py:SIZE-bench, each the median of 20 steps (issue #8)
  local size=$1
  shift
  BENCH_ARGS="--batch 16 --steps 20 --warmup 3" bash scripts/gpu_levers.sh "configs/gpt2.py:$size-bench" \
    "$out/$size.jsonl" "$@" 2>&1 | tee -a "$out/log.txt" || status=1
}
levers 124m baseline
levers 350m baseline
levers 1558m baseline
levers 124m xla-attention scan remat-dots chunked-ce batch32
levers 124m profile
levers 350m remat-dots chunked-ce
levers 1558m remat-dots
levers 124m bf16-moments scan-unroll2 remat-full no-triton-gemm no-command-buffer

trace=$(ls "$PROFILE_DIR"/plugins/profile/*/perfetto_trace.json.gz 2>/dev/null | head -1)
if [[ -n $trace ]] && (( $(stat -c %s "$trace") < 16 * 1024 * 1024 )); then
  cp "$trace" "$out/profile.perfetto_trace.json.gz"
fi
for size in 124m 350m 1558m; do
  if [[ -s $out/$size.jsonl ]]; then
    echo "## $size"
    python3 -m scaling.bench --table "$out/$size.jsonl"
  fi
done
exit $status
