"""Throughput benchmark of the training step that `scaling.train` runs.

  python -m scaling.bench --config=configs/gpt2.py:124m-bench [--batch 16] [--steps 20] [--config.x=y ...]
                           [--json results.jsonl --label NAME]
  python -m scaling.bench --config=configs/gpt2.py:124m-bench --target h100 [--devices 8]
  python -m scaling.bench --table results.jsonl

Synthetic tokens, the config's sequence length and dtypes, AdamW: prints ms/step, tokens/s, MFU
(PaLM's 6N + 12 L H Q T FLOPs per token over the chip's peak) and peak device memory; the median of
`--steps` timed steps after `--warmup` untimed ones (the first compiles). With --target, compiles the
same step for a GPU this machine need not have (JAX's CUDA plugin, no GPU) and prints what the
compiled step holds in memory and the kernels it launches. With --json, also appends the figures, the
overrides, XLA_FLAGS and the versions as one JSON line (scripts/gpu_levers.sh); --table prints such a
file as a Markdown table (docs/perf.md).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import importlib.util
import json
import math
import os
import re
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
TARGETS = Path(__file__).parent / "targets"  # GPUs to compile for by name: <name>.txtpb


def synthetic_batch(config) -> dict:
  """The global batch every benchmark step trains on: seeded random tokens, every position counted; for
  next-sentence prediction also the second segment from the middle on and random labels."""
  batch_size, seq = config.train.batch_size, config.data.seq_len
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, config.model.vocab_size, (batch_size, seq + 1), dtype=np.int32)
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": np.ones((batch_size, seq), np.float32)}
  if config.objective == "mlm_nsp":
    batch["segments"] = np.repeat((np.arange(seq) >= seq // 2).astype(np.int32)[None], batch_size, axis=0)
    batch["nsp_label"] = rng.integers(0, 2, (batch_size, 1), dtype=np.int32)
  return batch


def benchmark(config, steps: int = 20, warmup: int = 3, profile: str = "") -> dict:
  """Time `steps` train steps of `config` on one fixed batch of random tokens; returns the figures.
  With `profile`, 3 more steps are traced into that directory (TensorBoard's profile plugin, Perfetto)."""
  config, _ = resolve(config)
  mesh = sharding.make_mesh(config.mesh)
  trainer = Trainer(config, mesh)
  sharding.check_batch(config, mesh, trainer.rules)
  batch_size, seq = config.train.batch_size, config.data.seq_len
  local = synthetic_batch(config)
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


def target_description(target: str) -> str:
  """The description of GPU `target`: a name of scaling/targets/ (h100) or the path of a .txtpb file,
  XLA's GpuTargetConfigProto in text form."""
  path = Path(target) if target.endswith(".txtpb") else TARGETS / f"{target}.txtpb"
  if not path.is_file():
    known = ", ".join(sorted(p.stem for p in TARGETS.glob("*.txtpb")))
    raise UserError(f"--target {target}: no such GPU; known: {known}, or the path of a .txtpb GPU description")
  return path.read_text()


def has_cuda_plugin() -> bool:
  """Whether JAX's CUDA plugin (jax[cuda12]) is installed, GPU or not."""
  return bool(importlib.util.find_spec("jax_plugins") and importlib.util.find_spec("jax_plugins.xla_cuda12"))


def target_devices(target: str, count: int = 1) -> list:
  """`count` compile-only devices of GPU `target` (target_description). Needs JAX's CUDA plugin, not a GPU."""
  description = target_description(target)
  if not has_cuda_plugin():
    raise UserError("--target needs JAX's CUDA plugin, not a GPU: pip install -e '.[gpu]'")
  from jax.experimental import topologies

  try:
    topology = topologies.get_topology_desc(target, "cuda", target_config=description, topology=f"1x1x{count}")
  except (RuntimeError, NotImplementedError) as e:  # a description the plugin cannot read, a plugin too old
    raise UserError(f"--target {target}: JAX's CUDA plugin cannot compile for it: {str(e).splitlines()[0]}") from None
  return list(topology.devices)


NOT_KERNELS = {"parameter", "get-tuple-element", "bitcast", "tuple", "constant", "while", "conditional",
               "partition-id", "replica-id", "opt-barrier", "after-all", "add-dependency"}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
OPCODE = re.compile(r"=.*?\s([a-z][a-z0-9\-]*)\(")


def hlo_computations(hlo: str) -> tuple[dict[str, list[str]], str]:
  """The computations of a compiled module's HLO text, {name: its instruction lines}, and the entry's name."""
  computations, entry, body = {}, None, None
  for line in hlo.splitlines():
    if body is None and line.endswith("{") and not line.startswith(" "):
      name = line.split()[1 if line.startswith("ENTRY ") else 0].lstrip("%")
      entry = name if line.startswith("ENTRY ") else entry
      body = computations.setdefault(name, [])
    elif line == "}":
      body = None
    elif body is not None:
      body.append(line)
  return computations, entry


def kernel_census(hlo: str) -> dict:
  """The kernels one step launches, counted in the compiled step's HLO text (a loop's body times its trip
  count), by what they do (matmul, attention, collective, other: elementwise, reductions, copies) and by
  the part of the step their operation came from (forward, backward, update: the optimizer and metrics)."""
  computations, entry = hlo_computations(hlo)
  counts = collections.Counter()

  def walk(name: str, times: int) -> None:
    for line in computations[name]:
      found = OPCODE.search(line)
      op = found.group(1) if found else "parameter"
      if op == "while":
        trips = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
        walk(re.search(r"body=%?([\w.\-]+)", line).group(1), times * (int(trips.group(1)) if trips else 1))
      elif op == "call":
        walk(re.search(r"to_apply=%?([\w.\-]+)", line).group(1), times)
      elif op not in NOT_KERNELS and not op.endswith("-done"):
        target = re.search(r'custom_call_target="([^"]+)"|"kind":"([^"]+)"', line)
        target = (target.group(1) or target.group(2)).lower() if target else ""
        kind = ("attention" if "fmha" in target else "matmul" if "gemm" in target or "matmul" in target
                else "collective" if op.startswith(COLLECTIVES) else "other")
        source = re.search(r'op_name="([^"]*)"', line)
        source = source.group(1) if source else ""
        part = "backward" if "transpose(" in source else "forward" if "jvp(" in source else "update"
        counts[kind] += times
        counts[part] += times
        counts["total"] += times

  walk(entry, 1)
  return {k: counts[k] for k in ("total", "forward", "backward", "update", "matmul", "attention", "collective",
                                 "other")}


def compile_step(config, target: str, devices: int = 1):
  """`config`'s train step compiled ahead of time for `devices` GPUs of `target` (see target_devices), on
  this machine: (the resolved config, the compiled step, the seconds compiling took, one of the devices)."""
  config, _ = resolve(config)
  mesh = sharding.make_mesh(config.mesh, target_devices(target, devices))
  trainer = Trainer(config, mesh)
  sharding.check_batch(config, mesh, trainer.rules)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=trainer.batch_sharding)
           for k, v in synthetic_batch(config).items()}
  # Not written to a persistent compilation cache ($JAX_COMPILATION_CACHE_DIR): a compile-only GPU's
  # executable can't be read back here, and would be warned of.
  min_compile_s = jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update("jax_persistent_cache_min_compile_time_secs", math.inf)
  try:
    start = time.perf_counter()
    compiled = trainer.train_step.lower(trainer.abstract_state(), batch).compile()
    return config, compiled, time.perf_counter() - start, mesh.devices.flat[0]
  finally:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_s)


