"""Sweeps: expand an experiment into runs, launch them (here, on SLURM, on a TPU VM), collect results.

  python -m scaling.sweep --experiment experiments/cpu_isoflop.py [--launcher local|slurm|tpu]
      [--dry-run] [--only PATTERN] [--root DIR] [--jobs K] [--wait] [--collect] [-- LAUNCH.SH OPTIONS]
  python -m scaling.sweep --experiment experiments/cpu_isoflop.py --evaluate --config.data.dataset=files
      --config.data.files='notes/*.md' [--config.train.eval_batches=0] [--corpus-name NAME]
      [the options above but --collect]

An experiment file defines `runs()`, returning Runs built with `grid` (a base config plus the axes
that vary) or `isoflop` (FLOP budgets x model shapes around the expected optimum, each run's steps set
so that its training FLOPs hit its budget). A run is a config spec plus overrides; its id,
family-size-<hash of both>, names its workdir ROOT/ID (ROOT defaults to runs/<experiment name>).

Idempotent: runs whose summary.json says ok are skipped, and so are runs still queued or running; the
others (failed, interrupted, missing) are (re)launched with the same command, which resumes from the
run's latest checkpoint. Each launch ends by writing ROOT/results.csv, one row per run (failed and
interrupted ones marked, never dropped); the sweep exits with 1 when a run failed, else with 75 when a
run was interrupted (preempted, or its process or job gone, with a checkpoint to resume from), naming
the command that resumes them: with the launcher and options that launched them, which ROOT/sweep.json
records, with the experiment whose root it is (another experiment's root is an error).

--evaluate launches, instead of training, `python -m scaling.evaluate` on each finished run's final
parameters with the --config overrides given (the corpus), where that corpus's evaluation is not recorded
yet; results.csv gains a column eval_loss.<corpus>, which `scaling.analyze --loss-col` fits.

Launchers
  local  here, --jobs runs at a time, under a live table of the sweep
  slurm  one job array through `launch.sh slurm`, options after `--` (e.g. `-- --nodes 2
         --gpus-per-node 8`); --wait follows the job to its end, --collect refreshes the CSV later
  tpu    this sweep with the local launcher on every worker of a TPU VM, through `launch.sh tpu`
         (`-- --tpu NAME --zone Z`), which decides there what to launch (or collects, with --collect);
         the experiment file must be in the checkout launch.sh copies, ROOT on storage the workers share
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import hashlib
import importlib.util
import itertools
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from scaling import raise_on_ctrl_c
from scaling.errors import UserError

if TYPE_CHECKING:
  import ml_collections

RESULT_COLUMNS = ("run_id", "family", "size", "N", "N_nonembed", "D", "C", "C_chinchilla",
                  "train_loss", "eval_loss", "dataset", "epochs", "wall_time_s", "status")
SUMMARY_COLUMNS = RESULT_COLUMNS[3:-1]  # copied from summary.json
EVAL_LOSS_PREFIX = "eval_loss."  # + a corpus: the column of the final parameters' loss on it (scaling.evaluate)
TOLERANCE = 0.01  # planned tokens or FLOPs come within 1% of their target
RUN_FILE = "run.json"  # in each workdir: the run's spec, overrides and training command
STATE_FILE = "sweep_state.json"  # in each workdir: queued | started | ended (+ exit code), by the launchers
SWEEP_FILE = "sweep.json"  # in ROOT: the experiment whose sweep it is, and the launcher (+ options) it last used
EXIT_PREEMPTED = 75  # scaling.checkpoint.EXIT_PREEMPTED (not imported here: it loads JAX)
SLURM_RUNNING = ("R", "CG")  # squeue's states of a job on its nodes; any other it lists waits (PD, requeued, held)
STATUSES = ("ok", "failed", "interrupted", "running", "pending", "missing")  # what status() returns
LAUNCH_SH = Path(__file__).resolve().parents[1] / "launch.sh"


class SweepError(UserError):
  """A mistake in an experiment or in the sweep's command line."""


class Terminated(KeyboardInterrupt):
  """SIGTERM on the sweep (a scheduler stopping it): handled as Ctrl-C is, each run saving and stopping."""


class RemoteSweepStopped(Exception):
  """The sweep on the TPU workers ended with failed runs (`code` 1) or interrupted ones (75)."""

  def __init__(self, code: int):
    super().__init__(code)
    self.code = code


# ---------------------------------------------------------------------------------------------------
# Runs and their ids


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
  """One training run: `python -m scaling.train --config=SPEC --workdir=ROOT/ID --config.k=v ...`."""

  id: str
  spec: str  # 'configs/lm.py:1m'
  overrides: dict  # {'train.steps': 120, ...}: sorted, each value of its field's type
  config: ml_collections.ConfigDict  # validated, vocabulary resolved
  budget: float | None = None  # the FLOP budget an IsoFLOP run was sized for

  @property
  def family(self) -> str:
    return self.config.family

  @property
  def size(self) -> str:
    return self.config.size

  @property
  def flops(self) -> float:
    """The run's planned training FLOPs C (PaLM count, as summary.json reports it)."""
    from scaling import flops

    t, seq = self.config.train, self.config.data.seq_len
    return flops.flops_per_token(self.config.model, seq) * t.steps * t.batch_size * seq

  def train_args(self, workdir) -> list[str]:
    """The training command after `python`."""
    return ["-m", "scaling.train", f"--config={self.spec}", f"--workdir={workdir}",
            *(f"--config.{k}={v}" for k, v in self.overrides.items())]


def run_id(family: str, size: str, spec: str, overrides: Mapping) -> str:
  """family-size-<first 8 hex digits of sha256 over the spec and the sorted overrides>: the run-id formula."""
  key = json.dumps({"spec": spec, "overrides": dict(overrides)}, sort_keys=True)
  return f"{family}-{size}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _field(config, dotted: str):
  for name in dotted.split("."):
    config = config[name]
  return config


def _normalize_spec(spec: str) -> str:
  path, sep, arg = spec.partition(":")
  return Path(os.path.normpath(path)).as_posix() + sep + arg


def _load(spec: str, overrides: Mapping, validate: bool = True):
  """The config of `spec` with `overrides`, vocabulary resolved; validated unless it only sizes a
  design. Mistakes are SweepErrors naming the run."""
  from scaling import config as config_lib, train

  try:
    if validate:
      config = config_lib.load(spec, overrides)
    else:
      config = config_lib.load_file(spec)
      config_lib.apply_overrides(config, overrides)
    return train.resolve(config)[0]
  except UserError as e:
    raise SweepError(f"{spec} {_describe(overrides)}: {e}") from None


def make_run(spec: str, overrides: Mapping | None = None, budget: float | None = None) -> Run:
  """The Run of `spec` with `overrides`, validated; its overrides are stored sorted and typed."""
  spec, overrides = _normalize_spec(spec), dict(overrides or {})
  config = _load(spec, overrides)
  resolved = {k: _field(config, k) for k in sorted(overrides)}
  return Run(run_id(config.family, config.size, spec, resolved), spec, resolved, config, budget)


def _describe(overrides: Mapping) -> str:
  return " ".join(f"{k}={v}" for k, v in overrides.items()) or "(no overrides)"


