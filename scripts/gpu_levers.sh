#!/usr/bin/env bash
# Throughput levers of issue #8, one benchmark process per lever (XLA flags only take effect in a new
# process), each appending its figures as a JSON line to OUT.
#
#   scripts/gpu_levers.sh CONFIG OUT.jsonl [LEVER ...]
#   scripts/gpu_levers.sh configs/gpt2.py:124m-bench runs/levers.jsonl baseline xla-attention scan
#
# LEVERs (default: all, in this order): baseline xla-attention scan scan-unroll2 remat-dots remat-full
# chunked-ce bf16-moments batch32 no-triton-gemm no-command-buffer; also profile (the baseline with its
# longest kernels printed and recorded; trace under PROFILE_DIR, default /tmp/scaling-profile).
# BENCH_ARGS adds arguments to every run (default "--batch 16 --steps 20 --warmup 3"; "--batch 16
# --target h100" compiles each lever for an H100 on a machine without one: memory and kernels, no
# timing). LEVERS_UNTIL (seconds since the epoch) is a deadline: a lever that would start after it is
# skipped, one still running at it is stopped, and the table of what was measured still prints.
# `python3 -m scaling.bench --table OUT` prints the table.
set -uo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,15p' "$0" >&2
  exit 2
fi
config=$1 out=$2
shift 2
levers=("$@")
if [[ ${#levers[@]} -eq 0 ]]; then
  levers=(baseline xla-attention scan scan-unroll2 remat-dots remat-full chunked-ce bf16-moments batch32
          no-triton-gemm no-command-buffer)
fi
read -ra common <<< "${BENCH_ARGS:---batch 16 --steps 20 --warmup 3}"

status=0
for lever in "${levers[@]}"; do
  flags=${XLA_FLAGS:-}
  case $lever in
    baseline) args=() ;;
    xla-attention) args=(--config.model.attention=xla) ;;
    scan) args=(--config.model.scan_layers=true) ;;
    scan-unroll2) args=(--config.model.scan_layers=true --config.model.scan_unroll=2) ;;
    remat-dots) args=(--config.model.remat=dots) ;;
    remat-full) args=(--config.model.remat=full) ;;
    chunked-ce) args=(--config.model.logits_chunk=256) ;;
    bf16-moments) args=(--config.optim.moments_dtype=bfloat16) ;;
    batch32) args=(--batch 32) ;;
    no-triton-gemm) args=(); flags="$flags --xla_gpu_enable_triton_gemm=false" ;;
    no-command-buffer) args=(); flags="$flags --xla_gpu_enable_command_buffer=" ;;
    profile) args=(--profile "${PROFILE_DIR:-/tmp/scaling-profile}") ;;
    *) echo "error: unknown lever '$lever' (see the top of $0)" >&2; exit 2 ;;
  esac
  limit=()
  if [[ -n ${LEVERS_UNTIL:-} ]]; then
    left=$(( LEVERS_UNTIL - $(date +%s) ))
    if (( left < 1 )); then
      echo "== $lever skipped: past LEVERS_UNTIL" >&2
      continue
    fi
    limit=(timeout -k 10 "$left")
  fi
  echo "== $lever" >&2
  XLA_FLAGS="$flags" "${limit[@]}" python3 -m scaling.bench --config="$config" --label "$lever" \
    "${common[@]}" "${args[@]}" --json "$out"
  code=$?
  if (( code == 124 || code == 137 )) && (( ${#limit[@]} )); then
    echo "== $lever stopped: still running at LEVERS_UNTIL" >&2
  elif (( code != 0 )); then
    echo "== $lever failed" >&2
    status=1
  fi
done
[[ -s $out ]] && python3 -m scaling.bench --table "$out"
exit $status
