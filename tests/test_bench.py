"""The benchmark times scaling.train's own step and reports consistent figures."""

import gzip
import json
import math
import os
import re
import subprocess
import sys
import time

import jax
import pytest

from scaling import bench, flops, model, sharding
from scaling import config as config_lib
from scaling.steps import Trainer
from scaling.train import resolve

needs_cuda_plugin = pytest.mark.skipif(not bench.has_cuda_plugin(),
                                       reason="compiling for a GPU needs JAX's CUDA plugin: pip install -e '.[gpu]'")


def test_benchmark_times_the_training_step(monkeypatch):
  calls = []
  original = Trainer._train_step
  monkeypatch.setattr(Trainer, "_train_step", lambda self, *a: calls.append(1) or original(self, *a))
  cfg = config_lib.load("configs/gpt2.py:124m-bench", {"model.num_layers": 1, "model.d_model": 64, "model.num_heads": 2,
                                                       "model.d_ff": 128, "train.batch_size": 2, "data.seq_len": 64})
  r = bench.benchmark(cfg, steps=3, warmup=1)
  assert calls, "the benchmark traced Trainer._train_step, the step scaling.train runs"
  assert r["tokens_per_s"] == pytest.approx(2 * 64 / (r["ms_per_step"] / 1e3))
  assert r["flops_per_token"] == flops.flops_per_token(cfg.model, 64)
  assert r["N"] == 50304 * 64 + 1024 * 64 + flops.param_counts(cfg.model)["non_embedding"]
  assert r["mfu"] is None and r["device"] == "cpu"
  assert r["final_loss"] == pytest.approx(10.8, abs=0.3), "ln(50304) = 10.83 on random tokens"


@pytest.mark.parametrize("objective", ["mlm", "mlm_nsp"])
def test_benchmark_of_bert(objective):
  """The encoder's step, masking and next-sentence prediction included, on the synthetic batch."""
  cfg = config_lib.load("configs/bert.py:tiny", {"objective": objective, "model.pooler": objective == "mlm_nsp",
                                                  "train.batch_size": 2, "data.seq_len": 32})
  r = bench.benchmark(cfg, steps=1, warmup=1)
  assert r["batch"] == 2 and r["seq_len"] == 32 and math.isfinite(r["final_loss"]) and r["final_loss"] > 1


def test_cli_prints_figures_and_appends_json(capsys, tmp_path):
  argv = ["--config=configs/lm.py:50k", "--batch=2", "--seq=32", "--steps=2", "--warmup=1",
          f"--json={tmp_path / 'bench.jsonl'}", "--label=scan", "--config.model.scan_layers=true"]
  assert bench.main(argv) == 0 and bench.main(argv) == 0
  out = capsys.readouterr().out
  assert "ms/step" in out and "tokens/s" in out and "MFU n/a" in out and "batch 2 x seq 32" in out
  records = [json.loads(line) for line in (tmp_path / "bench.jsonl").read_text().splitlines()]
  assert len(records) == 2
  assert records[0]["overrides"] == ["--config.model.scan_layers=true"] and records[0]["backend"] == "cpu"
  assert records[0]["batch"] == 2 and records[0]["seq_len"] == 32 and records[0]["first_step_s"] > 0
  assert bench.main([f"--table={tmp_path / 'bench.jsonl'}"]) == 0
  table = capsys.readouterr().out.splitlines()
  assert table[0].startswith("| lever | config | changes | batch x seq | ms/step |") and len(table) == 4
  ms = f"{records[1]['ms_per_step']:.1f}"
  flags = f" `XLA_FLAGS={os.environ['XLA_FLAGS']}`"  # the suite's (conftest.py)
  assert records[1]["XLA_FLAGS"] == os.environ["XLA_FLAGS"]
  assert table[3].startswith(f"| scan | lm:50k | `--config.model.scan_layers=true`{flags} | 2 x 32 | {ms} | ")


def test_cli_checks_its_arguments(capsys):
  assert bench.main(["--config=configs/lm.py:50k", "--warmup=0"]) == 2
  assert capsys.readouterr().err == "error: --warmup=0 and --steps=20 must be at least 1\n"
  assert bench.main([]) == 2
  assert capsys.readouterr().err == "error: --config is required (configs/<family>.py:<size>)\n"
  for flag in ("--batch", "--seq"):  # 0 is not "the config's"
    assert bench.main(["--config=configs/lm.py:50k", f"{flag}=0"]) == 2
    assert capsys.readouterr().err == f"error: {flag}=0 must be at least 1\n"


