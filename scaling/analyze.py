"""Scaling laws from a sweep's results: ``python -m scaling.analyze RESULTS.csv --out DIR``.

Reads a results CSV (ours, or any CSV with columns for two of N, D, C and a loss), fits Chinchilla
approaches 1, 2 and 3 and Kaplan-style L(N) and L(N, D) with bootstrap intervals, predicts the compute-optimal
N, D and loss for given budgets, checks the fits on the largest budget held out, and writes plots
(PNG and SVG) and report.md to DIR. Given two CSVs or more, analyses each alike into DIR/<label> and
compares them: the compute multiplier of each over the first (``compare``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaling import raise_on_ctrl_c
from scaling.sweep import EVAL_LOSS_PREFIX  # our sweeps' losses on other corpora: per run, as the losses are
from scaling.analysis import plots, report
from scaling.analysis.fits import (
  HUBER_DELTA,
  REPEATS,
  AnalysisError,
  AnalysisWarning,
  ChinchillaLaw,
  EnvelopeFit,
  Frontier,
  HoldoutCheck,
  IsoFLOPFit,
  KaplanFit,
  KaplanLaw,
  LossAt,
  Multiplier,
  SizeMultiplier,
  Prediction,
  Runs,
  SettingLaw,
  bootstrap_joint,
  compute_multipliers,
  size_multipliers,
  default_workers,
  fit_approach1,
  fit_approach2,
  fit_approach3,
  fit_kaplan,
  fit_kaplan_joint,
  fit_setting_laws,
  holdout_check,
  loss_at,
  make_runs,
  predict,
  warn,
  worker_pool,
)

DEFAULT_COLUMNS = {"N": "N", "D": "D", "C": "C"}
DEFAULT_LOSS_COLUMNS = ("eval_loss", "train_loss", "loss")
PER_RUN_COLUMNS = ("run_id", "status", "wall_time_s", *DEFAULT_LOSS_COLUMNS)  # differ between any two runs


@dataclass
class Curve:
  """A run's logged train losses against the tokens and compute spent so far, and its final eval loss."""

  run_id: str
  line: int  # in the CSV
  N: float
  tokens: np.ndarray
  compute: np.ndarray
  loss: np.ndarray
  eval_loss: float
  fitted: bool = True  # False: left out by --repeats best


@dataclass
class Analysis:
  """Everything the report and the plots show."""

  source: str
  n_rows: int  # data rows in the CSV
  runs: Runs
  columns: dict[str, str]  # quantity (N, D, C, L) -> the CSV column it came from; a derived one is absent
  settings: dict
  repeats: str = "all"  # what was done with runs that share N and D (make_runs)
  approach3: ChinchillaLaw | None = None
  approach3_seconds: float = math.nan
  approach2: IsoFLOPFit | None = None
  approach1: EnvelopeFit | None = None
  kaplan: KaplanFit | None = None
  kaplan_joint: KaplanLaw | None = None
  kaplan_joint_seconds: float = math.nan
  setting_laws: list[SettingLaw] = field(default_factory=list)  # optima of settings swept at one N and D
  predictions: list[Prediction] = field(default_factory=list)
  losses_at: list[LossAt] = field(default_factory=list)  # the --at allocations, by each L(N, D) law
  losses_at_asked: int = 0  # how many --at allocations were asked for
  holdout: HoldoutCheck | None = None
  warnings: list[str] = field(default_factory=list)
  plots: dict[str, str] = field(default_factory=dict)  # title -> PNG file name
  curves: list[Curve] = field(default_factory=list)  # the sweep's learning curves, when its workdirs are there


def _parse_float(text: str, where: str) -> float:
  if text is None or text.strip() == "":
    return math.nan
  try:
    return float(text)
  except ValueError:
    raise AnalysisError(f"{where}: {text!r} is not a number") from None


