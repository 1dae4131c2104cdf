"""The benchmark times scaling.train's own step and reports consistent figures."""

import gzip
import json
import os
import subprocess

import pytest

from scaling import bench, flops
from scaling import config as config_lib
from scaling.steps import Trainer


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
  assert table[3].startswith(f"| scan | lm:50k | `--config.model.scan_layers=true` | 2 x 32 | {ms} | ")


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
