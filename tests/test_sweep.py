"""Sweeps: run ids, grids, IsoFLOP designs within 1% of their budgets, bad input, run statuses (failed
and interrupted told apart), the local launcher end to end (failed runs marked, reruns skip, a preempted
run interrupted then resumed, finished runs evaluated on another corpus), launch.sh's dry runs (TPU against
a golden file) and a SLURM job array of 2-process runs, trained then evaluated, on the one-node cluster of
scripts/slurm_local.sh."""

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rich.console import Console

from configs import lm
from scaling import checkpoint, evaluate, flops, sweep

GOLDEN = Path("tests/golden")
TINY = {"data.dataset": "synthetic", "data.seq_len": 32, "train.batch_size": 4, "train.steps": 5,
        "optim.warmup_steps": 1, "train.eval_every": 0, "train.eval_batches": 2, "train.progress": False}


def write_experiment(path: Path, body: str) -> str:
  path.write_text(f"from scaling import sweep\n\nTINY = {TINY!r}\n\n\ndef runs():\n{body}\n")
  return str(path)


SEEDS = '  return sweep.grid("configs/lm.py:10k", axes={"seed": [0, 1, 2]}, overrides=TINY)'


def run_cli(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "scaling.sweep", *args], capture_output=True, text=True, timeout=timeout)