# ---------------------------------------------------------------------------------------------------
# Designs: grids and IsoFLOP


def fit_steps(target: float, per_sequence: float, batch_sizes: Sequence[int]) -> tuple[int, int] | None:
  """(batch_size, steps): the first batch size whose steps x batch x per_sequence comes within 1% of
  `target` (tokens or FLOPs); None when none does."""
  for batch in batch_sizes:
    steps = round(target / (batch * per_sequence))
    if steps > 0 and abs(steps * batch * per_sequence - target) <= TOLERANCE * target:
      return batch, steps
  return None


def _with_warmup(fields: dict, steps: int, warmup_fraction: float | None) -> dict:
  fields = {**fields, "train.steps": steps}
  if warmup_fraction is not None:
    fields["optim.warmup_steps"] = round(warmup_fraction * steps)
  return fields


def grid(config: str, *, sizes: Sequence[str] = (), tokens: Sequence[float] = (),
         axes: Mapping[str, Sequence] | None = None, overrides: Mapping | None = None,
         warmup_fraction: float | None = None) -> list[Run]:
  """Every combination of sizes x token budgets x axis values: a base config plus the axes that vary.

  config: a config spec; with `sizes`, the file alone ('configs/lm.py') and each size is appended.
  tokens: training tokens D per run; steps = D / (batch_size x seq_len), which must come within 1%.
  axes: config fields and their values, e.g. {'optim.lr': [1e-3, 3e-3], 'seed': [0, 1]}.
  overrides: fields set in every run.
  warmup_fraction: optim.warmup_steps = this fraction of each run's steps.
  """
  axes, overrides = dict(axes or {}), dict(overrides or {})
  specs = [f"{config}:{size}" for size in sizes] or [config]
  runs = []
  for spec, d, values in itertools.product(specs, list(tokens) or [None], itertools.product(*axes.values())):
    fields = {**overrides, **dict(zip(axes, values))}
    if d is not None:
      draft = _load(spec, fields, validate=False)
      seq, batch = draft.data.seq_len, draft.train.batch_size
      fit = fit_steps(d, seq, [batch])
      if fit is None:
        raise SweepError(f"{spec}: tokens={d:g} is not within 1% of a whole number of steps of {batch} x {seq} "
                         f"tokens; use a multiple of {batch * seq}")
      fields = _with_warmup(fields, fit[1], warmup_fraction)
    elif warmup_fraction is not None:
      fields = _with_warmup(fields, _load(spec, fields, validate=False).train.steps, warmup_fraction)
    runs.append(make_run(spec, fields))
  return runs


@dataclasses.dataclass(frozen=True)
class _Shape:
  """A model size as an IsoFLOP design sees it."""

  n: int  # total parameters
  flops_per_token: float
  seq: int
  batch: int
  spec: str

  def steps(self, budget: float) -> float:
    """Steps of the configured batch size that spend `budget` FLOPs (unrounded)."""
    return budget / (self.flops_per_token * self.seq * self.batch)