def load_runs(
  csv_path,
  n_col: str | None = None,
  d_col: str | None = None,
  c_col: str | None = None,
  loss_col: str | None = None,
  budgets=None,
  budget_tol: float = 0.02,
  drop_highest_loss: int = 0,
  repeats: str = "all",
) -> tuple[Runs, int, dict[str, str]]:
  """Runs from a CSV, the number of data rows in it and the columns used ({"N": "N", ..., "L": "eval_loss"}).

  A column given by name must exist; a default one (N, D, C) is used when present. Two of N, D, C
  are needed, the third is derived with C = 6 N D. The loss defaults to eval_loss, else
  train_loss, else loss (the first that is present and not empty). Rows with a ``status`` other
  than "ok" are skipped; a ``run_id`` on two of the rows left is an error. Runs that share N and D are
  combined as ``repeats`` says (``make_runs``); the warning for "all" names the columns that tell them apart
  (our sweeps write a column for each hyperparameter that varies among runs of one size and D).
  """
  try:
    with open(csv_path, newline="") as f:
      reader = csv.DictReader(f)
      header = reader.fieldnames or []
      rows = [(line, row) for line, row in enumerate(reader, start=2)]
  except OSError as err:
    raise AnalysisError(f"cannot read {csv_path}: {err.strerror or err}") from None
  if not header:
    raise AnalysisError(f"{csv_path} is empty")
  n_rows = len(rows)
  if not rows:
    raise AnalysisError(f"{csv_path} has no data rows, only a header")
  if "status" in header:
    statuses = Counter((row["status"] or "").strip() or "empty" for _, row in rows)
    rows = [(line, row) for line, row in rows if (row["status"] or "").strip() == "ok"]
    if n_rows and not rows:
      counts = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items(), key=lambda kv: (-kv[1], kv[0])))
      raise AnalysisError(f"no run in {csv_path} has status ok ({counts}); finish the sweep first")
    if len(rows) < n_rows:
      warn(f"skipped {n_rows - len(rows)} run(s) whose status is not 'ok'")

  columns = {}
  for quantity, given in (("N", n_col), ("D", d_col), ("C", c_col)):
    if given is not None and given not in header:
      raise AnalysisError(f"column {given!r} ({quantity}) not in {csv_path}; columns are {', '.join(header)}")
    name = given or DEFAULT_COLUMNS[quantity]
    if name in header:
      columns[quantity] = name
  if len(columns) < 2:
    raise AnalysisError(
      f"need columns for two of N, D, C (--n-col, --d-col, --c-col); found {sorted(columns) or 'none'} "
      f"among {', '.join(header)}"
    )
  if loss_col is not None:
    if loss_col not in header:
      raise AnalysisError(f"loss column {loss_col!r} not in {csv_path}; columns are {', '.join(header)}")
  else:
    present = [c for c in DEFAULT_LOSS_COLUMNS if c in header and any((r[c] or "").strip() for _, r in rows)]
    if not present:
      raise AnalysisError(f"no loss column ({', '.join(DEFAULT_LOSS_COLUMNS)}) with values; pass --loss-col")
    loss_col = present[0]
    if loss_col != DEFAULT_LOSS_COLUMNS[0]:
      warn(f"{DEFAULT_LOSS_COLUMNS[0]} is absent or empty; using {loss_col}")
  columns["L"] = loss_col
  if "run_id" in header:
    _check_unique_ids(rows, csv_path)
  if "dataset" in header:
    _check_one_corpus(rows, csv_path)
  if "epochs" in header:
    _warn_repeated_data(rows)

  values = {
    quantity: [_parse_float(row[name], f"line {line}, column {name!r}") for line, row in rows]
    for quantity, name in columns.items()
  }
  other_columns = {name: [row[name] for _, row in rows] for name in header
                   if name not in PER_RUN_COLUMNS and not name.startswith(EVAL_LOSS_PREFIX)
                   and name not in columns.values()}
  runs = make_runs(
    values.pop("L"),
    **values,
    budgets=budgets,
    budget_tol=budget_tol,
    drop_highest_loss=drop_highest_loss,
    row_names=[_row_name(line) for line, _ in rows],
    names={quantity: f"column {name!r}" for quantity, name in columns.items()},
    repeats=repeats,
    other_columns=other_columns,
  )
  return runs, n_rows, columns