def stand_ins(tmp_path, **scripts) -> dict:
  """An environment whose PATH finds these stand-in commands first (name: bash lines after one that logs
  the call, as 'name args...', to tmp_path/calls.log)."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name, body in scripts.items():
    (bin_dir / name).write_text(f'#!/bin/bash\necho "{name} $*" >> {tmp_path / "calls.log"}\n{body}\n')
    (bin_dir / name).chmod(0o755)
  return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}


def calls(tmp_path) -> list[str]:
  log = tmp_path / "calls.log"
  return log.read_text().splitlines() if log.exists() else []


def read_csv(path, hyperparameters=()) -> list[dict]:
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    assert tuple(reader.fieldnames) == (*sweep.RESULT_COLUMNS, *hyperparameters)
    return list(reader)


# --- ids and designs --------------------------------------------------------------------------------


def test_run_id_is_stable_typed_and_distinct():
  a = sweep.make_run("configs/lm.py:10k", {"seed": 1, "train.steps": 10, "optim.warmup_steps": 1})
  b = sweep.make_run("./configs/lm.py:10k", {"optim.warmup_steps": "1", "train.steps": "10.0", "seed": 1})
  assert a.id == b.id == "lm-10k-d464f098"  # sha256 of {"overrides": {...}, "spec": ...}: pinned across versions
  assert a.id == sweep.run_id("lm", "10k", "configs/lm.py:10k", {"train.steps": 10, "seed": 1, "optim.warmup_steps": 1})
  assert list(a.overrides.items()) == [("optim.warmup_steps", 1), ("seed", 1), ("train.steps", 10)]  # sorted, typed
  assert sweep.make_run("configs/lm.py:10k", {"seed": 2, "train.steps": 10, "optim.warmup_steps": 1}).id != a.id
  assert sweep.make_run("configs/lm.py:25k", {"seed": 1, "train.steps": 10, "optim.warmup_steps": 1}).id.startswith(
      "lm-25k-")
  assert a.train_args("r/x") == ["-m", "scaling.train", "--config=configs/lm.py:10k", "--workdir=r/x",
                                 "--config.optim.warmup_steps=1", "--config.seed=1", "--config.train.steps=10"]


def test_grid_expands_every_combination_with_token_budgets():
  def expand():
    return sweep.grid("configs/lm.py", sizes=["10k", "25k"], tokens=[4096, 8192], warmup_fraction=0.25,
                      axes={"optim.lr": [1e-3, 3e-3], "seed": [0, 1, 2]},
                      overrides={"data.seq_len": 32, "train.batch_size": 4})

  runs = expand()
  assert len(runs) == 2 * 2 * 2 * 3 == len({r.id for r in runs})
  assert [r.id for r in runs] == [r.id for r in expand()]
  assert {(r.size, r.config.train.steps, r.config.optim.warmup_steps) for r in runs} == {
      (s, d // 128, d // 512) for s in ("10k", "25k") for d in (4096, 8192)}
  assert {r.config.optim.lr for r in runs} == {1e-3, 3e-3} and {r.config.seed for r in runs} == {0, 1, 2}
  with pytest.raises(sweep.SweepError, match="tokens=1000 is not within 1%.*multiple of 128"):
    sweep.grid("configs/lm.py:10k", tokens=[1000], overrides={"data.seq_len": 32, "train.batch_size": 4})


def test_hyperparameters_are_the_fields_that_tell_apart_runs_of_one_size_and_D():
  """results.csv gets a column for each: the analysis can then keep each (N, D)'s best learning rate or
  average the seeds. The fields the designs set from size and tokens (steps, warmup, batch) are not among them."""
  runs = sweep.grid("configs/lm.py", sizes=["10k", "25k"], tokens=[4096, 8192], warmup_fraction=0.25,
                    axes={"optim.lr": [1e-3, 3e-3], "seed": [0, 1]}, overrides={"data.seq_len": 32, "train.batch_size": 4})
  assert sweep.hyperparameters(runs) == ["optim.lr", "seed"]
  assert sweep.hyperparameters(sweep.grid("configs/lm.py", sizes=["10k", "25k"], tokens=[4096, 8192],
                                          warmup_fraction=0.25, overrides={"data.seq_len": 32})) == []
  assert sweep.hyperparameters(sweep.isoflop("configs/lm.py", [1e12, 3e12], sizes=lm.LADDER, num_sizes=3,
                                             overrides={"data.seq_len": 64})) == []
  lr_only = [run for run in runs if run.config.seed == 0]  # seed is then the same within each group
  assert sweep.hyperparameters(lr_only) == ["optim.lr"]


def test_isoflop_axes_repeat_each_shape_at_its_budget():
  design = dict(sizes=lm.LADDER, num_sizes=3, overrides={"data.seq_len": 64})
  plain = sweep.isoflop("configs/lm.py", [1e12, 3e12], **design)
  swept = sweep.isoflop("configs/lm.py", [1e12, 3e12], axes={"optim.lr": [1e-3, 3e-3, 1e-2]}, **design)
  assert len(swept) == 3 * len(plain) == len({r.id for r in swept})
  for i, run in enumerate(plain):  # the same shape, steps and budget at each learning rate
    for lr, other in zip((1e-3, 3e-3, 1e-2), swept[3 * i:3 * i + 3]):
      assert (other.spec, other.budget, other.flops) == (run.spec, run.budget, run.flops)
      assert other.overrides == {**run.overrides, "optim.lr": lr}
  assert sweep.hyperparameters(swept) == ["optim.lr"]
  with pytest.raises(sweep.SweepError, match=r"isoflop: axes data.seq_len=32 make configs/lm.py:\S+ spend .* FLOPs, "
                     r"not within 1% of the budget 1e\+12; vary fields that leave a run's FLOPs as they are"):
    sweep.isoflop("configs/lm.py", [1e12], axes={"data.seq_len": [32]}, **design)


def test_results_csv_has_a_column_per_hyperparameter(tmp_path):
  runs = sweep.grid("configs/lm.py:10k", axes={"optim.lr": [3e-3, 1e-2]}, overrides=TINY)
  runs.append(sweep.make_run("configs/lm.py:10k", TINY))  # at the config's own learning rate
  fields = sweep.hyperparameters(runs)
  rows = [sweep.result_row(run, tmp_path, {}, fields) for run in runs]
  sweep.write_csv(rows, tmp_path / "results.csv")
  written = read_csv(tmp_path / "results.csv", ["optim.lr"])
  default_lr = str(runs[-1].config.optim.lr)
  assert default_lr not in ("0.003", "0.01")
  assert [(r["run_id"], r["optim.lr"], r["status"]) for r in written] == [(r.id, lr, "missing") for r, lr in
                                                                        zip(runs, ("0.003", "0.01", default_lr))]


def _check_isoflop(runs, budgets, num_sizes, tokens_per_param=20):
  assert sorted({r.budget for r in runs}) == sorted(budgets) and len(runs) == len(budgets) * num_sizes
  ladder = list(lm.LADDER)
  for budget in budgets:
    group = [r for r in runs if r.budget == budget]
    ranks = [ladder.index(r.size) for r in group]
    assert ranks == list(range(ranks[0], ranks[0] + num_sizes)), "consecutive ladder shapes"
    for r in group:
      m, t = r.config.model, r.config.train
      assert abs(r.flops - budget) <= 0.01 * budget
      assert r.flops == flops.flops_per_token(m, r.config.data.seq_len) * t.steps * t.batch_size * r.config.data.seq_len
      assert m.d_model % m.num_heads == 0 and 0 < r.config.optim.warmup_steps <= t.steps
    ratios = [r.flops / flops.flops_per_token(r.config.model, r.config.data.seq_len)
              / flops.param_counts(r.config.model)["total"] for r in group]  # tokens per parameter
    assert max(ratios) > tokens_per_param > min(ratios), "the shapes span the expected optimum"


def test_cpu_isoflop_design():
  runs = sweep.load_experiment("experiments/cpu_isoflop.py")
  _check_isoflop(runs, (5e11, 1.2e12, 3e12, 7.5e12), 4, tokens_per_param=40)
  assert {r.config.data.dataset for r in runs} == {"pystdlib"}


def test_cpu_lr_sweep_is_cpu_isoflops_two_smallest_designs_at_four_learning_rates():
  runs = sweep.load_experiment("experiments/cpu_lr_sweep.py")
  isoflop = {(r.size, r.config.train.steps, r.config.train.batch_size): r for r in
             sweep.load_experiment("experiments/cpu_isoflop.py") if r.flops < 2e12}
  assert len(runs) == 4 * len(isoflop) == 32
  shapes = {}
  for r in runs:
    shapes.setdefault((r.size, r.config.train.steps, r.config.train.batch_size), []).append(r.config.optim.lr)
  assert shapes.keys() == isoflop.keys()  # the same shapes, steps and batches
  assert all(sorted(lrs) == [1e-3, 3e-3, 1e-2, 3e-2] for lrs in shapes.values())


def test_accelerator_experiments_expand():
  chinchilla = sweep.load_experiment("experiments/chinchilla_isoflop.py")
  _check_isoflop(chinchilla, (1e17, 3e17, 1e18, 3e18, 1e19), 5)
  assert all(r.config.train.batch_size % 8 == 0 for r in chinchilla)
  kaplan = sweep.load_experiment("experiments/model_size.py")
  assert [r.size for r in kaplan] == ["1m", "2m", "5m", "10m", "20m", "50m", "100m", "200m"]
  assert {r.config.train.steps * r.config.train.batch_size * r.config.data.seq_len for r in kaplan} == {2**30}


def test_isoflop_rounds_steps_within_1pct_with_a_smaller_batch():
  assert sweep.fit_steps(20.4 * 160_000, 10_000, [16]) is None  # 20 steps of 16 x 10,000 FLOPs: 2% off
  batch, steps = sweep.fit_steps(20.4 * 160_000, 10_000, range(16, 0, -2))
  assert batch < 16 and abs(steps * batch * 10_000 - 20.4 * 160_000) <= 0.01 * 20.4 * 160_000
  design = dict(sizes=["10k", "25k", "50k"], num_sizes=2, min_steps=10, tokens_per_param=0.25,
                overrides={"data.seq_len": 32, "train.batch_size": 8})
  runs = sweep.isoflop("configs/lm.py", [1e9], batch_multiple=2, **design)
  assert [r.size for r in runs] == ["10k", "25k"] and all(abs(r.flops - 1e9) <= 1e7 for r in runs)
  assert {r.config.train.batch_size for r in runs} == {6}  # 8 would miss the budget by more than 1%
  with pytest.raises(sweep.SweepError, match="no batch size .a multiple of 8, at most 8. brings configs/lm.py:10k's"):
    sweep.isoflop("configs/lm.py", [1e9], batch_multiple=8, **design)


def test_isoflop_budget_too_small_is_a_clear_error():
  with pytest.raises(sweep.SweepError, match=r"budget 1e\+09 FLOPs is too small for 4 sizes: configs/lm.py:10k would "
                     r"train .* steps of batch 16 \(min_steps=20\); raise the budget to at least"):
    sweep.isoflop("configs/lm.py", [1e9], sizes=lm.LADDER, overrides={"data.seq_len": 128, "train.batch_size": 16})


def test_isoflop_design_that_cannot_bracket_the_optimum_is_a_clear_error():
  """At the ladder's ends the chosen shapes all train too few (or too many) tokens per parameter: their
  IsoFLOP curve has no minimum, which the design says before any compute is spent."""
  design = dict(sizes=lm.LADDER, num_sizes=4, overrides={"data.seq_len": 128, "train.batch_size": 4})
  with pytest.raises(sweep.SweepError, match=re.escape(
      "isoflop: budget 3e+10 FLOPs: its shapes configs/lm.py:10k to configs/lm.py:100k train 0.268 to 6.64 tokens per "
      "parameter, all below tokens_per_param=40, so their IsoFLOP curve would have no minimum; raise the budget above "
      "1.81e+11 FLOPs or add smaller sizes")):
    sweep.isoflop("configs/lm.py", [3e10], tokens_per_param=40, **design)
  with pytest.raises(sweep.SweepError, match=r"all above tokens_per_param=0\.001, .*; lower the budget below"):
    sweep.isoflop("configs/lm.py", [3e10], tokens_per_param=0.001, **design)


# --- bad input through the CLI ------------------------------------------------------------------------


def test_unknown_field_is_one_line_exit_2(tmp_path):
  path = write_experiment(tmp_path / "typo.py", '  return sweep.grid("configs/lm.py:10k", axes={"optim.lrr": [1e-3]})')
  result = run_cli("--experiment", path, "--root", str(tmp_path / "runs"))
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.count("\n") == 1
  assert result.stderr.startswith(f"error: {path}: configs/lm.py:10k optim.lrr=0.001:")
  assert "unknown config field config.optim.lrr" in result.stderr
  assert not (tmp_path / "runs").exists()


def test_cli_input_errors(tmp_path):
  result = run_cli("--experiment", str(tmp_path / "absent.py"))
  assert result.returncode == 2 and result.stderr.startswith("error: --experiment: no such file")
  path = write_experiment(tmp_path / "one.py", '  return sweep.grid("configs/lm.py:10k", overrides=TINY)')
  result = run_cli("--experiment", path, "--only", "lm-1b", "--dry-run")
  assert result.returncode == 2 and result.stderr.startswith("error: --only 'lm-1b' matches none of the 1 run ids")
  twice = write_experiment(tmp_path / "twice.py", '  return sweep.grid("configs/lm.py:10k", overrides=TINY) * 2')
  assert "is defined twice" in run_cli("--experiment", twice, "--dry-run").stderr
  result = run_cli("--experiment", path, "--wait", "--dry-run")
  assert result.returncode == 2 and result.stderr == ("error: --wait follows a SLURM job array; with --launcher local "
                                                      "the sweep ends with its runs\n")
  result = run_cli("--experiment", path, "--config.optim.lr=1e-3")
  assert result.returncode == 2 and result.stderr.splitlines()[-1].endswith(
      "unrecognized argument --config.optim.lr=1e-3 (--config.* overrides name the corpus of --evaluate; a sweep's "
      "runs are changed in its experiment file)")
  result = run_cli("--experiment", path, "--evaluate", "--collect")
  assert result.returncode == 2 and result.stderr.splitlines()[-1].endswith(
      "--collect launches nothing, --evaluate launches evaluations: give one of them")
  result = run_cli("--experiment", path, "--evaluate", "--config.optim.lr=1e-3", "--root", str(tmp_path / "runs"))
  assert result.returncode == 2 and result.stderr == (
      "error: config.optim.lr: an evaluation changes only the corpus (config.data, but not data.tokenizer or "
      "data.seq_len), train.batch_size, train.eval_batches and the mesh; the rest is the run's own\n")
  assert not (tmp_path / "runs").exists()


# --- state, the local launcher end to end ---------------------------------------------------------------


def test_status_follows_the_launchers_records(tmp_path):
  run, none = sweep.make_run("configs/lm.py:10k", TINY), {}
  assert sweep.status(tmp_path / run.id, none) == "missing"
  workdir = sweep.prepare(run, tmp_path)
  assert sweep.status(workdir, none) == "pending"  # queued by this (live) process
  gone = subprocess.Popen(["true"])
  gone.wait()
  sweep.write_state(workdir, "queued", host=socket.gethostname(), pid=gone.pid)
  assert sweep.status(workdir, none) == "missing", "its launcher stopped before starting it (Ctrl-C on the sweep)"
  sweep.write_state(workdir, "started", host=socket.gethostname(), pid=os.getpid())
  assert sweep.status(workdir, none) == "running"
  sweep.write_state(workdir, "started", host=socket.gethostname(), pid=gone.pid)
  assert sweep.status(workdir, none) == "failed", "gone before its first checkpoint: nothing to resume"
  assert sweep.stop_reason(workdir) == "its process or job is gone (started); no checkpoint: rerunning starts it over"
  (workdir / "checkpoints" / "4.orbax-checkpoint-tmp").mkdir(parents=True)  # a save cut short
  assert sweep.latest_checkpoint(workdir) is None and sweep.status(workdir, none) == "failed"
  (workdir / "checkpoints" / "3").mkdir()
  assert sweep.latest_checkpoint(workdir) == 3
  assert sweep.status(workdir, none) == "interrupted", "gone with a checkpoint: it resumes"
  assert sweep.stop_reason(workdir) == "its process or job is gone (started); resumes from the checkpoint of step 3"
  sweep.write_state(workdir, "queued", slurm_job="77_3")
  assert sweep.status(workdir, {"77_3": "PD"}) == "pending" and sweep.status(workdir, none) == "interrupted"
  sweep.write_state(workdir, "ended", exit_code=75)
  assert sweep.status(workdir, none) == "interrupted"
  assert sweep.stop_reason(workdir) == "preempted (exit code 75); resumes from the checkpoint of step 3"
  sweep.write_state(workdir, "ended", exit_code=-9)
  assert sweep.status(workdir, none) == "failed", "a checkpoint does not make a crash an interruption"
  assert sweep.stop_reason(workdir) == "killed by signal 9"
  sweep.write_state(workdir, "ended", exit_code=1)
  (workdir / "train.log").write_text("Traceback (most recent call last):\nValueError: boom\n\n")
  assert sweep.status(workdir, none) == "failed" and sweep.stop_reason(workdir) == "ValueError: boom"
  (workdir / "summary.json").write_text(json.dumps({"status": "ok"}))
  assert sweep.status(workdir, none) == "ok"
  assert sweep.EXIT_PREEMPTED == checkpoint.EXIT_PREEMPTED
  assert tuple(sweep.STATUS_STYLE) == sweep.STATUSES and len(set(sweep.STATUS_STYLE.values())) == len(sweep.STATUSES)
  assert set(sweep.RELAUNCH) == {"failed", "interrupted", "missing"}


def test_a_reused_pid_is_not_the_run_process(tmp_path):
  """A pid recorded before a reboot (or long ago) may name another process now: the process's start time,
  recorded with its pid, tells them apart, so the run is not `running` for ever but relaunched."""
  run = sweep.make_run("configs/lm.py:10k", TINY)
  workdir = sweep.prepare(run, tmp_path)
  state = sweep.read_state(workdir)
  assert state["pid"] == os.getpid() and state["pid_start"] == sweep.process_start(os.getpid()) is not None
  assert sweep.status(workdir, {}) == "pending"
  boot, ticks = state["pid_start"].split("/")
  here = {"host": socket.gethostname(), "pid": os.getpid()}
  sweep.write_state(workdir, "started", **here, pid_start=f"{boot}/{int(ticks) - 1}")
  assert sweep.status(workdir, {}) == "failed", "an earlier process of this pid: gone before its first checkpoint"
  sweep.write_state(workdir, "started", **here, pid_start=f"another-boot/{ticks}")
  assert sweep.status(workdir, {}) == "failed"
  (workdir / "checkpoints" / "3").mkdir(parents=True)
  assert sweep.status(workdir, {}) == "interrupted" and "interrupted" in sweep.RELAUNCH
  sweep.write_state(workdir, "started", **here, pid_start=state["pid_start"])
  assert sweep.status(workdir, {}) == "running"


def test_a_requeued_slurm_job_is_pending_and_not_submitted_again(tmp_path):
  """`scontrol requeue` (or SLURM requeueing after a node failure) stops the task, which records its end
  (exit 75), and queues it again: while SLURM lists it, the run is pending (running once it runs), and
  rerunning the sweep submits nothing for it; once SLURM has let it go, the run is interrupted and resubmitted."""
  path = write_experiment(tmp_path / "one.py", '  return [sweep.make_run("configs/lm.py:10k", TINY)]')
  root = tmp_path / "runs"
  (run,) = sweep.load_experiment(path)
  workdir = sweep.prepare(run, root)
  (workdir / "checkpoints" / "3").mkdir(parents=True)
  sweep.write_state(workdir, "ended", exit_code=75, host=socket.gethostname(), pid=1, slurm_job="77_0")
  assert sweep.status(workdir, {"77_0": "PD", "78": "R"}) == "pending"
  assert sweep.status(workdir, {"77_0": "R"}) == "running"
  assert sweep.status(workdir, {"77_1": "PD"}) == sweep.status(workdir, None) == "interrupted"

  env = stand_ins(tmp_path, squeue='printf "$SQUEUE_OUT"', sbatch="echo 91")
  launch = ["--experiment", path, "--root", str(root), "--launcher", "slurm"]
  queued = subprocess.run([sys.executable, "-m", "scaling.sweep", *launch], capture_output=True, text=True,
                          env={**env, "SQUEUE_OUT": "77_0 PD\n"}, timeout=120)
  assert queued.returncode == 0, queued.stderr
  assert not any(c.startswith("sbatch") for c in calls(tmp_path)), "no second job for a run SLURM still holds"
  assert [r["status"] for r in read_csv(root / "results.csv")] == ["pending"]
  gone = subprocess.run([sys.executable, "-m", "scaling.sweep", *launch], capture_output=True, text=True,
                        env={**env, "SQUEUE_OUT": ""}, timeout=120)
  assert "submitted 1 runs as SLURM job array 91" in gone.stdout, gone.stderr
  assert sweep.read_state(workdir)["slurm_job"] == "91_0"


def test_collect_reports_interrupted_runs_apart_from_failed_ones(tmp_path, capsys):
  path = write_experiment(tmp_path / "three.py", SEEDS)
  root = tmp_path / "runs"
  runs = sweep.load_experiment(path)
  workdirs = [sweep.prepare(run, root) for run in runs]
  for workdir, code in zip(workdirs, (75, 1, 0)):
    sweep.write_state(workdir, "ended", exit_code=code)
  (workdirs[0] / "checkpoints" / "3").mkdir(parents=True)
  (workdirs[1] / "train.log").write_text("error: out of memory\n")
  (workdirs[2] / "summary.json").write_text(json.dumps({"status": "ok", "D": 640}))

  out = io.StringIO()
  rows = sweep.run_sweep(path, root=root, collect=True, console=Console(file=out, width=200, force_terminal=True,
                                                                         color_system="standard"))
  assert [r["status"] for r in rows] == ["interrupted", "failed", "ok"]
  written = read_csv(root / "results.csv", ["seed"])  # the axis that tells the runs apart
  assert [(r["status"], r["seed"]) for r in written] == [("interrupted", "0"), ("failed", "1"), ("ok", "2")]
  table = out.getvalue()
  assert "\x1b[35minterrupted" in table, "magenta in the live table"
  assert "1 ok, 1 failed, 1 interrupted" in table and " 3/5 " in table, "an interrupted run shows its checkpoint step"
  for run in runs:  # each run's seed, the hyperparameter that tells them apart, beside its id
    assert re.search(rf"{run.id}\s+{run.config.seed}\s+", table)

  argv = ["--experiment", path, "--root", str(root), "--collect"]
  assert sweep.main(argv) == 1, "a failed run makes it an error"
  err = capsys.readouterr().err.splitlines()
  train_log = lambda i: f"[{workdirs[i] / 'train.log'}]"  # noqa: E731
  assert err == [
      f"error: 1 of 3 runs failed (marked in {root / 'results.csv'}; rerunning the sweep retries them):",
      f"  {runs[1].id}: error: out of memory  {train_log(1)}",
      f"1 of 3 runs interrupted (resume with: python -m scaling.sweep --experiment {path} --root {root}):",
      f"  {runs[0].id}: preempted (exit code 75); resumes from the checkpoint of step 3  {train_log(0)}"]

  (workdirs[1] / "summary.json").write_text(json.dumps({"status": "ok"}))
  assert sweep.main([*argv, "--only", runs[0].id[-8:], "--jobs", "2"]) == checkpoint.EXIT_PREEMPTED
  assert capsys.readouterr().err.splitlines()[0] == (
      f"1 of 3 runs interrupted (resume with: python -m scaling.sweep --experiment {path} --root {root} "
      f"--only {runs[0].id[-8:]} --jobs 2):")
  assert sweep.main([*argv, "--only", runs[1].id[-8:]]) == checkpoint.EXIT_PREEMPTED
  assert "--only" not in capsys.readouterr().err, "an --only that leaves the interrupted run out is dropped"
  (workdirs[0] / "summary.json").write_text(json.dumps({"status": "ok"}))
  assert sweep.main(argv) == 0 and capsys.readouterr().err == ""


def test_the_resume_line_repeats_the_launcher_and_its_options(tmp_path):
  """Runs launched with `--launcher slurm -- --tasks-per-node 2` and then stopped (scancel): a --collect
  that gives neither still says how to resume them as they were launched, which ROOT/sweep.json records."""
  path = write_experiment(tmp_path / "three.py", SEEDS)
  root = tmp_path / "runs"
  env = stand_ins(tmp_path, squeue="", sbatch="echo 91")
  launch = subprocess.run([sys.executable, "-m", "scaling.sweep", "--experiment", path, "--root", str(root),
                           "--launcher", "slurm", "--", "--tasks-per-node", "2"], capture_output=True, text=True,
                          env=env, timeout=120)
  assert "submitted 3 runs as SLURM job array 91" in launch.stdout, launch.stderr
  assert "#SBATCH --ntasks-per-node=2\n" in (root / "slurm" / "three.sbatch").read_text()
  assert json.loads((root / sweep.SWEEP_FILE).read_text()) == {"experiment": "three", "launcher": "slurm",
                                                               "launcher_options": ["--tasks-per-node", "2"]}
  for i, run in enumerate(sweep.load_experiment(path)):  # each task preempted after its first checkpoint
    (root / run.id / "checkpoints" / "3").mkdir(parents=True)
    sweep.write_state(root / run.id, "ended", exit_code=75, slurm_job=f"91_{i}")
  collect = subprocess.run([sys.executable, "-m", "scaling.sweep", "--experiment", path, "--root", str(root),
                            "--collect"], capture_output=True, text=True, env=env, timeout=120)
  assert collect.returncode == checkpoint.EXIT_PREEMPTED, collect.stderr
  assert collect.stderr.splitlines()[0] == (
      f"3 of 3 runs interrupted (resume with: python -m scaling.sweep --experiment {path} --launcher slurm "
      f"--root {root} -- --tasks-per-node 2):")
  assert json.loads((root / sweep.SWEEP_FILE).read_text())["launcher_options"] == ["--tasks-per-node", "2"]


def test_two_experiments_in_one_root_is_an_error(tmp_path, capsys):
  """Each sweep's results.csv has the rows of its experiment only: a second experiment in the same --root
  would replace the first one's, so it is a one-line error naming both."""
  root = tmp_path / "runs"
  first = write_experiment(tmp_path / "first.py", SEEDS)
  second = write_experiment(tmp_path / "second.py", '  return [sweep.make_run("configs/lm.py:10k", TINY)]')
  assert sweep.main(["--experiment", first, "--root", str(root), "--collect"]) == 0
  assert len(read_csv(root / "results.csv", ["seed"])) == 3
  capsys.readouterr()
  for mode in (["--collect"], ["--dry-run"], []):
    assert sweep.main(["--experiment", second, "--root", str(root), *mode]) == 2
    assert capsys.readouterr().err == (f"error: --root {root} is experiment first's ({root / sweep.SWEEP_FILE}): "
                                       "second's results.csv would replace its; give second a --root of its own\n")
  assert len(read_csv(root / "results.csv", ["seed"])) == 3
  assert sorted(p.name for p in root.iterdir()) == ["results.csv", sweep.SWEEP_FILE], "nothing of the second's"
  assert sweep.main(["--experiment", first, "--root", str(root), "--collect"]) == 0