def compile_for(config, target: str, devices: int = 1) -> dict:
  """Compile `config`'s train step for `devices` GPUs of `target` (compile_step): XLA's memory plan for one
  device and the kernels one step launches."""
  config, compiled, compile_s, device = compile_step(config, target, devices)
  plan = compiled.memory_analysis()
  size = re.search(r"device_memory_size:\s*(\d+)", target_description(target))
  return {"config": f"{config.family}:{config.size}", "target": target, "device": device.device_kind,
          "devices": devices, "batch": config.train.batch_size, "seq_len": config.data.seq_len,
          "N": flops.param_counts(config.model)["total"], "compile_s": compile_s,
          "argument_bytes": plan.argument_size_in_bytes, "temp_bytes": plan.temp_size_in_bytes,
          "peak_bytes": (plan.argument_size_in_bytes + plan.output_size_in_bytes - plan.alias_size_in_bytes
                         + plan.temp_size_in_bytes),
          "device_memory_bytes": int(size.group(1)) if size else None,
          "kernels": kernel_census(compiled.as_text())}


def memory_verdict(peak: int, memory: int | None) -> str:
  """Whether a step's peak fits the GPU's memory as JAX allocates it (75% preallocated by default)."""
  if memory is None:
    return "the description gives no memory size"
  if peak <= 0.75 * memory:
    return "fits JAX's default 75% preallocation"
  if peak <= 0.95 * memory:
    return "needs XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 (JAX preallocates 75%)"
  return "does not fit: lower the batch, accumulate (optim.accum_steps), remat, or shard over more devices (fsdp)"