def isoflop(config: str, budgets: Sequence[float], *, sizes: Sequence[str], num_sizes: int = 4,
            overrides: Mapping | None = None, tokens_per_param: float = 20.0, min_steps: int = 20,
            batch_multiple: int = 1, warmup_fraction: float = 0.05,
            axes: Mapping[str, Sequence] | None = None) -> list[Run]:
  """An IsoFLOP design: for each budget C, `num_sizes` shapes of consecutive size around the expected
  optimum, each trained for the steps that make its FLOPs C within 1%; with `axes` ({'optim.lr': [1e-3,
  3e-3]}), each shape once for every combination of their values, which must leave its FLOPs as they are
  (a learning-rate sweep at every point: `scaling.analyze --repeats best`).

  config: the family's config file ('configs/lm.py'); sizes: its shapes (e.g. lm.LADDER), any order.
  The expected optimum is the shape whose tokens D = C / FLOPs-per-token come closest to
  `tokens_per_param` x N (Chinchilla: 20). Shapes that would train fewer than `min_steps` steps at
  the configured batch size are left out; a budget that leaves fewer than `num_sizes` is an error.
  Steps are rounded at the configured batch size, or the largest smaller multiple of `batch_multiple`
  (keep it divisible by the process count) whose rounding stays within 1%.
  """
  from scaling import flops

  overrides, axes = dict(overrides or {}), dict(axes or {})
  shapes = []
  for size in sizes:
    spec = f"{config}:{size}"
    draft = _load(spec, overrides, validate=False)
    seq = draft.data.seq_len
    if draft.train.batch_size % batch_multiple:
      raise SweepError(f"isoflop: train.batch_size={draft.train.batch_size} is not a multiple of "
                       f"batch_multiple={batch_multiple}")
    shapes.append(_Shape(flops.param_counts(draft.model)["total"], flops.flops_per_token(draft.model, seq), seq,
                         draft.train.batch_size, spec))
  shapes.sort(key=lambda s: s.n)
  if len(shapes) < num_sizes:
    raise SweepError(f"isoflop: num_sizes={num_sizes}, but only {len(shapes)} sizes are given")
  runs = []
  for budget in sorted(budgets):
    feasible = [s for s in shapes if s.steps(budget) >= min_steps]
    if len(feasible) < num_sizes:
      first_out = shapes[len(feasible)]
      raise SweepError(
          f"isoflop: budget {budget:.3g} FLOPs is too small for {num_sizes} sizes: {first_out.spec} would train "
          f"{first_out.steps(budget):.1f} steps of batch {first_out.batch} (min_steps={min_steps}); raise the "
          f"budget to at least {budget * min_steps / first_out.steps(budget):.3g} FLOPs or lower num_sizes "
          "or train.batch_size")
    # the expected optimum: the shape whose tokens per parameter come closest to tokens_per_param
    distance = [abs(math.log(budget / s.flops_per_token / s.n / tokens_per_param)) for s in feasible]
    center = distance.index(min(distance))
    start = min(max(center - (num_sizes - 1) // 2, 0), len(feasible) - num_sizes)
    chosen = feasible[start:start + num_sizes]
    per_param = [budget / s.flops_per_token / s.n for s in chosen]  # tokens per parameter, largest first
    if not per_param[0] > tokens_per_param > per_param[-1]:  # the ladder ends before the expected optimum
      few = per_param[0] <= tokens_per_param
      edge = chosen[0] if few else chosen[-1]
      raise SweepError(
          f"isoflop: budget {budget:.3g} FLOPs: its shapes {chosen[0].spec} to {chosen[-1].spec} train "
          f"{per_param[-1]:.3g} to {per_param[0]:.3g} tokens per parameter, all {'below' if few else 'above'} "
          f"tokens_per_param={tokens_per_param:g}, so their IsoFLOP curve would have no minimum; "
          + (f"raise the budget above {edge.flops_per_token * edge.n * tokens_per_param:.3g} FLOPs or add smaller sizes"
             if few else
             f"lower the budget below {edge.flops_per_token * edge.n * tokens_per_param:.3g} FLOPs or add larger sizes"))
    for shape in chosen:
      fit = fit_steps(budget, shape.flops_per_token * shape.seq, range(shape.batch, 0, -batch_multiple))
      if fit is None:
        raise SweepError(f"isoflop: no batch size (a multiple of {batch_multiple}, at most {shape.batch}) brings "
                         f"{shape.spec}'s FLOPs within 1% of the budget {budget:.3g}; raise the budget")
      fields = _with_warmup({**overrides, "train.batch_size": fit[0]}, fit[1], warmup_fraction)
      for values in itertools.product(*axes.values()):
        run = make_run(shape.spec, {**fields, **dict(zip(axes, values))}, budget=budget)
        if abs(run.flops - budget) > TOLERANCE * budget:
          raise SweepError(f"isoflop: axes {_describe(dict(zip(axes, values)))} make {shape.spec} spend "
                           f"{run.flops:.3g} FLOPs, not within 1% of the budget {budget:.3g}; vary fields that "
                           "leave a run's FLOPs as they are (optim.*, seed)")
        runs.append(run)
  return runs



# ---------------------------------------------------------------------------------------------------
# Experiments


def load_experiment(given: str) -> list[Run]:
  """The runs an experiment file's runs() returns; mistakes in it are SweepErrors naming the file. A
  shipped experiment (experiments/NAME.py) is found from any directory."""
  from scaling.config import find_file

  path = find_file(given)
  if path is None:
    raise SweepError(f"--experiment: no such file {given!r} (expected e.g. experiments/cpu_isoflop.py)")
  module_spec = importlib.util.spec_from_file_location(f"_scaling_experiment_{Path(path).stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not callable(getattr(module, "runs", None)):
    raise SweepError(f"{path} defines no runs() (see experiments/model_size.py for the form)")
  try:
    runs = list(module.runs())
  except UserError as e:
    raise SweepError(f"{path}: {e}") from None
  if not runs or not all(isinstance(r, Run) for r in runs):
    raise SweepError(f"{path}: runs() must return a non-empty list of Runs (from sweep.grid, sweep.isoflop "
                     "or sweep.make_run)")
  seen = {}
  for run in runs:
    if run.id in seen:
      raise SweepError(f"{path}: run {run.id} ({run.spec} {_describe(run.overrides)}) is defined twice")
    seen[run.id] = run
  return runs


def matches(run_id: str, only: str) -> bool:
  """Whether --only's glob matches the run id (anywhere in it)."""
  return fnmatch.fnmatchcase(run_id, f"*{only}*")


def select(runs: list[Run], only: str | None) -> list[Run]:
  """The runs whose id matches the glob `only` anywhere (all runs when None)."""
  if only is None:
    return runs
  chosen = [r for r in runs if matches(r.id, only)]
  if not chosen:
    raise SweepError(f"--only {only!r} matches none of the {len(runs)} run ids (e.g. {runs[0].id})")
  return chosen


# ---------------------------------------------------------------------------------------------------
# Workdir state: what the launchers record, and the status each run has


def _read_json(path) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):  # absent, or being written
    return None


def _write_json(path, value: dict) -> None:
  tmp = f"{path}.tmp.{socket.gethostname()}.{os.getpid()}"  # hosts sharing the storage write apart
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2)
  os.replace(tmp, path)


def write_state(workdir, state: str, **fields) -> None:
  _write_json(Path(workdir) / STATE_FILE, {"state": state, "time": time.time(), **fields})


def read_state(workdir) -> dict:
  return _read_json(Path(workdir) / STATE_FILE) or {}


def slurm_queue(workdirs: Sequence[Path] | None = None) -> dict[str, str] | None:
  """The jobs SLURM lists now, array tasks one by one, with their state ({'123': 'R', '124_0': 'PD', ...});
  empty where there is no squeue, None when it fails (then nothing counts as gone). Given `workdirs`,
  SLURM is asked only when one of them was queued on it (squeue can take seconds to fail where no
  controller answers)."""
  if shutil.which("squeue") is None or (workdirs is not None and
                                        not any(read_state(w).get("slurm_job") for w in workdirs)):
    return {}
  listed = subprocess.run(["squeue", "-h", "-r", "-o", "%i %t"], capture_output=True, text=True)
  return dict(line.split() for line in listed.stdout.splitlines()) if listed.returncode == 0 else None


def process_start(pid: int) -> str | None:
  """When process `pid` started, as '<boot id>/<clock ticks since boot>' (/proc/PID/stat's field 22),
  which tells it from a later process given the same pid (after it ended, or a reboot); None where
  there is no such process or no /proc."""
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      boot = f.read().strip()
    with open(f"/proc/{pid}/stat") as f:
      return f"{boot}/{f.read().rpartition(')')[2].split()[19]}"  # fields from the 3rd, after the command
  except OSError:
    return None


def alive(state: dict, queue: Mapping[str, str] | None) -> bool:
  """Whether a queued or started run's SLURM job (in `queue`, from slurm_queue()) or local process is
  still there: the process of the recorded pid, started when it was recorded (where that was)."""
  if state.get("state") not in ("queued", "started"):
    return False
  if state.get("slurm_job"):
    return queue is None or state["slurm_job"] in queue
  if state.get("host") != socket.gethostname() or not state.get("pid"):
    return False
  try:
    os.kill(state["pid"], 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's process
    pass
  return state.get("pid_start") is None or state["pid_start"] == process_start(state["pid"])


def latest_checkpoint(workdir) -> int | None:
  """The newest step saved in workdir/checkpoints (None without one). Orbax renames a step's directory
  to its number only once it is complete, so partial saves do not count."""
  try:
    steps = [int(p.name) for p in (Path(workdir) / "checkpoints").iterdir() if p.name.isdigit() and p.is_dir()]
  except FileNotFoundError:
    return None
  return max(steps, default=None)


def _stopped_starting(state: dict) -> bool:
  """Whether training died of the signal that stopped its run (SIGTERM, SIGINT), one that came before it
  could save (while it started up)."""
  return state.get("signal") is not None and state.get("exit_code") == -state["signal"]


def status(workdir, queue: Mapping[str, str] | None) -> str:
  """The run's status, one of STATUSES; the one place that decides it. `queue`: slurm_queue(), for runs on SLURM.

  ok           summary.json says ok
  interrupted  stopped before its end, and resumes: training was preempted (exit code 75, after saving a
               checkpoint) or stopped by that signal while it started up, or its process or job is gone
               while its workdir holds a checkpoint
  failed       any other end: another exit code, gone before its first checkpoint, a summary not ok
  running      started, its process or job still there (SLURM lists its job running)
  pending      queued, its launcher or job still there (SLURM lists its job waiting: queued, or requeued
               after it ran, whatever the run recorded then)
  missing      never launched, or queued by a local launcher that is gone before the run started
  """
  summary = _read_json(Path(workdir) / "summary.json")
  if summary is not None:
    return "ok" if summary.get("status") == "ok" else "failed"
  state = read_state(workdir)
  recorded, job = state.get("state"), state.get("slurm_job")
  if job and queue and job in queue:
    return "running" if queue[job] in SLURM_RUNNING else "pending"
  if recorded in ("queued", "started"):
    if alive(state, queue):
      return "pending" if recorded == "queued" else "running"
    if latest_checkpoint(workdir) is not None:
      return "interrupted"
    return "missing" if recorded == "queued" and not job else "failed"
  if recorded == "ended":
    return "interrupted" if state.get("exit_code") == EXIT_PREEMPTED or _stopped_starting(state) else "failed"
  return "missing"


def _slurm_job() -> str | None:
  env = os.environ
  if "SLURM_ARRAY_JOB_ID" in env:
    return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
  return env.get("SLURM_JOB_ID")


def _this_process() -> dict:
  return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid())}