def start_exec(run_dir, training: str) -> subprocess.Popen:
  """The sweep's exec wrapper running the Python program `training` as a run in `run_dir`, in a session of its
  own, once the program has written run_dir/ready."""
  (run_dir / sweep.RUN_FILE).write_text(json.dumps({"train_args": ["-c", training]}))
  wrapper = subprocess.Popen([sys.executable, "-m", "scaling.sweep", "exec", str(run_dir)], cwd=run_dir,
                             start_new_session=True)
  deadline = time.time() + 60
  while not (run_dir / "ready").exists() and time.time() < deadline:
    time.sleep(0.05)
  return wrapper


def test_an_interrupt_reaches_training_once_and_its_exit_is_recorded(tmp_path):
  """Ctrl-C on a sweep, or SLURM cancelling a job, signals every process of a run: the exec wrapper must not
  pass it on again (a second signal stops training before its checkpoint is saved)."""
  training = "\n".join([
      "import signal, sys, time", "got = []", "signal.signal(signal.SIGINT, lambda s, f: got.append(s))",
      "open('ready', 'w').close()", "while not got: time.sleep(0.01)", "time.sleep(0.5)",
      "print('saved after', len(got), 'signal(s)')", "sys.exit(75)"])
  wrapper = start_exec(tmp_path, training)
  os.killpg(wrapper.pid, signal.SIGINT)  # as the local launcher passes an interrupt on to a run
  assert wrapper.wait(timeout=30) == 75
  assert sweep.read_state(tmp_path)["exit_code"] == 75
  assert sweep.status(tmp_path, {}) == "interrupted"
  assert (tmp_path / "train.log").read_text() == "saved after 1 signal(s)\n"