def format_compiled(r: dict) -> str:
  k, gib = r["kernels"], 2**30
  memory = "" if r["device_memory_bytes"] is None else f" of {r['device_memory_bytes'] / gib:.2f} GiB"
  return (f"{r['config']} compiled for {r['devices']} x {r['device']} in {r['compile_s']:.1f} s, here (no GPU used): "
          f"batch {r['batch']} x seq {r['seq_len']}, N = {r['N']:,}\n"
          f"  memory per device (XLA's plan; cuBLAS/cuDNN workspaces come on top): state and batch "
          f"{r['argument_bytes'] / gib:.2f} GiB, temporaries {r['temp_bytes'] / gib:.2f} GiB, peak "
          f"{r['peak_bytes'] / gib:.2f} GiB{memory}: {memory_verdict(r['peak_bytes'], r['device_memory_bytes'])}\n"
          f"  kernels per step: {k['total']:,} (forward {k['forward']:,}, backward {k['backward']:,}, optimizer "
          f"update and metrics {k['update']:,}); matmuls {k['matmul']:,}, cuDNN attention {k['attention']:,}, "
          f"collectives {k['collective']:,}, other {k['other']:,}")


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


def changes(r: dict) -> str:
  """A record's overrides and XLA flags, for a table cell."""
  flags = r["XLA_FLAGS"].strip()
  return " ".join(f"`{c}`" for c in r["overrides"] + ([f"XLA_FLAGS={flags}"] if flags else [])) or "-"


def measured_row(r: dict) -> str:
  mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
  memory = "n/a" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**30:.1f} GiB"
  return (f"| {r['label'] or '-'} | {r['config']} | {changes(r)} | {r['batch']} x {r['seq_len']} | "
          f"{r['ms_per_step']:.1f} | {r['tokens_per_s']:,.0f} | {mfu} | {memory} | {r['first_step_s']:.0f} s |")


def compiled_row(r: dict) -> str:
  k = r["kernels"]
  return (f"| {r['label'] or '-'} | {r['config']} | {changes(r)} | {r['devices']} x {r['device']} | "
          f"{r['batch']} x {r['seq_len']} | {r['peak_bytes'] / 2**30:.1f} GiB | {k['total']:,} | {k['forward']:,} / "
          f"{k['backward']:,} / {k['update']:,} | {k['matmul']:,} | {k['attention']:,} | {r['compile_s']:.0f} s |")


# The two kinds of --json record (timed on a device, or compiled ahead of time with --target): the fields
# each must have, its table's header and its row.
TABLES = {
    "measured": (("label", "config", "overrides", "XLA_FLAGS", "batch", "seq_len", "ms_per_step", "tokens_per_s",
                  "mfu", "peak_memory_bytes", "first_step_s"),
                 "| lever | config | changes | batch x seq | ms/step | tokens/s | MFU | peak memory | first step |",
                 measured_row),
    "compiled": (("label", "config", "overrides", "XLA_FLAGS", "target", "device", "devices", "batch", "seq_len",
                  "peak_bytes", "kernels", "compile_s"),
                 "| lever | config | changes | compiled for | batch x seq | peak memory (XLA's plan) | kernels | "
                 "forward / backward / update | matmuls | cuDNN attention | compile |",
                 compiled_row),
}


def record_kind(record) -> str:
  return "compiled" if isinstance(record, dict) and "target" in record else "measured"


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
    fields = TABLES[record_kind(record)][0]
    missing = [k for k in fields if k not in record] if isinstance(record, dict) else list(fields)
    if missing:
      raise UserError(f"--table {path}, line {number}: not a --json record of scaling.bench (no {', '.join(missing)})")
    records.append(record)
  return records


def markdown_table(records: list[dict]) -> str:
  """One row per benchmark record, what changed and the figures: a table for the timed records, another
  for those compiled ahead of time."""
  tables = []
  for kind, (_, header, row) in TABLES.items():
    rows = [row(r) for r in records if record_kind(r) == kind]
    if rows:
      tables.append("\n".join([header, "|" + " --- |" * header.count(" | ") + " --- |", *rows]))
  return "\n\n".join(tables)


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
  parser.add_argument("--target", help="compile the step for this GPU instead of running it (a100, h100, h200, or a "
                      ".txtpb description; needs JAX's CUDA plugin, not the GPU): its memory and kernels")
  parser.add_argument("--devices", type=int, default=1, help="with --target: how many of them (the mesh's devices)")
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
    if args.target:
      if args.profile:
        raise UserError("--profile traces a run on a device; --target compiles without running")
      if args.devices < 1:
        raise UserError(f"--devices={args.devices} must be at least 1")
      jax.config.update("jax_platforms", "cpu")  # compiled here: no need to start a local GPU, if any
      result = compile_for(config, args.target, args.devices)
      print(format_compiled(result))
    else:
      if args.devices != 1:
        raise UserError("--devices goes with --target; a run uses this machine's devices")
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