def test_table_of_a_file_that_is_not_json_lines_is_one_line(capsys, tmp_path):
  csv = tmp_path / "some.csv"
  csv.write_text("label,ms_per_step\nscan,12.5\n")
  assert bench.main([f"--table={csv}"]) == 2
  assert capsys.readouterr().err == (f"error: --table {csv}, line 1: not JSON (Expecting value); expected the JSON"
                                     " lines that --json writes\n")
  other = tmp_path / "other.jsonl"
  other.write_text('\n{"label": "x", "config": "lm:50k"}\n')
  assert bench.main([f"--table={other}"]) == 2
  assert capsys.readouterr().err == (f"error: --table {other}, line 2: not a --json record of scaling.bench (no"
                                     " overrides, XLA_FLAGS, batch, seq_len, ms_per_step, tokens_per_s, mfu,"
                                     " peak_memory_bytes, first_step_s)\n")
  for path, why in ((tmp_path / "nope.jsonl", "no such file or directory"), (tmp_path, "is a directory")):
    assert bench.main([f"--table={path}"]) == 2
    assert capsys.readouterr().err == f"error: --table {path}: {why}\n"


def test_lever_script_runs_each_lever_in_its_own_process(tmp_path):
  out = tmp_path / "levers.jsonl"
  env = {**os.environ, "BENCH_ARGS": "--batch 2 --seq 32 --steps 2 --warmup 1", "XLA_FLAGS": ""}
  result = subprocess.run(["bash", "scripts/gpu_levers.sh", "configs/lm.py:50k", str(out), "scan-unroll2",
                           "no-command-buffer"], env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r["label"] for r in records] == ["scan-unroll2", "no-command-buffer"]
  assert records[0]["overrides"] == ["--config.model.scan_layers=true", "--config.model.scan_unroll=2"]
  assert records[1]["XLA_FLAGS"].split() == ["--xla_gpu_enable_command_buffer="] and records[1]["overrides"] == []
  assert "| scan-unroll2 | lm:50k |" in result.stdout  # the table at the end
  bad = subprocess.run(["bash", "scripts/gpu_levers.sh", "configs/lm.py:50k", str(out), "fast"],
                       capture_output=True, text=True, timeout=60)
  assert bad.returncode == 2 and bad.stderr.startswith("error: unknown lever 'fast'")


def test_lever_script_keeps_to_its_deadline(tmp_path):
  """LEVERS_UNTIL: no lever starts after it, one still running at it is stopped, neither counts as a failure."""
  out = tmp_path / "levers.jsonl"
  base = {**os.environ, "BENCH_ARGS": "--batch 2 --seq 32 --steps 100000 --warmup 1", "XLA_FLAGS": ""}
  past = subprocess.run(["bash", "scripts/gpu_levers.sh", "configs/lm.py:50k", str(out), "baseline", "scan"],
                        env={**base, "LEVERS_UNTIL": "1"}, capture_output=True, text=True, timeout=60)
  assert past.returncode == 0, past.stderr[-2000:]
  assert past.stderr.splitlines() == ["== baseline skipped: past LEVERS_UNTIL", "== scan skipped: past LEVERS_UNTIL"]
  assert not out.exists() and past.stdout == ""
  start = time.time()
  running = subprocess.run(["bash", "scripts/gpu_levers.sh", "configs/lm.py:50k", str(out), "baseline", "scan"],
                           env={**base, "LEVERS_UNTIL": str(int(start) + 5)}, capture_output=True, text=True,
                           timeout=120)
  assert running.returncode == 0, running.stderr[-2000:]
  lines = [line for line in running.stderr.splitlines() if line.startswith("== ")]
  assert lines == ["== baseline", "== baseline stopped: still running at LEVERS_UNTIL", "== scan skipped: past LEVERS_UNTIL"]
  assert not out.exists() and time.time() - start < 20  # 100,000 steps were not waited for


