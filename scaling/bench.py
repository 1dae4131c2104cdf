"""Throughput benchmark of the training step that `scaling.train` runs.

  python -m scaling.bench --config=configs/gpt2.py:124m-bench [--batch 16] [--steps 20] [--config.x=y ...]
                           [--json results.jsonl --label NAME]
  python -m scaling.bench --table results.jsonl

Synthetic tokens, the config's sequence length and dtypes, AdamW: prints ms/step, tokens/s, MFU
(PaLM's 6N + 12 L H Q T FLOPs per token over the chip's peak) and peak device memory; the median of
`--steps` timed steps after `--warmup` untimed ones (the first compiles). With --json, also appends
the figures, the overrides, XLA_FLAGS and the versions as one JSON line (scripts/gpu_levers.sh);
--table prints such a file as a Markdown table (docs/perf.md).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

from scaling import config as config_lib
from scaling import flops, metrics, sharding
from scaling.errors import UserError
from scaling.steps import Trainer
from scaling.train import resolve


PROFILED_STEPS = 3


def benchmark(config, steps: int = 20, warmup: int = 3, profile: str = "") -> dict:
  """Time `steps` train steps of `config` on one fixed batch of random tokens; returns the figures.
  With `profile`, 3 more steps are traced into that directory (TensorBoard's profile plugin, Perfetto)."""
  config, _ = resolve(config)
  mesh = sharding.make_mesh(config.mesh)
  trainer = Trainer(config, mesh)
  sharding.check_batch(config, mesh, trainer.rules)
  batch_size, seq = config.train.batch_size, config.data.seq_len
  tokens = np.random.default_rng(0).integers(0, config.model.vocab_size, (batch_size, seq + 1), dtype=np.int32)
  local = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": np.ones((batch_size, seq), np.float32)}
  rows = slice(jax.process_index() * batch_size // jax.process_count(),
               (jax.process_index() + 1) * batch_size // jax.process_count())
  batch = sharding.global_batch({k: v[rows] for k, v in local.items()}, mesh, trainer.rules)
  state = trainer.init()
  start = time.perf_counter()
  state, out = trainer.train_step(state, batch)  # compiles
  jax.block_until_ready(out)
  first_step_s = time.perf_counter() - start
  for _ in range(warmup - 1):
    state, out = trainer.train_step(state, batch)
  jax.block_until_ready(out)
  # A step's time is the interval between consecutive steps' completions with the next step already
  # dispatched, as in scaling.train, which never waits for a step before dispatching the next.
  times, done = [], time.perf_counter()
  state, in_flight = trainer.train_step(state, batch)
  for _ in range(steps):
    state, following = trainer.train_step(state, batch)
    jax.block_until_ready(in_flight)
    times.append(time.perf_counter() - done)
    done += times[-1]
    in_flight = following
  out = jax.block_until_ready(in_flight)
  if profile:
    with jax.profiler.trace(profile, create_perfetto_trace=True):
      for _ in range(PROFILED_STEPS):
        state, out = trainer.train_step(state, batch)
      jax.block_until_ready(out)
  step_s = statistics.median(times)
  tokens_per_s = batch_size * seq / step_s
  per_token = flops.flops_per_token(config.model, seq)
  device = jax.local_devices()[0]
  memory = (device.memory_stats() or {}).get("peak_bytes_in_use")
  return {"config": f"{config.family}:{config.size}", "device": device.device_kind, "devices": jax.device_count(),
          "batch": batch_size, "seq_len": seq, "N": flops.param_counts(config.model)["total"],
          "first_step_s": first_step_s, "ms_per_step": 1e3 * step_s, "tokens_per_s": tokens_per_s,
          "flops_per_token": per_token,
          "mfu": metrics.mfu(per_token, tokens_per_s, jax.device_count(), device.device_kind),
          "peak_memory_bytes": memory, "final_loss": float(out["loss"])}


def top_ops(profile_dir: str, limit: int = 12) -> dict:
  """What the traced steps spent their time on, from the Perfetto trace benchmark() wrote in
  `profile_dir`: the device's kernels (the trace's /device: processes) on an accelerator, XLA's ops of
  the train step on the host's threads on a CPU. -> {'trace', 'ops_per_step', 'ms_per_step' (op time,
  summed over streams), 'top': [{'op', 'ms_per_step', 'share', 'calls_per_step'}, ...] largest first}."""
  [trace] = sorted(Path(profile_dir).glob("plugins/profile/*/perfetto_trace.json.gz"))[-1:]
  events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
  devices = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
             and str(e.get("args", {}).get("name", "")).startswith("/device:")}
  ops = [e for e in events if e.get("ph") == "X" and (
      e.get("pid") in devices if devices else "train_step" in str(e.get("args", {}).get("hlo_module", "")))]
  time, calls = collections.Counter(), collections.Counter(e["name"] for e in ops)
  for e in ops:
    time[e["name"]] += e["dur"] / 1e3 / PROFILED_STEPS  # microseconds -> ms per step
  total = sum(time.values())
  return {"trace": str(trace), "ops_per_step": len(ops) / PROFILED_STEPS, "ms_per_step": total,
          "top": [{"op": name, "ms_per_step": ms, "share": ms / total, "calls_per_step": calls[name] / PROFILED_STEPS}
                  for name, ms in time.most_common(limit)]}


def format_profile(p: dict) -> str:
  lines = [f"profile of {PROFILED_STEPS} steps ({p['trace']}): {p['ops_per_step']:,.0f} ops per step, "
           f"{p['ms_per_step']:.2f} ms of op time per step; the longest:",
           "   ms/step   share  calls/step  op"]
  lines += [f"  {o['ms_per_step']:8.3f}  {100 * o['share']:5.1f}%  {o['calls_per_step']:10.0f}  {o['op'][:100]}"
            for o in p["top"]]
  return "\n".join(lines)


def format_result(r: dict) -> str:
  mfu = "n/a (unknown peak)" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
  memory = "n/a" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**30:.2f} GiB"
  return (f"{r['config']} on {r['devices']} x {r['device']}: batch {r['batch']} x seq {r['seq_len']}, "
          f"N = {r['N']:,}\n  {r['ms_per_step']:.1f} ms/step  {r['tokens_per_s']:,.0f} tokens/s  "
          f"MFU {mfu}  peak memory {memory}  (first step, compiling: {r['first_step_s']:.1f} s)")