def _row_name(line: int) -> str:
  """A CSV row's name in messages, and in the runs that share N and D."""
  return f"line {line}"


def _check_one_corpus(rows, csv_path) -> None:
  """Runs on different corpora (our sweeps' ``dataset`` column: another Python's pystdlib, edited files) have
  losses on different data, which no one law fits: an AnalysisError naming them."""
  corpora = Counter((row["dataset"] or "").strip() for _, row in rows)
  corpora.pop("", None)
  if len(corpora) > 1:
    found = "; ".join(f"{name}: {n} run(s)" for name, n in corpora.most_common())
    raise AnalysisError(f"{csv_path} mixes runs on {len(corpora)} corpora ({found}): losses on different data do "
                        "not lie on one law; analyse each corpus's runs apart")


def _warn_repeated_data(rows) -> None:
  """Warn when runs read their training data more than once (our sweeps' ``epochs`` column)."""
  repeated = [(epochs, line) for line, row in rows
              if (epochs := _parse_float(row["epochs"], f"line {line}, column 'epochs'")) > 1]
  if repeated:
    most, line = max(repeated)
    warn(f"{len(repeated)} of {len(rows)} runs read their training data more than once (up to {most:.3g} epochs, "
         f"{_row_name(line)}): a repeated token teaches less than a new one (Muennighoff et al. 2023), so these "
         "losses, and the laws fitted to them, are above those of as many unique tokens")


def _check_unique_ids(rows, csv_path) -> None:
  """Raise AnalysisError naming the first run_id that is on more than one row, and its lines."""
  lines = {}
  for line, row in rows:
    run_id = (row["run_id"] or "").strip()
    if run_id:
      lines.setdefault(run_id, []).append(line)
  repeated = {run_id: at for run_id, at in lines.items() if len(at) > 1}
  if repeated:
    run_id, at = next(iter(repeated.items()))
    more = f" ({len(repeated) - 1} more run_id(s) repeat)" if len(repeated) > 1 else ""
    raise AnalysisError(
      f"run_id {run_id!r} is on lines {', '.join(map(str, at))} of {csv_path}{more}; each run must appear once "
      "(was the CSV concatenated?)"
    )


def load_curves(csv_path) -> list[Curve]:
  """The learning curves of a sweep's finished runs, read from their workdirs beside the CSV (our sweeps'
  layout: ROOT/results.csv and ROOT/<run_id>/{metrics.jsonl,summary.json}); [] for any other CSV. The
  tokens and compute of a record at step s are s / steps of the run's D and C."""
  root = Path(csv_path).parent
  with open(csv_path, newline="") as f:
    rows = [(line, r) for line, r in enumerate(csv.DictReader(f), start=2)
            if (r.get("status") or "ok").strip() == "ok" and r.get("run_id")]
  curves = []
  for line, row in rows:
    workdir = root / row["run_id"]
    try:
      summary = json.loads((workdir / "summary.json").read_text())
      records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):  # not one of our workdirs, or a file cut short
      continue
    train = [r for r in records if r.get("split") == "train" and "loss" in r]
    if not train or not summary.get("steps"):
      continue
    steps = np.array([r["step"] for r in train], dtype=float)
    eval_loss = summary.get("eval_loss")
    curves.append(Curve(row["run_id"], line, float(summary["N"]), steps * summary["D"] / summary["steps"],
                        steps * summary["C"] / summary["steps"], np.array([r["loss"] for r in train]),
                        math.nan if eval_loss is None else float(eval_loss)))
  return curves