def test_gpu_session_runs_the_targets_first(tmp_path):
  """With no time left, scripts/gpu_session.sh skips every benchmark and says so, in its order of priority."""
  result = subprocess.run(["bash", "scripts/gpu_session.sh", str(tmp_path), "0"], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  skipped = [line.split()[1] for line in (tmp_path / "log.txt").read_text().splitlines()]
  assert skipped[:4] == ["baseline", "baseline", "baseline", "xla-attention"]
  assert skipped == re.findall(r"== (\S+) skipped", result.stdout) and len(skipped) == 17
  assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt"]


def test_profile_traces_three_training_steps(tmp_path):
  cfg = config_lib.load("configs/lm.py:50k", {"train.batch_size": 2, "data.seq_len": 32})
  bench.benchmark(cfg, steps=1, warmup=1, profile=str(tmp_path))
  [trace] = tmp_path.glob("plugins/profile/*/perfetto_trace.json.gz")
  events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
  steps = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "PjitFunction(_train_step)")
  outermost = [s for i, s in enumerate(steps) if not any(a <= s[0] and s[1] <= b for a, b in steps[:i])]
  assert len(outermost) == 3  # (the Python and the C++ dispatch each record a step, one inside the other)
  profile = bench.top_ops(str(tmp_path), limit=5)
  assert profile["trace"] == str(trace) and len(profile["top"]) == 5
  assert profile["ops_per_step"] == round(profile["ops_per_step"]) > 5, "whole steps, each op in each of the 3"
  for op in profile["top"]:
    assert op["calls_per_step"] == round(op["calls_per_step"]) >= 1
    assert op["ms_per_step"] == pytest.approx(op["share"] * profile["ms_per_step"])
  times = [op["ms_per_step"] for op in profile["top"]]
  assert times == sorted(times, reverse=True)
  assert any("fusion" in op["op"] for op in profile["top"])  # XLA's ops of the step, not the host's Python
  assert bench.format_profile(profile).splitlines()[2].split()[3] == profile["top"][0]["op"]