TABLE_FIELDS = ("label", "config", "overrides", "XLA_FLAGS", "batch", "seq_len", "ms_per_step", "tokens_per_s", "mfu",
                "peak_memory_bytes", "first_step_s")


def read_records(path: str) -> list[dict]:
  """The records of a --json file; a line that isn't one is a UserError naming the file and line."""
  try:
    with open(path) as f:
      lines = f.readlines()
  except OSError as e:
    raise UserError(f"--table {path}: {e.strerror.lower() if e.strerror else e}") from None
  records = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise UserError(f"--table {path}, line {number}: not JSON ({e.msg}); expected the JSON lines that"
                      " --json writes") from None
    missing = [k for k in TABLE_FIELDS if k not in record] if isinstance(record, dict) else list(TABLE_FIELDS)
    if missing:
      raise UserError(f"--table {path}, line {number}: not a --json record of scaling.bench (no {', '.join(missing)})")
    records.append(record)
  return records


def markdown_table(records: list[dict]) -> str:
  """One row per benchmark record: what changed, and the figures."""
  lines = ["| lever | config | changes | batch x seq | ms/step | tokens/s | MFU | peak memory | first step |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in records:
    changed = " ".join(f"`{c}`" for c in r["overrides"] + ([f"XLA_FLAGS={r['XLA_FLAGS'].strip()}"]
                                                           if r["XLA_FLAGS"].strip() else []))
    mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    memory = "n/a" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**30:.1f} GiB"
    lines.append(f"| {r['label'] or '-'} | {r['config']} | {changed or '-'} | {r['batch']} x {r['seq_len']} | "
                 f"{r['ms_per_step']:.1f} | {r['tokens_per_s']:,.0f} | {mfu} | {memory} | {r['first_step_s']:.0f} s |")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m scaling.bench", description=__doc__.split("\n", 1)[0])
  parser.add_argument("--config", help="configs/<family>.py:<size>")
  parser.add_argument("--batch", type=int, help="global batch in sequences (default: the config's)")
  parser.add_argument("--seq", type=int, help="sequence length (default: the config's)")
  parser.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
  parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (the first compiles); at least 1")
  parser.add_argument("--json", help="append the figures as one JSON line to this file")
  parser.add_argument("--label", default="", help="a name for this run in the --json record (e.g. the lever)")
  parser.add_argument("--profile", default="", help="also trace 3 steps into this directory (jax.profiler)")
  parser.add_argument("--table", help="print the records of this --json file as a Markdown table, and exit")
  args, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  extra = {"train.batch_size": args.batch, "data.seq_len": args.seq}
  try:
    if args.table:
      print(markdown_table(read_records(args.table)))
      return 0
    if not args.config:
      raise UserError("--config is required (configs/<family>.py:<size>)")
    for flag, value in (("--batch", args.batch), ("--seq", args.seq)):
      if value is not None and value < 1:
        raise UserError(f"{flag}={value} must be at least 1")
    config = config_lib.load(args.config, overrides + [f"--config.{k}={v}" for k, v in extra.items() if v is not None])
    if args.warmup < 1 or args.steps < 1:
      raise UserError(f"--warmup={args.warmup} and --steps={args.steps} must be at least 1")
    result = benchmark(config, args.steps, args.warmup, args.profile)
    print(format_result(result))
    if args.profile:
      result["profile"] = top_ops(args.profile)
      print(format_profile(result["profile"]))
    if args.json:
      record = {**result, "label": args.label, "overrides": overrides, "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
                "jax": jax.__version__, "backend": jax.default_backend()}
      with open(args.json, "a") as f:
        f.write(json.dumps(record) + "\n")
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