def prepare(run: Run, root: Path) -> Path:
  """Write the run's workdir/run.json and mark it queued by this process; returns the workdir."""
  workdir = root / run.id
  workdir.mkdir(parents=True, exist_ok=True)
  _write_json(workdir / RUN_FILE, {"id": run.id, "spec": run.spec, "overrides": run.overrides,
                                   "train_args": run.train_args(workdir)})
  write_state(workdir, "queued", **_this_process())
  return workdir


def restore_state(workdir, state: dict) -> None:
  """Put back a run's state from before prepare() (none: the file removed), when its launcher stops
  before starting it: a run the sweep never started keeps its status."""
  if state:
    _write_json(Path(workdir) / STATE_FILE, state)
  else:
    (Path(workdir) / STATE_FILE).unlink(missing_ok=True)


def _log_name(stem: str, rank: int) -> str:
  return f"{stem}.log" if rank == 0 else f"{stem}.{rank}.log"


def _supervise(argv: Sequence[str], workdir: Path, stem: str) -> tuple[int, list[int]]:
  """Run `python ARGV` with its output appended to workdir/STEM.log (STEM.RANK.log on the other processes of a
  multi-process job); returns its exit code and the signals this process received meanwhile. SIGINT and
  SIGTERM reach the child directly (a second one would stop training before it saves its checkpoint):
  this process only notes them and waits. The runs of a sweep share a JAX compilation cache in
  ROOT/.jax_cache unless $JAX_COMPILATION_CACHE_DIR is set."""
  received = []
  with open(workdir / _log_name(stem, int(os.environ.get("SLURM_PROCID", "0"))), "a") as log:
    env = {"JAX_COMPILATION_CACHE_DIR": str(workdir.parent / ".jax_cache"), **os.environ}
    child = subprocess.Popen([sys.executable, *argv], stdout=log, stderr=subprocess.STDOUT, env=env)
    for sig in (signal.SIGINT, signal.SIGTERM):
      signal.signal(sig, lambda signum, frame: received.append(signum))
    return child.wait(), received


def execute(workdir) -> int:
  """Run the training command in workdir/run.json, its output to workdir/train.log; the job's first
  process records its start and end."""
  workdir = Path(workdir)
  run = _read_json(workdir / RUN_FILE)
  if run is None:
    raise SweepError(f"{workdir}: no {RUN_FILE}; launch runs with python -m scaling.sweep")
  first = int(os.environ.get("SLURM_PROCID", "0")) == 0
  where = {**_this_process(), "slurm_job": _slurm_job()}
  if first:
    write_state(workdir, "started", **where)
  code, received = _supervise(run["train_args"], workdir, "train")
  if first:
    write_state(workdir, "ended", exit_code=code, signal=received[0] if received else None, **where)
  return code


# ---------------------------------------------------------------------------------------------------
# Evaluations: a finished run's final parameters on a corpus (python -m scaling.evaluate)


def evaluation_args(workdir, options: Sequence[str]) -> list[str]:
  """The command after `python` that evaluates a finished run's final parameters (the checkpoint of its
  summary's step) with scaling.evaluate's `options` ('--config.data.dataset=...', '--corpus-name=...')."""
  steps = _read_json(Path(workdir) / "summary.json")["steps"]
  return ["-m", "scaling.evaluate", f"--workdir={workdir}", f"--step={steps}", *options]


def execute_evaluation(workdir, options: Sequence[str]) -> int:
  """Run a finished run's evaluation, its output to workdir/evaluate.log."""
  return _supervise(evaluation_args(workdir, options), Path(workdir), "evaluate")[0]


def evaluation_target(run: Run, root: Path, overrides: Sequence[str], name: str | None) -> tuple[Path, bool]:
  """Where scaling.evaluate records a finished run's final parameters evaluated on the corpus `overrides` name
  (under `name`, if given), and whether that is due: no record there, or one of another number of batches or
  sequences per batch. Mistakes (a field an evaluation may not change, a corpus that is not there, a name
  another corpus has) are UserErrors."""
  from scaling import data, evaluate

  config = evaluate.evaluation_config(run.config.to_dict(), evaluate.override_items(overrides))
  steps = _read_json(root / run.id / "summary.json")["steps"]
  dataset = data.dataset_identity(config)
  path = evaluate.record_path(root / run.id, steps, dataset, name)
  done = evaluate.read_record(path, dataset) or {}
  return path, (done.get("eval_batches"), done.get("batch_size")) != (config.train.eval_batches,
                                                                        config.train.batch_size)


def eval_column(record: Path) -> str:
  """The results.csv column of an evaluation record evals/step<S>-<corpus>.json: eval_loss.<corpus>."""
  return EVAL_LOSS_PREFIX + record.stem.split("-", 1)[1]


def evaluation_failure(workdir: Path) -> str:
  """Why a run's evaluation failed: the last line of its evaluate.log."""
  return _last_line(workdir / "evaluate.log") or "nothing in evaluate.log"


# ---------------------------------------------------------------------------------------------------
# Results


def _tail_lines(path, size: int = 8192) -> list[str]:
  """The lines in the last `size` bytes of a file ([] when there is none)."""
  try:
    with open(path, "rb") as f:
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - size))
      return f.read().decode(errors="replace").splitlines()
  except FileNotFoundError:
    return []


def _last_line(path) -> str | None:
  return next((line.strip() for line in reversed(_tail_lines(path)) if line.strip()), None)


def _last_train_record(workdir: Path) -> dict:
  """The last 'train' record of workdir/metrics.jsonl (step, loss, ...)."""
  for line in reversed(_tail_lines(workdir / "metrics.jsonl")):
    try:
      record = json.loads(line)
    except json.JSONDecodeError:  # a line being written
      continue
    if record.get("split") == "train":
      return record
  return {}


def stop_reason(workdir: Path) -> str:
  """Why a failed or interrupted run (as status() says) stopped, in a line: its summary's status, a
  preemption, its process or job gone, the signal that ended it, or the last line of its train.log."""
  summary, state = _read_json(workdir / "summary.json"), read_state(workdir)
  if summary is not None:
    return f"summary.json says status {summary.get('status')!r}"
  step = latest_checkpoint(workdir)
  resumes = "no checkpoint: rerunning starts it over" if step is None else f"resumes from the checkpoint of step {step}"
  if state.get("state") in ("queued", "started"):
    return f"its process or job is gone ({state['state']}); {resumes}"
  code = state.get("exit_code")
  if code == EXIT_PREEMPTED:
    return f"preempted (exit code {code}); {resumes}"
  if _stopped_starting(state):
    return f"stopped by signal {-code} while starting up, before it could save; {resumes}"
  if code is not None and code < 0:
    return f"killed by signal {-code}"
  return _last_line(workdir / "train.log") or f"exit code {code}, nothing in train.log"