def test_a_signal_while_training_starts_up_interrupts_the_run(tmp_path):
  """SIGTERM (or Ctrl-C) before training has its handler (while it imports, compiles or restores) kills
  it: the run was stopped, as a preempted one is, not failed, and its exit is recorded so."""
  training = "import time; open('ready', 'w').close(); time.sleep(60)"
  wrapper = start_exec(tmp_path, training)
  os.killpg(wrapper.pid, signal.SIGTERM)  # as SLURM stops a job: every process of it
  assert wrapper.wait(timeout=30) == 128 + signal.SIGTERM
  assert sweep.status(tmp_path, {}) == "interrupted"
  state = sweep.read_state(tmp_path)
  assert (state["exit_code"], state["signal"]) == (-signal.SIGTERM, signal.SIGTERM)
  assert sweep.stop_reason(tmp_path) == ("stopped by signal 15 while starting up, before it could save; no "
                                         "checkpoint: rerunning starts it over")
  sweep.write_state(tmp_path, "ended", exit_code=-signal.SIGKILL, signal=signal.SIGTERM)
  assert sweep.status(tmp_path, {}) == "failed", "killed by another signal than the one that stopped it"


def test_local_sweep_marks_failures_and_skips_finished_runs(tmp_path):
  path = write_experiment(tmp_path / "tiny.py", '\n'.join([
      '  good = sweep.grid("configs/lm.py", sizes=["10k", "25k"], overrides=TINY)',
      '  return good + [sweep.make_run("configs/lm.py:10k", {**TINY, "data.dataset": "no_such_dataset"})]']))
  root = tmp_path / "runs"
  planned = {r.id: r for r in sweep.load_experiment(path)}
  result = run_cli("--experiment", path, "--root", str(root), "--jobs", "2")
  assert result.returncode == 1, result.stderr
  rows = read_csv(root / "results.csv", ["data.dataset"])  # it tells apart the two runs of 10k
  assert [r["run_id"] for r in rows] == list(planned)
  assert [r["data.dataset"] for r in rows] == ["synthetic", "synthetic", "no_such_dataset"]
  assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
  bad = rows[2]
  assert bad["N"] == str(flops.param_counts(planned[bad["run_id"]].config.model)["total"])
  assert all(bad[k] == "" for k in ("D", "C", "train_loss", "eval_loss", "wall_time_s"))
  assert "1 of 3 runs failed" in result.stderr and "no_such_dataset" in result.stderr and bad["run_id"] in result.stderr
  for row in rows[:2]:
    run = planned[row["run_id"]]
    summary = json.loads((root / run.id / "summary.json").read_text())
    assert float(row["C"]) == summary["C"] == run.flops and int(row["D"]) == 5 * 4 * 32
    assert (row["family"], row["size"], int(row["N_nonembed"])) == ("lm", run.size, summary["N_nonembed"])
    assert math.isfinite(float(row["eval_loss"])) and float(row["wall_time_s"]) > 0
    assert row["epochs"] == "", "the synthetic source is endless"
  assert "--config=configs/lm.py:10k" in (root / rows[0]["run_id"] / "run.json").read_text()

  finished = {r["run_id"]: (root / r["run_id"] / "summary.json").stat().st_mtime_ns for r in rows[:2]}
  again = run_cli("--experiment", path, "--root", str(root), "--only", "lm-10k")  # retries only the failed one
  assert again.returncode == 1 and "1 of 3 runs failed" in again.stderr
  assert finished == {i: (root / i / "summary.json").stat().st_mtime_ns for i in finished}
  assert [r["status"] for r in read_csv(root / "results.csv", ["data.dataset"])] == ["ok", "ok", "failed"]

  # --evaluate: the finished runs' final parameters on another corpus, a column of results.csv
  for i in range(6):
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / f"doc{i}.txt").write_text(f"document {i}: " + "the lazy dog sleeps. " * 80)
  corpus = ["--config.data.dataset=files", f"--config.data.files={tmp_path / 'docs'}/*.txt",
            "--config.data.val_fraction=0.5", f"--config.data.data_dir={tmp_path / 'tfds'}"]
  evaluated = run_cli("--experiment", path, "--root", str(root), "--jobs", "2", "--evaluate", *corpus,
                      "--corpus-name", "docs")
  assert evaluated.returncode == 0, evaluated.stderr
  column = "eval_loss.docs"
  rows = read_csv(root / "results.csv", ["data.dataset", column])
  assert evaluated.stderr.splitlines() == [
      "1 of 3 runs not evaluated, being unfinished (1 failed): finish them with the sweep's command, then evaluate "
      "again", f"evaluated 2 of 2 runs: {root / 'results.csv'} column {column}"]
  record = evaluate.evaluate_checkpoint(str(root / rows[0]["run_id"]), corpus, name="docs")  # as the sweep's run did
  assert rows[0][column] == str(record["eval"]["loss"]) and float(rows[1][column]) != record["eval"]["loss"]
  assert rows[2][column] == "" and record["dataset"].startswith("text_files/")
  logs = {r["run_id"]: (root / r["run_id"] / "evaluate.log").stat().st_mtime_ns for r in rows[:2]}
  corpus.append("--corpus-name=docs")
  again = run_cli("--experiment", path, "--root", str(root), "--evaluate", *corpus)
  assert again.returncode == 0 and again.stderr.splitlines()[-1] == (
      f"nothing to evaluate: every finished run has its evaluation ({column})")
  assert logs == {i: (root / i / "evaluate.log").stat().st_mtime_ns for i in logs}, "nothing evaluated again"
  # another number of batches is another evaluation; a run whose checkpoint is gone fails, with the reason
  shutil.rmtree(root / rows[1]["run_id"] / "checkpoints")
  fewer = run_cli("--experiment", path, "--root", str(root), "--evaluate", *corpus, "--config.train.eval_batches=1")
  assert fewer.returncode == 1
  assert fewer.stderr.splitlines()[-2:] == [
      "error: 1 of 2 evaluations failed (rerunning this command retries them):",
      f"  {rows[1]['run_id']}: error: --workdir {root / rows[1]['run_id']}: {root / rows[1]['run_id'] / 'checkpoints'} "
      f"has no checkpoint of step 5 (steps: none)  [{root / rows[1]['run_id'] / 'evaluate.log'}]"]
  assert json.loads(Path(record["path"]).read_text())["eval_batches"] == 1
  assert read_csv(root / "results.csv", ["data.dataset", column])[1][column] == rows[1][column], "the earlier one"
  taken = run_cli("--experiment", path, "--root", str(root), "--evaluate", "--corpus-name", "docs")  # own corpus
  assert taken.returncode == 2 and taken.stderr.splitlines()[-1] == (
      f"error: --corpus-name 'docs' names {record['dataset']} in {record['path']}, not synthetic: give this corpus "
      "another name (or remove that record)")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_preempted_run_is_interrupted_and_the_next_launch_resumes_it(tmp_path, stop):
  """Ctrl-C (or SIGTERM, as a scheduler stops a job) on a local sweep: training saves and exits 75, the run
  is interrupted (in results.csv and the closing lines), the run it had not started yet is missing as
  before (not pending), and launching the sweep again resumes the one from its checkpoint to the end."""
  path = write_experiment(tmp_path / "long.py", '\n'.join([
      '  long = sweep.grid("configs/lm.py:10k", overrides={**TINY, "train.steps": 200, "train.log_every": 1})',
      '  return long + [sweep.make_run("configs/lm.py:10k", TINY)]']))  # the 1st running when stopped, the 2nd queued
  root = tmp_path / "runs"
  run, queued = sweep.load_experiment(path)
  workdir = root / run.id
  # Started with SIGINT ignored (inherited), as `python -m scaling.sweep ... &` in a script or under nohup is:
  # Ctrl-C or kill -INT must still stop it.
  handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    proc = subprocess.Popen([sys.executable, "-m", "scaling.sweep", "--experiment", path, "--root", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  finally:
    signal.signal(signal.SIGINT, handler)
  try:
    metrics, deadline = workdir / "metrics.jsonl", time.time() + 240
    while not (metrics.exists() and metrics.stat().st_size) and proc.poll() is None and time.time() < deadline:
      time.sleep(0.05)
    proc.send_signal(stop)  # once training has begun
    _, err = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 128 + stop and "interrupted: rerun the same command to resume" in err, err[-2000:]
  step = sweep.latest_checkpoint(workdir)
  assert sweep.read_state(workdir)["exit_code"] == checkpoint.EXIT_PREEMPTED and 1 <= step < 200
  assert [r["status"] for r in read_csv(root / "results.csv")] == ["interrupted", "missing"], "never started"
  assert not (root / queued.id / sweep.STATE_FILE).exists()

  collect = run_cli("--experiment", path, "--root", str(root), "--collect")
  assert collect.returncode == checkpoint.EXIT_PREEMPTED, collect.stderr
  assert collect.stderr.splitlines() == [
      f"1 of 2 runs interrupted (resume with: python -m scaling.sweep --experiment {path} --root {root}):",
      f"  {run.id}: preempted (exit code 75); resumes from the checkpoint of step {step}  [{workdir / 'train.log'}]"]
  row = next(line for line in collect.stdout.splitlines() if run.id in line)  # the table, in full in a log too
  assert row.split()[2:4] == [f"{step}/200", "interrupted"], collect.stdout

  resumed = run_cli("--experiment", path, "--root", str(root))
  assert resumed.returncode == 0, resumed.stderr
  assert [r["status"] for r in read_csv(root / "results.csv")] == ["ok", "ok"]
  assert f"resumed from the checkpoint of step {step}" in (workdir / "train.log").read_text()
  assert json.loads((workdir / "summary.json").read_text())["steps"] == 200


def test_an_interrupted_evaluation_leaves_no_record_and_the_next_one_does_the_rest(tmp_path):
  """Ctrl-C on --evaluate: the evaluation under way stops without writing (its record is written whole or not at
  all), the sweep exits 130, and the same command again evaluates what is left."""
  path = write_experiment(tmp_path / "two.py", '  return sweep.grid("configs/lm.py", sizes=["10k", "25k"], '
                          'overrides=TINY)')
  root = tmp_path / "runs"
  assert run_cli("--experiment", path, "--root", str(root), "--jobs", "2").returncode == 0
  runs = sweep.load_experiment(path)
  more = ["--evaluate", "--config.train.eval_batches=0", "--config.train.batch_size=1"]  # the whole split, slowly
  proc = subprocess.Popen([sys.executable, "-m", "scaling.sweep", "--experiment", path, "--root", str(root), *more],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 120
    while not (root / runs[0].id / "evaluate.log").exists():  # the first evaluation has started
      assert time.time() < deadline and proc.poll() is None
      time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 130 and "interrupted: rerun the same command to resume" in err, err[-2000:]
  assert not list(root.glob("*/evals/*")), "nothing half written"
  again = run_cli("--experiment", path, "--root", str(root), *more)
  assert again.returncode == 0 and again.stderr.splitlines()[-1].startswith("evaluated 2 of 2 runs")
  for run in runs:
    record = json.loads((root / run.id / "evals" / "step5-synthetic.json").read_text())
    assert record["eval_batches"] == 0 and record["batch_size"] == 1


# --- launch.sh -------------------------------------------------------------------------------------------


def test_tpu_dry_run_matches_golden():
  result = subprocess.run(["./launch.sh", "tpu", "--tpu", "scaling-v4-32", "--zone", "us-central2-b", "--project",
                           "my-project", "--dry-run", "--", "python3", "-m", "scaling.sweep", "--experiment",
                           "experiments/chinchilla_isoflop.py", "--only", "lm-1*"],
                          capture_output=True, text=True, env={**os.environ, "TMPDIR": "/tmp"}, check=True)
  assert result.stdout == (GOLDEN / "launch_tpu_dry_run.txt").read_text()


@pytest.mark.parametrize("remote_exit,expected", [(0, 0), (1, 1), (75, 75), (255, 2)])
def test_tpu_sweep_passes_on_how_the_workers_sweep_ended(tmp_path, remote_exit, expected):
  """With a stand-in gcloud: the workers' sweep exit code (1 failed runs, 75 interrupted) is the local
  sweep's, and any other failure of launch.sh is an error naming it."""
  env = stand_ins(tmp_path, gcloud=f'[[ "$*" == *scaling.sweep* ]] && exit {remote_exit}\nexit 0')
  result = subprocess.run([sys.executable, "-m", "scaling.sweep", "--experiment", "experiments/model_size.py",
                           "--root", str(tmp_path / "r"), "--launcher", "tpu", "--", "--tpu", "pod", "--zone", "z"],
                          capture_output=True, text=True, env=env, timeout=120)
  assert result.returncode == expected, result.stderr
  assert [c.split()[4] for c in calls(tmp_path)] == ["scp", "ssh", "ssh"] and "scaling.sweep" in calls(tmp_path)[-1]
  if expected == 1:
    assert result.stderr.splitlines()[-1].startswith("error: launch.sh tpu exited with 1: runs failed on the TPU workers")
  elif expected == 75:
    assert result.stderr.splitlines()[-1].startswith("runs were interrupted on the TPU workers")
  elif expected == 2:
    assert result.stderr.splitlines()[-1] == "error: launch.sh tpu failed with exit code 255 (its message is above)"


def test_tpu_sweep_always_runs_the_workers_sweep_on_the_experiment_it_ships(tmp_path):
  """What to launch is the workers' sweep's to decide, from the root they see: runs finished in a root
  of that name here (a local pilot) launch nothing here but still the workers' sweep, with the
  experiment's path in the checkout that launch.sh copies there (their working directory); --collect
  collects there and --evaluate evaluates there. An experiment file outside that checkout, which they would not have, is an error."""
  root = tmp_path / "r"
  for run in sweep.load_experiment("experiments/model_size.py"):
    (root / run.id).mkdir(parents=True)
    (root / run.id / "summary.json").write_text(json.dumps({"status": "ok"}))
  env = stand_ins(tmp_path, gcloud="exit 0")
  for extra, forwarded in (([], ""), (["--collect", "--only", "lm-1m"], " --only lm-1m --collect"),
                           (["--evaluate", "--config.data.dataset=files", "--config.data.files=notes/*.md"],
                            " --evaluate --config.data.dataset=files '--config.data.files=notes/*.md'")):
    result = subprocess.run([sys.executable, "-m", "scaling.sweep", "--experiment",
                             str(Path("experiments/model_size.py").resolve()), "--root", str(root), "--launcher", "tpu",
                             *extra, "--", "--tpu", "pod", "--zone", "z"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and result.stdout == "", result.stderr
    assert calls(tmp_path)[-1] == ("gcloud compute tpus tpu-vm ssh pod --worker=all --zone=z --command cd ~/scaling && "
                                   f"python3 -m scaling.sweep --experiment experiments/model_size.py --root {root}"
                                   f"{forwarded}")
  assert len(calls(tmp_path)) == 9 and not (root / "results.csv").exists()

  outside = write_experiment(tmp_path / "three.py", SEEDS)
  result = run_cli("--experiment", outside, "--root", str(root), "--launcher", "tpu", "--", "--tpu", "pod", "--zone",
                   "z")
  assert result.returncode == 2 and result.stderr == (
      f"error: --launcher tpu: {outside} is not among the files launch.sh tpu copies to the workers (those of the "
      f"checkout {Path.cwd()} that git does not ignore): move it there, e.g. to experiments/\n")
  assert len(calls(tmp_path)) == 9, "nothing launched"


def test_launch_sh_tpu_outside_a_git_checkout_is_an_error(tmp_path):
  """launch.sh tpu ships the files git lists: a copy of the code without .git would ship an empty archive
  (and the workers run whatever they had), so it stops before copying anything."""
  copy = tmp_path / "code"
  copy.mkdir()
  shutil.copy("launch.sh", copy)
  env = stand_ins(tmp_path, gcloud="exit 0")
  result = subprocess.run([str(copy / "launch.sh"), "tpu", "--tpu", "pod", "--zone", "z", "--", "echo", "hi"],
                          capture_output=True, text=True, env=env)
  assert result.returncode == 2 and result.stderr == (
      f"launch.sh: tpu: {copy} is not a git checkout, whose files (as git lists them) tpu copies: run it from a "
      "clone\n")
  assert calls(tmp_path) == [] and not (tmp_path / "scaling-pod.tar.gz").exists()


def test_sweep_tpu_and_slurm_dry_runs(tmp_path):
  path = write_experiment(tmp_path / "three.py", SEEDS)
  root = tmp_path / "runs"
  tpu = run_cli("--experiment", "experiments/model_size.py", "--root", str(root), "--launcher", "tpu", "--dry-run",
                "--", "--tpu", "pod", "--zone", "z")
  assert tpu.returncode == 0, tpu.stderr
  assert (f"--worker=all --zone=z --command 'cd ~/scaling && python3 -m scaling.sweep --experiment "
          f"experiments/model_size.py --root {root}'\n") in tpu.stdout
  slurm = run_cli("--experiment", path, "--root", str(root), "--launcher", "slurm", "--dry-run", "--",
                  "--tasks-per-node", "2", "--partition", "cpu")
  assert slurm.returncode == 0, slurm.stderr
  workdirs = " ".join(str(root / r.id) for r in sweep.load_experiment(path))
  for line in ["#SBATCH --job-name=three", "#SBATCH --ntasks-per-node=2", "#SBATCH --partition=cpu",
               "#SBATCH --array=0-2", f"#SBATCH --output={root}/slurm/%x-%A_%a.out",
               f"srun --kill-on-bad-exit=1 {sys.executable} -m scaling.sweep exec {workdirs}",
               f"sbatch --parsable {root}/slurm/three.sbatch"]:
    assert line + "\n" in slurm.stdout
  assert not root.exists(), "a dry run writes nothing"


def test_evaluations_are_a_slurm_job_array_of_their_own(tmp_path):
  """--evaluate on SLURM: a job array named <experiment>-evaluate whose tasks run `exec --evaluate` with the
  overrides (its dry run, and the local one's commands); while such a job is queued, submitting another, which
  would evaluate the same runs, is an error."""
  path = write_experiment(tmp_path / "three.py", SEEDS)
  root = tmp_path / "runs"
  runs = sweep.load_experiment(path)
  for run in runs:  # finished, as far as the sweep can tell
    (root / run.id).mkdir(parents=True)
    (root / run.id / "summary.json").write_text(json.dumps({"status": "ok", "steps": 5}))
  evaluate_args = ["--experiment", path, "--root", str(root), "--evaluate", "--config.train.eval_batches=4"]
  local = run_cli(*evaluate_args, "--dry-run")
  assert local.returncode == 0, local.stderr
  assert [line for line in local.stdout.splitlines() if line.startswith("python")] == [
      f"python -m scaling.evaluate --workdir={root / run.id} --step=5 --config.train.eval_batches=4" for run in runs]
  slurm = run_cli(*evaluate_args, "--launcher", "slurm", "--dry-run")
  assert slurm.returncode == 0, slurm.stderr
  workdirs = " ".join(str(root / run.id) for run in runs)
  for line in ["#SBATCH --job-name=three-evaluate", "#SBATCH --array=0-2",
               f"srun --kill-on-bad-exit=1 {sys.executable} -m scaling.sweep exec --evaluate "
               f"--config.train.eval_batches=4 {workdirs}"]:
    assert line + "\n" in slurm.stdout
  env = stand_ins(tmp_path, squeue='[[ "$*" == *"-n three-evaluate"* ]] && echo 41', sbatch="exit 1")
  queued = subprocess.run([sys.executable, "-m", "scaling.sweep", *evaluate_args, "--launcher", "slurm"],
                          capture_output=True, text=True, env=env, timeout=120)
  assert queued.returncode == 2 and queued.stderr == (
      "error: SLURM job 41 (three-evaluate) still evaluates this sweep's runs: wait for it to end (or scancel it), "
      "then evaluate what it left\n")
  assert [c.split()[0] for c in calls(tmp_path)] == ["squeue"], "nothing submitted"


def test_the_evaluation_report_counts_the_runs_only_selects(capsys):
  rows = [{"run_id": "lm-10k-a", "status": "ok"}, {"run_id": "lm-10k-b", "status": "failed"},
          {"run_id": "lm-25k-c", "status": "missing"}, {"run_id": "lm-25k-d", "status": "ok"}]
  args = argparse.Namespace(launcher="local", dry_run=False, root="r", experiment="e.py", only="lm-10k", wait=False)
  evaluated = sweep.Evaluated(rows, ["eval_loss.docs"], ["lm-10k-a"], ["lm-10k-a"])
  assert sweep.report_evaluation(evaluated, args) == 1
  assert capsys.readouterr().err.splitlines() == [
      "1 of 2 runs not evaluated, being unfinished (1 failed): finish them with the sweep's command, then evaluate "
      "again", "evaluated 0 of 1 runs: r/results.csv column eval_loss.docs",
      "error: 1 of 1 evaluations failed (rerunning this command retries them):",
      "  lm-10k-a: nothing in evaluate.log  [r/lm-10k-a/evaluate.log]"]
  args.only, args.launcher = None, "slurm"  # submitted, not followed: nothing to say of the evaluations yet
  assert sweep.report_evaluation(dataclasses.replace(evaluated, missing=["lm-10k-a"]), args) == 0
  assert capsys.readouterr().err.splitlines() == [
      "2 of 4 runs not evaluated, being unfinished (1 failed, 1 missing): finish them with the sweep's command, "
      "then evaluate again"]


def test_launch_sh_local_and_bad_options():
  assert subprocess.run(["./launch.sh", "local", "--", "echo", "a b"], capture_output=True, text=True).stdout == "a b\n"
  dry = subprocess.run(["./launch.sh", "local", "--dry-run", "--", "echo", "a b"], capture_output=True, text=True)
  assert dry.stdout == "echo 'a b'\n"
  bad = subprocess.run(["./launch.sh", "slurm", "--gpus", "8", "--", "true"], capture_output=True, text=True)
  assert bad.returncode == 2 and bad.stderr == "launch.sh: slurm: unknown option --gpus (see ./launch.sh --help)\n"


# --- SLURM for real ----------------------------------------------------------------------------------------


def slurm_skip_reason() -> str | None:
  if shutil.which("sbatch") is None:
    return "sbatch not found: apt-get install slurmctld slurmd munge slurm-client, then scripts/slurm_local.sh"
  state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
  if state.returncode != 0 or not {"idle", "mix", "alloc"} & set(state.stdout.split()):
    return f"no idle SLURM node (sinfo: {(state.stdout + state.stderr).strip()!r}): start scripts/slurm_local.sh"
  return None


SLURM_SKIP = slurm_skip_reason()


@pytest.mark.slow
@pytest.mark.skipif(SLURM_SKIP is not None, reason=SLURM_SKIP or "")
def test_slurm_job_array_of_two_process_runs(tmp_path):
  path = write_experiment(tmp_path / "sweep_test_array.py", SEEDS)
  root = tmp_path / "runs"
  try:
    result = run_cli("--experiment", path, "--root", str(root), "--launcher", "slurm", "--wait", "--",
                     "--tasks-per-node", "2", timeout=240)
  finally:
    subprocess.run(["scancel", "--name", "sweep_test_array"])  # nothing left behind if the wait timed out
  assert result.returncode == 0, result.stderr
  rows = read_csv(root / "results.csv", ["seed"])
  assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"}
  for row in rows:
    workdir = root / row["run_id"]
    assert (workdir / "train.log").exists() and (workdir / "train.1.log").exists()  # one log per process
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["num_devices"] == 2 and int(row["D"]) == summary["D"] == 5 * 4 * 32
  assert sweep.read_state(root / rows[0]["run_id"])["slurm_job"].endswith("_0")  # task 0 ran run 0
  # evaluated with more of the split as a job array of 2-process tasks: as one process evaluates here
  try:
    evaluated = run_cli("--experiment", path, "--root", str(root), "--launcher", "slurm", "--wait", "--evaluate",
                        "--config.train.eval_batches=4", "--", "--tasks-per-node", "2", timeout=240)
  finally:
    subprocess.run(["scancel", "--name", "sweep_test_array-evaluate"])
  assert evaluated.returncode == 0, evaluated.stderr
  for row in read_csv(root / "results.csv", ["seed", "eval_loss.synthetic"]):
    assert (root / row["run_id"] / "evaluate.1.log").exists()
    record = evaluate.evaluate_checkpoint(str(root / row["run_id"]), ["--config.train.eval_batches=4"])
    assert float(row["eval_loss.synthetic"]) == pytest.approx(record["eval"]["loss"], abs=1e-5)
    assert float(row["eval_loss.synthetic"]) != float(row["eval_loss"]), "4 batches, not the run's 2"


@pytest.mark.slow
@pytest.mark.skipif(SLURM_SKIP is not None, reason=SLURM_SKIP or "")
def test_slurm_requeued_run_is_pending_and_not_submitted_twice(tmp_path):
  """`scontrol requeuehold` stops a running task (training saves and exits 75) and queues it again: the
  run is pending while SLURM holds it, and launching the sweep again submits nothing for it."""
  path = write_experiment(tmp_path / "sweep_test_requeue.py", '  return sweep.grid("configs/lm.py:10k", overrides={'
                          '**TINY, "train.steps": 2000, "train.log_every": 1})')
  root = tmp_path / "runs"
  (run,) = sweep.load_experiment(path)
  workdir = root / run.id
  try:
    submit = run_cli("--experiment", path, "--root", str(root), "--launcher", "slurm")
    job = sweep.read_state(workdir)["slurm_job"]
    assert job.endswith("_0"), submit.stderr
    deadline = time.time() + 180
    while not (workdir / "metrics.jsonl").exists() and time.time() < deadline:  # training has begun
      time.sleep(0.5)
    subprocess.run(["scontrol", "requeuehold", job], check=True)
    while sweep.read_state(workdir).get("state") != "ended" and time.time() < deadline:
      time.sleep(0.5)
    assert sweep.read_state(workdir)["exit_code"] == checkpoint.EXIT_PREEMPTED
    while sweep.slurm_queue().get(job) != "PD" and time.time() < deadline:  # completing (CG), then pending
      time.sleep(0.5)
    assert sweep.slurm_queue()[job] == "PD"
    collect = run_cli("--experiment", path, "--root", str(root), "--collect")
    assert collect.returncode == 0 and [r["status"] for r in read_csv(root / "results.csv")] == ["pending"]
    again = run_cli("--experiment", path, "--root", str(root), "--launcher", "slurm")
    assert again.returncode == 0 and "submitted" not in again.stdout, again.stderr
    assert [j for j in sweep.slurm_queue() if j.split("_")[0] == job.split("_")[0]] == [job]
  finally:
    subprocess.run(["scancel", "--name", "sweep_test_requeue"])