def analyze(
  csv_path,
  out_dir,
  n_col: str | None = None,
  d_col: str | None = None,
  c_col: str | None = None,
  loss_col: str | None = None,
  budgets=None,
  budget_tol: float = 0.02,
  drop_highest_loss: int = 0,
  repeats: str = "all",
  predict_budgets=None,
  at=(),
  n_boot: int = 500,
  seed: int = 0,
  holdout: bool = True,
  huber_delta: float = HUBER_DELTA,
  progress: bool = False,
  workers: int = 1,
) -> Analysis:
  """Fit every method the data support, then write the plots and report.md to ``out_dir``.

  A method the data cannot support is skipped with an AnalysisWarning; AnalysisError is raised for
  unusable input or when no method can be fitted. ``predict_budgets`` default to the largest budget
  (or C) in the data and 10x and 100x it. ``at``: (N, D) allocations whose loss the L(N, D) laws predict,
  beside their compute-optimal loss at the same compute. ``workers`` processes share the starts of approach 3
  and of Kaplan's L(N, D), and their bootstrap refits (spawned: a script that calls this with workers > 1
  needs the ``if __name__ == "__main__":`` guard).
  """
  out_dir = Path(out_dir)
  _check_settings(out_dir, budgets, budget_tol, drop_highest_loss, predict_budgets, at, n_boot, seed, huber_delta,
                  workers)
  with warnings.catch_warnings(record=True) as caught, worker_pool(workers):
    warnings.simplefilter("always")
    runs, n_rows, columns = load_runs(csv_path, n_col, d_col, c_col, loss_col, budgets, budget_tol, drop_highest_loss,
                                      repeats)
    settings = {
      "bootstrap resamples": n_boot,
      "seed": seed,
      "Huber delta": huber_delta,
      "budget tolerance": budget_tol,
      "nominal budgets": "given" if budgets is not None else "from the data",
      "highest losses dropped": drop_highest_loss,
      "runs sharing N and D": {"all": "each fitted", "best": "the lowest loss of each kept",
                               "mean": "their mean loss kept"}[repeats],
      "hold-out check": holdout,
    }
    result = Analysis(str(csv_path), n_rows, runs, columns, settings, repeats,
                      setting_laws=fit_setting_laws(runs.shared))
    _fit_all(result, n_boot, seed, huber_delta, progress, workers)
    C_max = float(max(runs.budgets(), default=runs.C.max()))
    for C in predict_budgets or (C_max, 10 * C_max, 100 * C_max):
      result.predictions += predict(float(C), runs.flops, result.approach3, result.approach2, result.approach1,
                                    result.kaplan_joint)
    result.losses_at_asked = len(at)
    for N, D in at:
      result.losses_at += loss_at(float(N), float(D), runs.flops, result.approach3, result.kaplan_joint)
    if holdout:
      joint_laws = tuple(type(law) for law in (result.approach3, result.kaplan_joint) if law is not None)
      try:
        result.holdout = holdout_check(runs, joint_laws, huber_delta, progress, workers)
      except AnalysisError as err:
        warn(f"hold-out check skipped: {err}")
    result.curves = load_curves(csv_path)
    if repeats == "best":  # the curves of the runs not fitted are drawn faint
      left_out = {name for group in runs.shared for i, name in enumerate(group.rows) if i != group.best}
      for curve in result.curves:
        curve.fitted = _row_name(curve.line) not in left_out
    out_dir.mkdir(parents=True, exist_ok=True)
    result.plots = plots.make_plots(result, out_dir)
    result.warnings = [str(w.message) for w in caught if issubclass(w.category, AnalysisWarning)]
    report.write_report(result, out_dir / "report.md")
  for w in caught:
    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
  return result


@dataclass
class Comparison:
  """Sweeps analysed alike, and the compute multiplier of each over the first (the baseline) by every method
  that gives both a compute-optimal loss; by the L(N, D) laws, also its data and parameter multipliers at the
  other's compute-optimal model."""

  labels: list[str]
  analyses: list[Analysis]
  budgets: list[float]
  multipliers: dict[tuple[str, str], list[Multiplier]] = field(default_factory=dict)  # (label, method) -> by C
  size_multipliers: dict[tuple[str, str], list[SizeMultiplier]] = field(default_factory=dict)  # L(N, D) laws only
  plots: dict[str, str] = field(default_factory=dict)