def test_profile_of_an_accelerator_counts_its_kernels_only(tmp_path):
  """On a GPU the trace has /device: processes: their kernels are the step's ops, the host's events are not."""
  trace_dir = tmp_path / "plugins/profile/2026_01_01_00_00_00"
  trace_dir.mkdir(parents=True)
  meta = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
          {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/device:GPU:0"}}]
  kernels = [("gemm", 300.0), ("gemm", 200.0), ("fmha", 400.0), ("loop_add_fusion", 10.0)] * bench.PROFILED_STEPS
  events = meta + [{"ph": "X", "pid": 2, "tid": 7, "ts": i, "dur": dur, "name": name}
                   for i, (name, dur) in enumerate(kernels)]
  events.append({"ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": 5e4, "name": "PjitFunction(_train_step)",
                 "args": {"hlo_module": "jit__train_step"}})
  (trace_dir / "perfetto_trace.json.gz").write_bytes(gzip.compress(json.dumps({"traceEvents": events}).encode()))
  profile = bench.top_ops(str(tmp_path))
  assert profile["ops_per_step"] == 4 and profile["ms_per_step"] == pytest.approx(0.91)
  assert [(o["op"], o["calls_per_step"]) for o in profile["top"]] == [("gemm", 2), ("fmha", 1), ("loop_add_fusion", 1)]
  assert [o["ms_per_step"] for o in profile["top"]] == pytest.approx([0.5, 0.4, 0.01])


HLO = """HloModule jit__train_step, entry_computation_layout={()->()}

%body (p: (s32[], f32[8])) -> (s32[], f32[8]) {
  %p = (s32[], f32[8]) parameter(0)
  %fmha = (bf16[2,4], u8[0]) custom-call(%x), custom_call_target="__cudnn$fmhaSoftmax", metadata={op_name="jit(_train_step)/jvp()/attn"}
  %gemm_fusion = bf16[2,4]{1,0:T(8,128)} fusion(%y), kind=kCustom, calls=%g, metadata={op_name="jit(_train_step)/transpose(jvp())/dot_general"}, backend_config={"fusion_backend_config":{"kind":"__triton_gemm"}}
  ROOT %t = (s32[], f32[8]) tuple(%i, %z)
}

%cond (p: (s32[], f32[8])) -> pred[] {
  %p = (s32[], f32[8]) parameter(0)
  ROOT %lt = pred[] compare(%a, %b), direction=LT
}

ENTRY %main.7 (Arg_0.1: f32[8]) -> (f32[8], f32[]) {
  %Arg_0.1 = f32[8]{0} parameter(0)
  %w = (s32[], f32[8]) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"3"}}
  %gte = f32[8]{0} get-tuple-element(%w), index=1
  %ars = f32[8]{0} all-reduce-start(%gte), replica_groups={}, to_apply=%add
  %ard = f32[8]{0} all-reduce-done(%ars)
  %cublas = (f32[8,8], s8[0]) custom-call(%a, %b), custom_call_target="__cublas$gemm", metadata={op_name="jit(_train_step)/jvp()/dot_general"}
  %reduce_fusion = f32[] fusion(%ard), kind=kInput, calls=%r, metadata={op_name="jit(_train_step)/reduce_sum"}
  %bc = f32[8]{0} bitcast(%ard)
  ROOT %out = (f32[8], f32[]) tuple(%bc, %reduce_fusion)
}
"""


def test_kernel_census_counts_loops_by_their_trips():
  """A loop body's kernels count once per trip; bookkeeping ops (tuples, bitcasts, parameters, the loop's
  condition, an async op's -done) launch nothing; the op's name says forward, backward or neither."""
  assert bench.kernel_census(HLO) == {"total": 3 * 2 + 3, "forward": 3 + 1, "backward": 3, "update": 2,
                                      "matmul": 3 + 1, "attention": 3, "collective": 1, "other": 1}


def test_memory_verdict_follows_jax_preallocation():
  gib = 2**30
  assert bench.memory_verdict(60 * gib, 80 * gib) == "fits JAX's default 75% preallocation"
  assert bench.memory_verdict(61 * gib, 80 * gib).startswith("needs XLA_PYTHON_CLIENT_MEM_FRACTION=0.95")
  assert bench.memory_verdict(77 * gib, 80 * gib).startswith("does not fit: lower the batch")


def test_target_mistakes_are_one_line(capsys, monkeypatch):
  for argv, message in (
      (["--target=h200x"], "--target h200x: no such GPU; known: a100, h100, h200, or the path of a .txtpb GPU description"),
      (["--target=h100", "--profile=p"], "--profile traces a run on a device; --target compiles without running"),
      (["--target=h100", "--devices=0"], "--devices=0 must be at least 1"),
      (["--devices=2"], "--devices goes with --target; a run uses this machine's devices")):
    assert bench.main(["--config=configs/lm.py:50k", *argv]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
  monkeypatch.setattr(bench, "has_cuda_plugin", lambda: False)
  assert bench.main(["--config=configs/lm.py:50k", "--target=h100"]) == 2
  assert capsys.readouterr().err == "error: --target needs JAX's CUDA plugin, not a GPU: pip install -e '.[gpu]'\n"


def compile_for_h100(tmp_path, *args, label="-", config="configs/lm.py:1m"):
  """Records of `scaling.bench --target h100` (in a process of its own: the CUDA plugin must start with
  JAX, here without a GPU) for `config` at batch 8 x seq 128, with a compilation cache in tmp_path/jax-cache
  (which it must leave alone: the executables are for a GPU this machine does not have)."""
  out = tmp_path / "compiled.jsonl"
  result = subprocess.run([sys.executable, "-m", "scaling.bench", f"--config={config}", "--batch=8", "--seq=128",
                           "--target=h100", f"--json={out}", f"--label={label}", *args],
                          env={**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
                               "XLA_FLAGS": ""},  # compiled as a user would, without the suite's CPU flag
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(out.read_text().splitlines()[-1]), result.stdout


@needs_cuda_plugin
def test_compiles_the_training_step_for_an_h100_without_one(tmp_path, capsys):
  """The step compiles for the GPU: bfloat16 and cuDNN flash attention chosen for it (this machine is a CPU),
  XLA's memory plan holds exactly the state and the batch, and every layer's attention is one cuDNN kernel
  forward and one backward, also inside a scanned loop."""
  record, out = compile_for_h100(tmp_path, label="baseline")
  layers = 5
  assert record["device"] == "NVIDIA H100 80GB HBM3" and record["devices"] == 1 and record["target"] == "h100"
  assert record["kernels"]["attention"] == 2 * layers
  assert record["kernels"]["matmul"] > 0 and record["kernels"]["collective"] == 0
  k = record["kernels"]
  assert k["total"] == k["forward"] + k["backward"] + k["update"] == k["matmul"] + k["attention"] + k["other"]
  cfg, _ = resolve(config_lib.load("configs/lm.py:1m", {"train.batch_size": 8, "data.seq_len": 128}))
  state = Trainer(cfg, sharding.make_mesh(cfg.mesh, jax.devices()[:1])).abstract_state()
  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  assert record["argument_bytes"] == state_bytes + 8 * 128 * 4 * 3  # inputs, targets (int32) and weights (float32)
  assert record["device_memory_bytes"] == 84942979072 and record["peak_bytes"] > record["argument_bytes"]
  assert "compiled for 1 x NVIDIA H100 80GB HBM3" in out and "fits JAX's default 75% preallocation" in out
  assert f"cuDNN attention {2 * layers}" in out

  xla, _ = compile_for_h100(tmp_path, "--config.model.attention=xla", label="xla-attention")
  assert xla["kernels"]["attention"] == 0 and xla["argument_bytes"] == record["argument_bytes"]
  scan, _ = compile_for_h100(tmp_path, "--config.model.scan_layers=true", label="scan")
  assert scan["kernels"]["attention"] == 2 * layers and scan["argument_bytes"] == record["argument_bytes"]
  fsdp, _ = compile_for_h100(tmp_path, "--devices=2", label="fsdp2")
  assert fsdp["devices"] == 2 and fsdp["kernels"]["collective"] > 0
  assert record["argument_bytes"] / 2 <= fsdp["argument_bytes"] < record["argument_bytes"]

  assert bench.main([f"--table={tmp_path / 'compiled.jsonl'}"]) == 0
  table = capsys.readouterr().out.splitlines()
  assert table[0].startswith("| lever | config | changes | compiled for | batch x seq | peak memory") and len(table) == 6
  k = record["kernels"]
  assert table[2] == (f"| baseline | lm:1m | - | 1 x NVIDIA H100 80GB HBM3 | 8 x 128 | {record['peak_bytes'] / 2**30:.1f} GiB"
                      f" | {k['total']:,} | {k['forward']:,} / {k['backward']:,} / {k['update']:,} | {k['matmul']:,} | 10 | "
                      f"{record['compile_s']:.0f} s |")
  assert table[5].startswith("| fsdp2 | lm:1m | - | 2 x NVIDIA H100 80GB HBM3 | 8 x 128 |")
  assert not list(tmp_path.glob("jax-cache/*")), "a GPU executable in the cache warns when read back here"


@needs_cuda_plugin
def test_the_loss_writes_no_float32_logits_on_a_gpu():
  """Compiled for an H100 (bfloat16), the cross-entropy reads the bfloat16 logits in float32 and writes their
  gradient in bfloat16: the step has no float32 array of a row per position and a column per vocabulary
  entry, nor of the vocabulary by the positions. When the target's logit was gathered (take_along_axis), the
  gradient was a scatter into a float32 copy of the logits, and XLA wrote two such arrays per step (6.6 GB
  at GPT-2 124M, batch 16; the step's peak memory was 11.9 GiB, now 8.9)."""
  batch, seq = 8, 128
  config, compiled, _, _ = bench.compile_step(
      config_lib.load("configs/lm.py:1m", {"train.batch_size": batch, "data.seq_len": seq}), "h100")
  vocab = model.padded_vocab(config.model)
  full = [(dtype, shape) for dtype, shape in written_arrays(compiled.as_text())
          if vocab in (shape[0], shape[-1]) and math.prod(shape) == batch * seq * vocab]
  assert full and all(dtype == "bf16" for dtype, _ in full), full


def written_arrays(hlo: str) -> set[tuple[str, tuple]]:
  """{(dtype, shape)} of the arrays a compiled step writes to memory: the outputs of the instructions outside
  fusions (a fusion's inner values stay in registers)."""
  computations, _ = bench.hlo_computations(hlo)
  fused = set(re.findall(r"calls=%?([\w.\-]+)", hlo))
  written = set()
  for line in (line for name, lines in computations.items() if name not in fused for line in lines):
    if out := re.match(r"\s*(?:ROOT )?%\S+ = (.*?) [a-z][\w\-]*\(", line):
      written |= {(dtype, tuple(map(int, dims.split(",")))) for dtype, dims in re.findall(r"(\w+)\[([\d,]+)\]", out[1])}
  return written


@needs_cuda_plugin
def test_bert_compiles_with_cudnn_attention_for_an_h100(tmp_path):
  """The encoder's padding reaches cuDNN as each row's length (a [batch, 1, 1, length] mask fails cuDNN's
  layout check): every layer's attention is one cuDNN kernel forward and one backward."""
  record, _ = compile_for_h100(tmp_path, "--seq=64", config="configs/bert.py:tiny")
  assert record["kernels"]["attention"] == 2 * config_lib.load("configs/bert.py:tiny").model.num_layers