def hyperparameters(runs: Sequence[Run]) -> list[str]:
  """The override fields whose values tell apart runs of one config and size trained on as many tokens (a
  learning-rate sweep's optim.lr, seeds): results.csv has a column for each after RESULT_COLUMNS, so that the
  analysis can keep each group's best run or average them. Fields a design sets from the size and tokens
  (steps, warmup) are the same within such a group and get no column."""
  groups = {}
  for run in runs:
    t = run.config.train
    groups.setdefault((run.spec, t.steps * t.batch_size * run.config.data.seq_len), []).append(run)
  return sorted({field for group in groups.values() for field in {f for run in group for f in run.overrides}
                 if len({repr(_field(run.config, field)) for run in group}) > 1})


def result_row(run: Run, root: Path, queue: Mapping[str, str] | None,
               hyperparameter_fields: Sequence[str] = ()) -> dict:
  """The run's results.csv row: summary.json's numbers when there is one; N from the config otherwise; then
  the run's values of ``hyperparameter_fields`` (``hyperparameters``), overridden or not."""
  from scaling import flops

  workdir = root / run.id
  counts = flops.param_counts(run.config.model)
  row = {"run_id": run.id, "family": run.family, "size": run.size, "N": counts["total"],
         "N_nonembed": counts["non_embedding"], "status": status(workdir, queue)}
  summary = _read_json(workdir / "summary.json") or {}
  row.update({k: summary[k] for k in SUMMARY_COLUMNS if summary.get(k) is not None})
  row.update({field: _field(run.config, field) for field in hyperparameter_fields})
  row.update(evaluations(workdir, summary))
  return row


def evaluations(workdir: Path, summary: dict) -> dict[str, float]:
  """The losses of a run's final parameters on corpora (python -m scaling.evaluate: evals/step<S>-<corpus>.json),
  by results.csv column (eval_loss.<corpus>); none for a summary without steps (written by hand)."""
  losses = {}
  for path in sorted((workdir / "evals").glob(f"step{summary['steps']}-*.json") if "steps" in summary else ()):
    record = _read_json(path)
    if record and "loss" in record.get("eval", {}):
      losses[eval_column(path)] = record["eval"]["loss"]
  return losses


def write_csv(rows: list[dict], path) -> None:
  """results.csv with RESULT_COLUMNS and then the rows' other fields (hyperparameters), replaced atomically
  (readers never see half a file)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  fields = list(dict.fromkeys([*RESULT_COLUMNS, *(field for row in rows for field in row)]))
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
  os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------
# The progress view


STATUS_STYLE = {"ok": "green", "failed": "bold red", "interrupted": "magenta", "running": "yellow", "pending": "cyan",
                "missing": "dim"}


class SweepView:
  """The whole sweep as one table (run, its hyperparameters, C, steps, status, losses, time); while runs go
  on (the view as a context), redrawn live on a terminal, elsewhere one line per status change."""

  def __init__(self, name: str, runs: list[Run], root: Path, console=None):
    from rich.console import Console

    self.name, self.runs, self.root = name, runs, root
    self.hyperparameters = hyperparameters(runs)
    self.console = console or Console()
    if not self.console.is_terminal:  # a log or a pipe, where rich would cut the table to 80 columns
      self.console.width = 200
    self.live, self.seen = None, {}

  def table(self):
    from rich import box
    from rich.table import Table

    queue = slurm_queue([self.root / run.id for run in self.runs])
    rows = [result_row(run, self.root, queue, self.hyperparameters) for run in self.runs]
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    table = Table(title=f"sweep {self.name}: {len(rows)} runs in {self.root}", title_justify="left",
                  caption=", ".join(f"{n} {s}" for s, n in counts.items() if n), caption_justify="left",
                  box=box.SIMPLE_HEAD)
    table.add_column("run", no_wrap=True, min_width=max(len(run.id) for run in self.runs))
    corpora = sorted({column for row in rows for column in row if column.startswith(EVAL_LOSS_PREFIX)})
    for column in (*self.hyperparameters, "C", "steps", "status", "train loss", "eval loss", *corpora, "time"):
      table.add_column(column, justify="left" if column == "status" else "right")
    for run, row in zip(self.runs, rows):
      steps = str(run.config.train.steps)
      if row["status"] == "running":
        steps = f"{_last_train_record(self.root / run.id).get('step', 0)}/{steps}"
      elif row["status"] == "interrupted":  # where it resumes
        steps = f"{latest_checkpoint(self.root / run.id) or 0}/{steps}"
      table.add_row(run.id, *(f"{row[field]:g}" if isinstance(row[field], float) else str(row[field])
                              for field in self.hyperparameters),
                    f"{run.flops:.3g}", steps, f"[{STATUS_STYLE[row['status']]}]{row['status']}",
                    *(_number(row.get(k), ".4f") for k in ("train_loss", "eval_loss", *corpora)),
                    _number(row.get("wall_time_s"), ".0f", "s"))
    return table

  def __enter__(self):
    if self.console.is_terminal:
      from rich.live import Live

      self.live = Live(self.table(), console=self.console, auto_refresh=False, transient=True)
      self.live.start()
    return self

  def refresh(self) -> None:
    if self.live is not None:
      self.live.update(self.table(), refresh=True)
      return
    queue = slurm_queue([self.root / run.id for run in self.runs])
    for run in self.runs:
      workdir = self.root / run.id
      now = status(workdir, queue)
      if now == "ok":  # and its evaluations, as they come
        now += "".join(f", {column} {loss:.4f}" for column, loss in
                       evaluations(workdir, _read_json(workdir / "summary.json") or {}).items())
      if self.seen.setdefault(run.id, now) != now:
        self.console.print(f"{run.id}: {now}", highlight=False)
        self.seen[run.id] = now

  def __exit__(self, *exc) -> None:
    if self.live is not None:
      self.live.stop()
      self.live = None


def _number(value, fmt: str, unit: str = "") -> str:
  return "" if value is None else f"{value:{fmt}}{unit}"


# ---------------------------------------------------------------------------------------------------
# Launchers


def _exec_command(workdirs, evaluate: Sequence[str] | None = None) -> list[str]:
  return [sys.executable, "-m", "scaling.sweep", "exec", *(["--evaluate", *evaluate] if evaluate is not None else []),
          *map(str, workdirs)]


@dataclasses.dataclass
class Sweep:
  """An expanded experiment and how to launch it: what each launcher gets. With `evaluate` (scaling.evaluate's
  options), what a launched run executes is its final parameters' evaluation, not its training."""

  experiment: str
  root: Path
  view: SweepView
  only: str | None = None
  jobs: int = 1
  wait: bool = False
  dry_run: bool = False
  launcher_options: Sequence[str] = ()
  collect: bool = False
  evaluate: Sequence[str] | None = None

  @property
  def name(self) -> str:
    return Path(self.experiment).stem

  def command(self, run: Run) -> list[str]:
    """What a launched run executes, after `python`."""
    workdir = self.root / run.id
    return run.train_args(workdir) if self.evaluate is None else evaluation_args(workdir, self.evaluate)

  def exec_command(self, workdirs) -> list[str]:
    return _exec_command(workdirs, self.evaluate)

  def start(self, todo: list[Run]) -> list[tuple[Path, dict | None]]:
    """The runs' workdirs, each with its state from before: training runs are prepared (marked queued);
    evaluations leave a run's state as it is (None)."""
    if self.evaluate is not None:
      return [(self.root / run.id, None) for run in todo]
    before = [read_state(self.root / run.id) for run in todo]
    return [(prepare(run, self.root), state) for run, state in zip(todo, before)]