def frontiers(a: Analysis) -> dict[str, Frontier]:
  """The compute-optimal loss L*(C) of each method that gives one: the L(N, D) laws and approach 1's L(C)."""
  out = {law.method: Frontier(law.method, law, a.runs.flops) for law in (a.approach3, a.kaplan_joint)
         if law is not None}
  if a.approach1 is not None:
    out["approach 1"] = Frontier("approach 1", a.approach1.loss_law, None)
  return out


def _labels(csv_paths, labels) -> list[str]:
  """--labels, or each CSV's directory name (runs/<experiment>/results.csv), else its file name."""
  if labels is None:
    labels = [Path(p).parent.name or Path(p).stem for p in csv_paths]
    if len(set(labels)) < len(labels):
      labels = [Path(p).stem for p in csv_paths]
  elif len(labels) != len(csv_paths):
    raise AnalysisError(f"--labels gives {len(labels)} names for {len(csv_paths)} CSVs")
  for label in labels:
    if not label or label in (".", "..") or "/" in label:
      raise AnalysisError(f"label {label!r} cannot name a directory under --out; pass --labels")
  if len(set(labels)) < len(labels):
    raise AnalysisError(f"the CSVs' names repeat ({', '.join(labels)}); tell them apart with --labels")
  return labels


def compare(csv_paths, out_dir, labels=None, seed: int = 0, predict_budgets=None, **options) -> Comparison:
  """Analyse each CSV as ``analyze`` does, with the same options, into out_dir/<label> (the bootstrap of the
  i-th with seed + i, so that the sweeps' resamples are independent), then the compute multiplier of each over
  the first at ``predict_budgets`` (default: the first's budgets, and 10x and 100x its largest), and write
  the comparison's report.md and plot to ``out_dir``."""
  out_dir = Path(out_dir)
  labels = _labels(csv_paths, labels)
  for path in csv_paths:  # before the first analysis, which takes minutes
    try:
      Path(path).open().close()
    except OSError as err:
      raise AnalysisError(f"cannot read {path}: {err.strerror or err}") from None
  analyses = [analyze(path, out_dir / label, seed=seed + i, predict_budgets=predict_budgets, **options)
              for i, (path, label) in enumerate(zip(csv_paths, labels))]
  base = analyses[0]
  measured = base.runs.budgets() if len(base.runs.budgets()) else np.array([base.runs.C.max()])
  budgets = sorted(float(C) for C in (predict_budgets or (*measured, 10 * measured.max(), 100 * measured.max())))
  result = Comparison(labels, analyses, budgets)
  by_sweep = [frontiers(a) for a in analyses]
  for label, others in zip(labels[1:], by_sweep[1:]):
    for method, frontier in others.items():
      if method in by_sweep[0]:
        result.multipliers[label, method] = compute_multipliers(budgets, by_sweep[0][method], frontier)
        if frontier.flops is not None:  # an L(N, D) law: also at equal size and at equal data
          result.size_multipliers[label, method] = size_multipliers(budgets, by_sweep[0][method], frontier)
  if not result.multipliers:
    raise AnalysisError(f"no method gives both {labels[0]}'s and another sweep's compute-optimal loss; see the "
                        "warnings in each one's report")
  result.plots = plots.make_comparison_plots(result, out_dir, by_sweep)
  report.write_comparison(result, out_dir / "report.md")
  return result