def _restore(started: list[tuple[Path, dict | None]]) -> None:
  """Put back the states of runs a launcher prepared but did not start (restore_state)."""
  for workdir, state in started:
    if state is not None:
      restore_state(workdir, state)


def launch_local(sweep: Sweep, todo: list[Run]) -> None:
  """Run `todo` here, `jobs` at a time, each as `python -m scaling.sweep exec WORKDIR` in its own
  session: an interrupt reaches the sweep, which passes it on to each run's process group once."""
  if sweep.dry_run:
    for run in todo:
      sweep.view.console.print(shlex.join(["python", *sweep.command(run)]), highlight=False, soft_wrap=True)
    return
  queue, active = sweep.start(todo), []
  with sweep.view:
    try:
      while queue or active:
        while queue and len(active) < sweep.jobs:
          active.append(subprocess.Popen(sweep.exec_command([queue.pop(0)[0]]), start_new_session=True))
        active = [p for p in active if p.poll() is None]
        sweep.view.refresh()
        time.sleep(1)
    except KeyboardInterrupt:  # each run saves a checkpoint and stops; the next sweep resumes it
      for p in active:
        os.killpg(p.pid, signal.SIGINT)
      for p in active:
        p.wait()
      raise
    finally:  # the runs it never started are as they were: missing, or interrupted as before
      _restore(queue)


def slurm_jobs_named(name: str) -> list[str]:
  """The ids of this user's SLURM jobs called `name` that squeue lists (job arrays once)."""
  listed = subprocess.run(["squeue", "-h", "--me", "-n", name, "-o", "%F"], capture_output=True, text=True)
  return sorted(set(listed.stdout.split())) if listed.returncode == 0 else []


def launch_slurm(sweep: Sweep, todo: list[Run]) -> None:
  """Submit `todo` as one job array through launch.sh slurm (task i runs run i); with `wait`, follow it
  until it leaves the queue. Evaluations are a job array of their own, named <experiment>-evaluate, of
  which one at a time may be queued (the next would evaluate the same runs)."""
  name = sweep.name if sweep.evaluate is None else f"{sweep.name}-evaluate"
  options = ["--array", f"0-{len(todo) - 1}", "--job-name", name, "--output", str(sweep.root / "slurm"),
             *sweep.launcher_options]
  if sweep.dry_run:
    _launch_sh("slurm", options, True, sweep.exec_command([sweep.root / run.id for run in todo]))
    return
  if sweep.evaluate is not None and (queued := slurm_jobs_named(name)):
    raise SweepError(f"SLURM job {', '.join(queued)} ({name}) still evaluates this sweep's runs: wait for it to "
                     "end (or scancel it), then evaluate what it left")
  started = sweep.start(todo)
  try:
    output = _launch_sh("slurm", options, False, sweep.exec_command([workdir for workdir, _ in started]))
  except BaseException:  # not submitted: the runs are as they were
    _restore(started)
    raise
  job = output.strip().splitlines()[-1].split(";")[0]
  for i, (workdir, state) in enumerate(started):
    if state is not None and read_state(workdir).get("state") == "queued":  # a training run not started already
      write_state(workdir, "queued", slurm_job=f"{job}_{i}")
  what = "runs" if sweep.evaluate is None else "evaluations"
  sweep.view.console.print(f"submitted {len(todo)} {what} as SLURM job array {job}")
  if sweep.wait:
    with sweep.view:
      while any(j.split("_")[0] == job for j in slurm_queue() or ()):
        sweep.view.refresh()
        time.sleep(2)


def launch_tpu(sweep: Sweep, todo: list[Run]) -> None:
  """Run this sweep with the local launcher on every worker of a TPU VM, through launch.sh tpu: the
  workers' sweep expands the experiment (its file as launch.sh copies it) and decides what to launch
  (or, with `collect`, collects; with `evaluate`, evaluates) from the root they see, not this machine's."""
  del todo  # the runs --only selects here: the workers' sweep selects them again, and looks at their state
  remote = ["python3", "-m", "scaling.sweep", "--experiment", shipped_path(sweep.experiment), "--root", str(sweep.root),
            *(["--only", sweep.only] if sweep.only else []), *(["--jobs", str(sweep.jobs)] if sweep.jobs != 1 else []),
            *(["--collect"] if sweep.collect else []),
            *(["--evaluate", *sweep.evaluate] if sweep.evaluate is not None else [])]
  _launch_sh("tpu", sweep.launcher_options, sweep.dry_run, remote, passed_on=(1, EXIT_PREEMPTED))


def shipped_path(given: str) -> str:
  """The path of the file `given` in the checkout that launch.sh tpu copies to the workers, relative to
  its root (where the workers' sweep runs); a file outside it, or one git ignores, is a SweepError."""
  from scaling.config import find_file

  checkout, path = LAUNCH_SH.parent, Path(find_file(given)).resolve()
  if not path.is_relative_to(checkout) or (shutil.which("git") and subprocess.run(
      ["git", "-C", str(checkout), "check-ignore", "-q", str(path)]).returncode == 0):
    raise SweepError(f"--launcher tpu: {given} is not among the files launch.sh tpu copies to the workers (those of "
                     f"the checkout {checkout} that git does not ignore): move it there, e.g. to experiments/")
  return path.relative_to(checkout).as_posix()


LAUNCH = {"local": launch_local, "slurm": launch_slurm, "tpu": launch_tpu}


def _launch_sh(mode: str, options: Sequence[str], dry_run: bool, command: Sequence[str],
               passed_on: Sequence[int] = ()) -> str:
  """Run launch.sh MODE OPTIONS [--dry-run] -- COMMAND; returns its standard output (shown on a dry run).
  An exit code in `passed_on` is the remote sweep's own (RemoteSweepStopped); any other is an error."""
  argv = [str(LAUNCH_SH), mode, *options, *(["--dry-run"] if dry_run else []), "--", *command]
  result = subprocess.run(argv, stdout=None if dry_run else subprocess.PIPE, text=True)
  if result.returncode in passed_on:
    raise RemoteSweepStopped(result.returncode)
  if result.returncode != 0:
    raise SweepError(f"launch.sh {mode} failed with exit code {result.returncode} (its message is above)")
  return result.stdout or ""


# ---------------------------------------------------------------------------------------------------
# The sweep


RELAUNCH = ("failed", "interrupted", "missing")  # the statuses a launch (re)launches: interrupted runs resume


def default_root(experiment: str) -> Path:
  return Path("runs") / Path(experiment).stem


def _open_sweep(experiment: str, launcher: str, root, only: str | None, dry_run: bool, jobs: int, wait: bool,
                collect: bool, evaluate: Sequence[str] | None, launcher_options: Sequence[str], console):
  """The experiment's runs and its Sweep, the options checked; with the local or SLURM launcher, the root checked
  to be the experiment's (ROOT/sweep.json)."""
  if launcher not in LAUNCH:
    raise SweepError(f"--launcher {launcher!r}: choose one of {', '.join(LAUNCH)}")
  if jobs < 1:
    raise SweepError(f"--jobs {jobs}: run at least one at a time")
  if wait and launcher != "slurm":
    raise SweepError(f"--wait follows a SLURM job array; with --launcher {launcher} the sweep ends with its runs")
  runs = load_experiment(experiment)
  root = Path(root) if root else default_root(experiment)
  sweep = Sweep(experiment, root, SweepView(Path(experiment).stem, runs, root, console), only, jobs, wait, dry_run,
                launcher_options, collect, evaluate)
  if launcher != "tpu":
    recorded = _read_json(root / SWEEP_FILE) or {}
    if recorded.get("experiment", sweep.name) != sweep.name:
      raise SweepError(f"--root {root} is experiment {recorded['experiment']}'s ({root / SWEEP_FILE}): {sweep.name}'s "
                       f"results.csv would replace its; give {sweep.name} a --root of its own")
  return runs, sweep


def _launch_and_collect(sweep: Sweep, launcher: str, runs: list[Run], todo: list[Run]) -> list[dict]:
  """Launch `todo`; then, however that ends, write ROOT/results.csv (not on a dry run) and show the sweep's
  table; returns the CSV's rows."""
  workdirs = [sweep.root / r.id for r in runs]
  try:
    if todo:
      LAUNCH[launcher](sweep, todo)
  finally:  # interrupted too: the CSV and the table show where the sweep stands
    queue = slurm_queue(workdirs)
    fields = hyperparameters(runs)
    rows = [result_row(run, sweep.root, queue, fields) for run in runs]
    if not sweep.dry_run:
      write_csv(rows, sweep.root / "results.csv")
      sweep.view.console.print(sweep.view.table())
  return rows


def run_sweep(experiment: str, launcher: str = "local", *, root=None, only: str | None = None, dry_run: bool = False,
              jobs: int = 1, wait: bool = False, collect: bool = False, launcher_options: Sequence[str] = (),
              console=None) -> list[dict]:
  """Expand `experiment`; launch the runs that are not finished, queued or running (none when
  `collect`); write ROOT/results.csv, show the sweep's table and return the CSV's rows. A dry run
  shows the table and the commands, and writes nothing."""
  runs, sweep = _open_sweep(experiment, launcher, root, only, dry_run, jobs, wait, collect, None, launcher_options,
                            console)
  if launcher == "tpu":  # the workers' sweep decides what to launch, and writes their CSV
    launch_tpu(sweep, select(runs, only))
    return []
  queue = slurm_queue([sweep.root / r.id for r in runs])
  todo = [] if collect else [r for r in select(runs, only) if status(sweep.root / r.id, queue) in RELAUNCH]
  if dry_run:
    sweep.view.console.print(sweep.view.table())
  else:
    sweep.root.mkdir(parents=True, exist_ok=True)
    recorded = _read_json(sweep.root / SWEEP_FILE) or {}
    launched = {"launcher": launcher, "launcher_options": list(launcher_options)} if todo else {}
    _write_json(sweep.root / SWEEP_FILE, {**recorded, "experiment": sweep.name, **launched})
  return _launch_and_collect(sweep, launcher, runs, todo)


@dataclasses.dataclass
class Evaluated:
  """What evaluate_sweep did: the results.csv rows after it, their columns of the corpus evaluated (eval_loss.<corpus>),
  the runs it evaluated (or submitted), and those whose evaluation is missing after it (failed; on SLURM
  without --wait, also those queued)."""

  rows: list[dict]
  columns: list[str]
  launched: list[str]
  missing: list[str]


def evaluate_sweep(experiment: str, overrides: Sequence[str], launcher: str = "local", *, name: str | None = None,
                   root=None, only: str | None = None, dry_run: bool = False, jobs: int = 1, wait: bool = False,
                   launcher_options: Sequence[str] = (), console=None) -> Evaluated:
  """Evaluate the final parameters of the experiment's finished runs (those --only selects) on the corpus
  `overrides` name (scaling.evaluate's --config.data.* and the like), each where no evaluation of that corpus,
  with as many batches of as many sequences, is recorded yet; then collect as run_sweep does, results.csv
  gaining a column eval_loss.<corpus> (<name>, if given). Mistakes in `overrides` or `name` are UserErrors
  before anything is launched."""
  from scaling import evaluate

  evaluate.override_items(overrides)  # checked before anything else, finished runs or not
  evaluate.check_name(name)
  args = [*overrides, *([f"--corpus-name={name}"] if name else [])]  # scaling.evaluate's
  runs, sweep = _open_sweep(experiment, launcher, root, only, dry_run, jobs, wait, False, args, launcher_options,
                            console)
  if launcher == "tpu":  # the workers' sweep decides what to evaluate
    launch_tpu(sweep, select(runs, only))
    return Evaluated([], [], [], [])
  finished = [r for r in select(runs, only) if status(sweep.root / r.id, {}) == "ok"
              and "steps" in _read_json(sweep.root / r.id / "summary.json")]  # not a summary written by hand

  def targets() -> dict[str, tuple[Path, bool]]:
    return {r.id: evaluation_target(r, sweep.root, overrides, name) for r in finished}

  before = targets()
  todo = [r for r in finished if before[r.id][1]]
  if dry_run:
    sweep.view.console.print(sweep.view.table())
  rows = _launch_and_collect(sweep, launcher, runs, todo)
  columns = sorted({eval_column(path) for path, _ in before.values()})
  after = targets() if todo and not dry_run else {}
  return Evaluated(rows, columns, [r.id for r in todo], [r.id for r in todo if r.id in after and after[r.id][1]])