def _check_settings(out_dir: Path, budgets, budget_tol, drop_highest_loss, predict_budgets, at, n_boot, seed,
                    huber_delta, workers) -> None:
  """Raise AnalysisError for a setting no analysis can use, before any fit runs."""
  for flag, values in (("--budgets", budgets), ("--predict", predict_budgets)):
    for C in values or ():
      if not (math.isfinite(C) and C > 0):
        raise AnalysisError(f"{flag} {C:g}: a budget must be a positive number of FLOP")
  for N, D in at:
    if not all(math.isfinite(x) and x > 0 for x in (N, D)):
      raise AnalysisError(f"--at {N:g}:{D:g}: N and D must be positive numbers (parameters:tokens)")
  checks = (
    ("--budget-tol", budget_tol, math.isfinite(budget_tol) and budget_tol >= 0, "must be 0 or more"),
    ("--drop-highest-loss", drop_highest_loss, drop_highest_loss >= 0, "must be 0 or more"),
    ("--bootstrap", n_boot, n_boot >= 0, "must be 0 (no intervals) or more"),
    ("--seed", seed, seed >= 0, "must be 0 or more"),
    ("--huber-delta", huber_delta, math.isfinite(huber_delta) and huber_delta > 0, "must be positive"),
    ("--workers", workers, workers >= 1, "must be 1 or more"),
  )
  for flag, value, ok, requirement in checks:
    if not ok:
      raise AnalysisError(f"{flag} {value:g}: {requirement}")
  if out_dir.exists() and not out_dir.is_dir():
    raise AnalysisError(f"--out {out_dir} is a file; name a directory for report.md and the plots")
  existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())  # out_dir or the ancestor mkdir starts from
  if not existing.is_dir():
    raise AnalysisError(f"--out {out_dir}: {existing} is a file, not a directory")
  if not os.access(existing, os.W_OK):
    raise AnalysisError(f"--out {out_dir}: {existing} is not writable")


def _fit_all(result: Analysis, n_boot: int, seed: int, huber_delta: float, progress: bool, workers: int) -> None:
  """Fit approaches 3, 2, 1 and Kaplan's L(N, D) and L(N) into ``result``, skipping (with a warning) what fails;
  AnalysisError when all of the first four fail and there are no runs sharing N and D to report on."""
  runs = result.runs

  def joint(fit, attribute):
    def fit_and_bootstrap():
      start = time.perf_counter()
      law = fit(runs, delta=huber_delta, progress=progress, workers=workers)
      setattr(result, f"{attribute}_seconds", time.perf_counter() - start)
      return bootstrap_joint(runs, law, n_boot, seed, delta=huber_delta, progress=progress, workers=workers)

    return fit_and_bootstrap

  methods = (
    ("approach 3", "approach3", joint(fit_approach3, "approach3")),
    ("approach 2", "approach2", lambda: fit_approach2(runs, n_boot, seed, progress, workers)),
    ("approach 1", "approach1", lambda: fit_approach1(runs, n_boot, seed, progress, workers)),
    ("Kaplan L(N, D)", "kaplan_joint", joint(fit_kaplan_joint, "kaplan_joint")),
  )
  errors = []
  for label, attribute, fit in methods:
    try:
      setattr(result, attribute, fit())
    except AnalysisError as err:
      errors.append(f"{label}: {err}")
  if len(errors) == len(methods) and not runs.shared:  # with runs that share N and D, their table is a result
    raise AnalysisError("no method could be fitted: " + "; ".join(errors))
  for message in errors:
    warn(f"skipped {message}")
  try:
    result.kaplan = fit_kaplan(runs, n_boot, seed, progress, workers=workers)
  except AnalysisError as err:
    warn(f"skipped Kaplan L(N): {err}")