def exec_main(args: list[str]) -> int:
  """`python -m scaling.sweep exec [--evaluate --config.k=v... [--corpus-name=N]] WORKDIR...`: what each launched
  run executes, its training or its evaluation; with several workdirs (a SLURM job array), the one at
  $SLURM_ARRAY_TASK_ID."""
  evaluate = None
  if args[:1] == ["--evaluate"]:  # then scaling.evaluate's options, then the workdirs
    evaluate = list(itertools.takewhile(lambda a: a.startswith("--"), args[1:]))
    args = args[1 + len(evaluate):]
  if not args:
    raise SweepError("exec: give the run's workdir")
  workdir = args[int(os.environ.get("SLURM_ARRAY_TASK_ID", "0")) if len(args) > 1 else 0]
  code = execute(workdir) if evaluate is None else execute_evaluation(workdir, evaluate)
  return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def parse_args(argv: list[str]):
  own, launcher_options = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
  parser = argparse.ArgumentParser(prog="python -m scaling.sweep", description=__doc__.split("\n")[0],
                                   epilog="Options after -- go to launch.sh (slurm, tpu): see ./launch.sh --help.")
  parser.add_argument("--experiment", required=True, metavar="FILE", help="experiments/<name>.py, defining runs()")
  parser.add_argument("--launcher", default="local", choices=LAUNCH, help="where the runs go (default local)")
  parser.add_argument("--dry-run", action="store_true", help="print the table and the commands; launch nothing")
  parser.add_argument("--only", metavar="PATTERN", help="launch only the runs whose id matches this glob (anywhere in the id)")
  parser.add_argument("--root", metavar="DIR", help="the sweep's directory (default runs/<experiment name>)")
  parser.add_argument("--jobs", type=int, default=1, metavar="K", help="local: runs at a time (default 1)")
  parser.add_argument("--wait", action="store_true", help="slurm: follow the job array to its end, then collect")
  parser.add_argument("--collect", action="store_true", help="launch nothing: show the table, write results.csv")
  parser.add_argument("--evaluate", action="store_true",
                      help="evaluate the finished runs' final parameters (python -m scaling.evaluate) on the corpus "
                           "that --config.data.* overrides name (and --config.train.eval_batches, ...) instead of "
                           "training: results.csv gains a column eval_loss.<corpus>")
  parser.add_argument("--corpus-name", metavar="NAME", help="--evaluate: name the corpus, the column eval_loss.NAME "
                                                            "(default: from the corpus's identity)")
  args, overrides = parser.parse_known_args(own)
  if args.evaluate and args.collect:
    parser.error("--collect launches nothing, --evaluate launches evaluations: give one of them")
  for arg in overrides:
    if not arg.startswith("--config.") or not args.evaluate:
      parser.error(f"unrecognized argument {arg}" + (" (--config.* overrides name the corpus of --evaluate; a "
                                                      "sweep's runs are changed in its experiment file)"
                                                      if arg.startswith("--config.") else ""))
  if args.corpus_name is not None and not args.evaluate:
    parser.error("--corpus-name names the corpus of --evaluate")
  args.overrides = overrides if args.evaluate else None
  return args, launcher_options


def _terminate(signum, frame):
  raise Terminated()


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    if argv[:1] == ["exec"]:
      return exec_main(argv[1:])
    args, launcher_options = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    raise_on_ctrl_c()  # also when the sweep started with SIGINT ignored, as training does
    options = dict(root=args.root, only=args.only, dry_run=args.dry_run, jobs=args.jobs, wait=args.wait,
                   launcher_options=launcher_options)
    if args.evaluate:
      return report_evaluation(evaluate_sweep(args.experiment, args.overrides, args.launcher, name=args.corpus_name,
                                              **options), args)
    rows = run_sweep(args.experiment, args.launcher, collect=args.collect, **options)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt as stop:
    print("interrupted: rerun the same command to resume", file=sys.stderr)
    return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)
  except RemoteSweepStopped as stop:
    print("error: launch.sh tpu exited with 1: runs failed on the TPU workers (listed in their output above; "
          "rerunning this command retries them), or gcloud did" if stop.code == 1 else "runs were interrupted on the "
          "TPU workers (listed in their output above); rerun this command to resume them", file=sys.stderr)
    return stop.code
  return report(rows, args, launcher_options)


def resume_command(args, launcher_options: Sequence[str], interrupted: Sequence[str]) -> str:
  """The sweep's command line that resumes the `interrupted` run ids: this one without --collect or
  --dry-run, and without an --only that leaves some of them out; with the launcher and its options
  that launched the sweep last (ROOT/sweep.json), where it has them."""
  recorded = _read_json((Path(args.root) if args.root else default_root(args.experiment)) / SWEEP_FILE) or {}
  launcher = recorded.get("launcher", args.launcher)
  launcher_options = recorded.get("launcher_options", launcher_options)
  argv = ["python", "-m", "scaling.sweep", "--experiment", args.experiment]
  if launcher != "local":
    argv += ["--launcher", launcher]
  if args.root:
    argv += ["--root", args.root]
  if args.only and all(matches(i, args.only) for i in interrupted):
    argv += ["--only", args.only]
  if args.jobs != 1:
    argv += ["--jobs", str(args.jobs)]
  if args.wait and launcher == "slurm":
    argv.append("--wait")
  if launcher_options:
    argv += ["--", *launcher_options]
  return shlex.join(argv)


def report(rows: list[dict], args, launcher_options: Sequence[str]) -> int:
  """The sweep's closing lines, on stderr: its failed runs and its interrupted ones, each with why it
  stopped. Returns the exit code: 1 when a run failed, else 75 when one was interrupted, else 0."""
  root = Path(args.root) if args.root else default_root(args.experiment)
  failed = [r["run_id"] for r in rows if r["status"] == "failed"]
  interrupted = [r["run_id"] for r in rows if r["status"] == "interrupted"]

  def show(title: str, ids: list[str]) -> None:
    print(title, file=sys.stderr)
    for run_id in ids:
      print(f"  {run_id}: {stop_reason(root / run_id)}  [{root / run_id / 'train.log'}]", file=sys.stderr)

  if failed:
    show(f"error: {len(failed)} of {len(rows)} runs failed (marked in {root / 'results.csv'}; rerunning the sweep "
         "retries them):", failed)
  if interrupted:
    show(f"{len(interrupted)} of {len(rows)} runs interrupted (resume with: "
         f"{resume_command(args, launcher_options, interrupted)}):", interrupted)
  return 1 if failed else EXIT_PREEMPTED if interrupted else 0


def report_evaluation(evaluated: Evaluated, args) -> int:
  """--evaluate's closing lines, on stderr: the runs it did not evaluate, not being finished, and the
  evaluations that failed, each with the last line of its log. Returns 1 when one failed, else 0."""
  if args.launcher == "tpu" or args.dry_run:  # the workers' sweep reported; a dry run printed the commands
    return 0
  root = Path(args.root) if args.root else default_root(args.experiment)
  selected = {r["run_id"]: r["status"] for r in evaluated.rows if not args.only or matches(r["run_id"], args.only)}
  unfinished = {s: n for s in STATUSES if s != "ok" and (n := sum(v == s for v in selected.values()))}
  if unfinished:
    print(f"{sum(unfinished.values())} of {len(selected)} runs not evaluated, being unfinished ("
          f"{', '.join(f'{n} {s}' for s, n in unfinished.items())}): finish them with the sweep's command, then "
          "evaluate again", file=sys.stderr)
  if args.launcher == "slurm" and not args.wait:
    return 0  # submitted: `--collect` (or this command again) once the job has ended
  done = len(evaluated.launched) - len(evaluated.missing)
  if evaluated.launched:
    print(f"evaluated {done} of {len(evaluated.launched)} runs: {root / 'results.csv'} column "
          f"{', '.join(evaluated.columns)}", file=sys.stderr)
  elif evaluated.columns:
    print(f"nothing to evaluate: every finished run has its evaluation ({', '.join(evaluated.columns)})",
          file=sys.stderr)
  if evaluated.missing:
    print(f"error: {len(evaluated.missing)} of {len(evaluated.launched)} evaluations failed (rerunning this command "
          "retries them):", file=sys.stderr)
    for run_id in evaluated.missing:
      print(f"  {run_id}: {evaluation_failure(root / run_id)}  [{root / run_id / 'evaluate.log'}]", file=sys.stderr)
  return 1 if evaluated.missing else 0


if __name__ == "__main__":  # through the imported module, whose Run class the experiment files build
  from scaling import sweep

  sys.exit(sweep.main())