def _allocation(text: str) -> tuple[float, float]:
  """--at's N:D -> (N, D)."""
  try:
    N, D = text.split(":")
    return float(N), float(D)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not N:D, parameters and tokens (e.g. 1e9:2e10)") from None


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m scaling.analyze",
    description="Fit scaling laws (Chinchilla approaches 1-3, Kaplan L(N) and L(N, D)) to a sweep's results.",
  )
  parser.add_argument("csv", nargs="+", help="results CSV: one row per run; two or more: each analysed alike, then "
                                             "compared with the first (compute multipliers)")
  parser.add_argument("--out", required=True, help="output directory for report.md and the plots (comparing: each "
                                                   "CSV's own analysis in OUT/<label>)")
  parser.add_argument("--labels", nargs="+", help="names of the CSVs compared (default: each one's directory name)")
  parser.add_argument("--n-col", help="column of parameters N (default: N, if present)")
  parser.add_argument("--d-col", help="column of training tokens D (default: D, if present)")
  parser.add_argument("--c-col", help="column of training compute C in FLOP (default: C, if present)")
  parser.add_argument("--loss-col", help="loss column (default: eval_loss, else train_loss, else loss)")
  parser.add_argument("--budgets", type=float, nargs="+", help="nominal IsoFLOP budgets in FLOP")
  parser.add_argument(
    "--budget-tol",
    type=float,
    default=0.02,
    help="relative tolerance for grouping runs into budgets (default: 0.02)",
  )
  parser.add_argument("--drop-highest-loss", type=int, default=0, help="drop this many highest-loss runs")
  parser.add_argument("--repeats", choices=REPEATS, default="all",
                      help="runs that share N and D (a learning-rate sweep, seeds): fit each (all, the default), keep "
                           "the lowest loss of each group (best), or their mean loss (mean)")
  parser.add_argument(
    "--predict",
    type=float,
    nargs="+",
    help="budgets C in FLOP to predict (default: the largest budget times 1, 10, 100)",
  )
  parser.add_argument(
    "--at",
    type=_allocation,
    nargs="+",
    default=[],
    metavar="N:D",
    help="allocations (parameters:tokens, e.g. 1e9:2e10) whose loss to predict by the L(N, D) laws, beside the "
         "compute-optimal loss at their compute",
  )
  parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples (default: 500; 0: none)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples (default: 0)")
  parser.add_argument(
    "--huber-delta",
    type=float,
    default=HUBER_DELTA,
    help=f"delta of the Huber loss on log L of approach 3 and Kaplan's L(N, D) (default: {HUBER_DELTA:g}, "
         "Hoffmann et al.'s)",
  )
  parser.add_argument("--workers", type=int, default=default_workers(),
                      help="processes that share the L(N, D) fits' starts and bootstrap refits (default: the CPUs this "
                           f"process may use, at most 8; here {default_workers()}); the results are the same with "
                           "any number")
  parser.add_argument("--no-holdout", action="store_true", help="skip the hold-out check")
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  args = parser.parse_args(argv)

  if args.labels and len(args.csv) == 1:
    parser.error("--labels names the sweeps of a comparison: give two CSVs or more")
  options = dict(
    n_col=args.n_col,
    d_col=args.d_col,
    c_col=args.c_col,
    loss_col=args.loss_col,
    budgets=args.budgets,
    budget_tol=args.budget_tol,
    drop_highest_loss=args.drop_highest_loss,
    repeats=args.repeats,
    predict_budgets=args.predict,
    at=args.at,
    n_boot=args.bootstrap,
    seed=args.seed,
    holdout=not args.no_holdout,
    huber_delta=args.huber_delta,
    progress=not args.quiet and sys.stderr.isatty(),
    workers=args.workers,
  )
  raise_on_ctrl_c()  # caught below, after the worker processes are stopped
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", AnalysisWarning)  # printed below, from the result
      if len(args.csv) == 1:
        result = analyze(args.csv[0], args.out, **options)
      else:
        result = compare(args.csv, args.out, labels=args.labels, **options)
  except AnalysisError as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:  # Ctrl-C: the fits are lost, the inputs untouched
    print("interrupted", file=sys.stderr)
    return 130
  if len(args.csv) == 1:
    for message in result.warnings:
      print(f"warning: {message}", file=sys.stderr)
    print(report.summary(result))
  else:
    for label, analysis in zip(result.labels, result.analyses):
      for message in analysis.warnings:
        print(f"warning: {label}: {message}", file=sys.stderr)
    print(report.comparison_summary(result))
  print(f"wrote {Path(args.out) / 'report.md'} and {len(result.plots)} plots (PNG and SVG)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
