"""Scaling-law fits: Chinchilla approaches 1, 2 and 3, Kaplan-style L(N) and L(N, D), bootstrap, prediction,
hold-out.

Conventions: N is parameters, D training tokens, C training compute in FLOP, L the loss. A token costs
f(N) = C / D FLOPs, taken from the runs (FlopsPerToken): 6 N when C = 6 N D, more under PaLM's count,
which our sweeps write. Every conversion between C, N and D goes through it. Every law below carries
optional bootstrap ``samples`` of its parameter vector; ``estimate`` turns a law and a function of it
into a value with a percentile interval.

References: Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models"), Kaplan et al.
2020 ("Scaling Laws for Neural Language Models"), Besiroglu et al. 2024 ("Chinchilla Scaling: A
replication attempt").
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import multiprocessing
import os
import signal
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar, Sequence

import numpy as np
from scipy.interpolate import CubicHermiteSpline, PchipInterpolator
from scipy import stats
from scipy.optimize import least_squares, minimize

from scaling.errors import UserError

HUBER_DELTA = 1e-3
# L-BFGS-B's default ftol is absolute for objectives below 1 (it divides by max(|f|, 1)), so with
# summed Huber losses of ~1e-4 it stops short of the optimum when started near it. The multi-start
# keeps scipy's defaults, as Hoffmann et al. and Besiroglu et al. did; the best result is then
# polished with these tolerances.
POLISH_OPTIONS = {"ftol": 1e-15, "gtol": 1e-12}
START_CHUNK = 100  # approach 3 starts per task of a worker process
BOOTSTRAP_CHUNK = 25  # bootstrap resamples per task of a worker process
MAX_DEFAULT_WORKERS = 8  # analyze's processes unless --workers says otherwise
MIN_POINTS_APPROACH3 = 10  # twice the number of parameters
MIN_DISTINCT_APPROACH3 = 3  # distinct values of N and of D
MIN_POINTS_PER_BUDGET = 3  # a parabola has three coefficients
MIN_BUDGETS = 3  # budgets with a usable minimum, for the approach-2 power laws
MIN_POINTS_SATURATING = 4  # E + (x0/x)^gamma has three parameters
MIN_POINTS_POWER_LAW = 3
MAX_LOG_COEFFICIENT = 700.0  # exp() of more overflows: a fit that went there is degenerate
INTERVAL_LEVEL = 0.95
PROPORTIONAL_TOL = 1e-3  # f/N equal within this (relative) for every run: C = k N D, the closed forms hold
FRONTIER_GRID = 200  # points in ln N where the compute-optimal N is first looked for (JointLaw.n_opt)
GOLDEN_ITERATIONS = 64  # golden-section steps: the ln N bracket shrinks by 0.618^64 ~ 4e-14
MIN_LOG_D_SPREAD = 0.05  # RMS of ln D about a line in ln N below which approach 3 sees one budget
NEGLIGIBLE_E = 1e-4  # a fitted E below this fraction of the lowest loss is about 0: the runs show none (where
# along that flat direction L-BFGS-B stops, ln E = -18 or -1800, depends on the machine's floating point)
FRONTIER_POINTS = 600  # ln C grid on which a baseline's frontier is inverted (compute_multipliers)
FRONTIER_REACH = 16.0  # that grid reaches this far in ln C beyond the budgets asked about (a factor 9e6)
REPEATS = ("all", "best", "mean")  # what make_runs does with runs that share N and D: keep, lowest loss, mean loss


class AnalysisError(UserError, ValueError):
  """Input that cannot be analysed (missing column, too few points, non-positive values, NaN)."""


class AnalysisWarning(UserWarning):
  """A method was skipped or a result is flagged; the analysis goes on without it."""


def warn(message: str) -> None:
  warnings.warn(message, AnalysisWarning, stacklevel=2)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlopsPerToken:
  """Training FLOPs per token as a function of N, from the runs' f = C / D: f/N (the mean over the runs
  of one N) is interpolated in ln N between the runs' N, monotonically and with a continuous slope
  (PCHIP, flat at the ends), and held at its end values beyond them: with kinks in f (straight
  segments), the compute-optimal N would stick at the runs' N over ranges of budgets. ``k`` is f/N
  when it is the same for every run (within PROPORTIONAL_TOL): then C = k N D (k = 6: C = 6 N D) and
  the compute-optimal frontier has a closed form."""

  log_N: np.ndarray
  per_param: np.ndarray  # f/N at exp(log_N)

  @classmethod
  def of_runs(cls, N, D, C) -> FlopsPerToken:
    sizes, inverse = np.unique(N, return_inverse=True)
    per_param = np.bincount(inverse, weights=C / (D * N)) / np.bincount(inverse)
    return cls(np.log(sizes), per_param)

  @property
  def k(self) -> float | None:
    lo, hi = self.per_param.min(), self.per_param.max()
    return float(self.per_param.mean()) if hi <= lo * (1 + PROPORTIONAL_TOL) else None

  @functools.cached_property
  def _interpolate(self) -> Callable:
    if len(self.log_N) == 1:
      return lambda x: np.full_like(x, self.per_param[0])
    slopes = PchipInterpolator(self.log_N, self.per_param).derivative()(self.log_N)
    slopes[[0, -1]] = 0.0  # no kink where the interpolation meets the constant ends
    return CubicHermiteSpline(self.log_N, self.per_param, slopes)

  def __call__(self, N):
    N = np.asarray(N, dtype=float)
    return N * self._interpolate(np.clip(np.log(N), self.log_N[0], self.log_N[-1]))


@dataclass(frozen=True)
class SharedRuns:
  """Rows of a results CSV that share N and D (a learning-rate sweep, seeds): each row's loss and its values of
  the ``settings`` columns, those that tell such rows apart anywhere in the CSV."""

  N: float
  D: float
  L: np.ndarray
  settings: dict[str, tuple[str, ...]]  # column -> each row's value
  rows: tuple[str, ...] = ()  # the rows' names, as make_runs was given them

  @property
  def best(self) -> int:
    """The index of the lowest loss (the first, on a tie)."""
    return int(np.argmin(self.L))

  def varied(self) -> list[str]:
    """The settings whose values differ among these rows."""
    return [name for name, values in self.settings.items() if len(set(values)) > 1]

  def numeric(self, name: str) -> np.ndarray | None:
    """The values of setting ``name`` as numbers, or None where one is not a finite number (a dataset's name)."""
    try:
      values = np.array([float(v) for v in self.settings[name]])
    except ValueError:
      return None
    return values if np.all(np.isfinite(values)) else None

  def optimum(self) -> tuple[str, float] | None:
    """Where only one setting varies, every row a value of its own, positive and at least 3 of them, and the lowest
    loss is not at the smallest or largest value: the setting and its value at the vertex of the parabola in
    ln(value) through the lowest loss and its neighbours on either side. None otherwise."""
    varied = self.varied()
    values = self.numeric(varied[0]) if len(varied) == 1 else None
    if values is None or len(values) < 3 or len(np.unique(values)) != len(values) or np.any(values <= 0):
      return None
    order = np.argsort(values)
    i = int(np.flatnonzero(order == self.best)[0])
    if i in (0, len(order) - 1):
      return None
    x, y = np.log(values[order[i - 1: i + 2]]), self.L[order[i - 1: i + 2]]
    c2, c1, _ = np.polyfit(x, y, 2)  # three points: exact; convex, as the middle one is lowest
    return (varied[0], float(np.exp(-c1 / (2 * c2)))) if c2 > 0 else None  # c2 = 0: three equal losses


@dataclass(frozen=True)
class SettingLaw:
  """A setting's optimum (``SharedRuns.optimum``) as a power law of N, of N and D where the groups' D vary apart
  from their N, or of D where every group has one N: value = k N^x D^y, least squares in logs, with 95%
  t-intervals on the exponents."""

  name: str
  k: float
  exponents: dict[str, Estimate]  # "N" and/or "D" -> exponent
  n_groups: int
  rms: float  # RMS of the residuals of ln(value)
  ranges: dict[str, tuple[float, float]]  # "N" and "D" -> the smallest and largest among the groups fitted

  def __call__(self, N, D):
    value = self.k
    for q, x in (("N", N), ("D", D)):
      if q in self.exponents:
        value = value * np.asarray(x, dtype=float) ** self.exponents[q].value
    return value


def fit_setting_laws(shared: Sequence[SharedRuns]) -> list[SettingLaw]:
  """A ``SettingLaw`` for each setting with an optimum in at least 3 groups. Its variables: N where the groups
  have 2 or more distinct N, with D too where ln D varies apart from ln N (``log_D_spread`` at least
  MIN_LOG_D_SPREAD, as approach 3 asks) and there are at least 2 more groups than coefficients; D alone where
  they share one N and have 2 or more distinct D (a sweep of the training length)."""
  optima: dict[str, list[tuple[float, float, float]]] = {}
  for group in shared:
    if (optimum := group.optimum()) is not None:
      optima.setdefault(optimum[0], []).append((group.N, group.D, optimum[1]))
  laws = []
  for name, points in optima.items():
    N, D, value = np.array(points).T
    if len(points) < 3:
      continue
    if len(np.unique(N)) >= 2:
      variables = ["N", "D"] if len(points) >= 5 and log_D_spread(N, D) >= MIN_LOG_D_SPREAD else ["N"]
    elif len(np.unique(D)) >= 2:
      variables = ["D"]
    else:
      continue
    X = np.column_stack([np.ones(len(points)), *(np.log({"N": N, "D": D}[q]) for q in variables)])
    log_value = np.log(value)
    coef, _, _, _ = np.linalg.lstsq(X, log_value, rcond=None)
    residuals = log_value - X @ coef
    dof = len(points) - X.shape[1]
    scale = float(residuals @ residuals) / dof if dof else math.nan
    errors = np.sqrt(np.diag(scale * np.linalg.inv(X.T @ X)))
    half = errors * stats.t.ppf(0.5 + INTERVAL_LEVEL / 2, dof) if dof else np.full_like(errors, math.nan)
    exponents = {q: Estimate(float(coef[j]), float(coef[j] - half[j]), float(coef[j] + half[j]))
                 for j, q in enumerate(variables, start=1)}
    laws.append(SettingLaw(name, float(np.exp(coef[0])), exponents, len(points),
                           float(np.sqrt(np.mean(residuals**2))),
                           {"N": (float(N.min()), float(N.max())), "D": (float(D.min()), float(D.max()))}))
  return laws


@dataclass(frozen=True)
class Runs:
  """One row per training run. ``budget`` is the run's IsoFLOP budget in FLOP (NaN: none); ``flops`` the
  FLOPs per token of every run's N, which a subset keeps (it is the design's, not a measurement)."""

  N: np.ndarray
  D: np.ndarray
  C: np.ndarray
  L: np.ndarray
  budget: np.ndarray
  flops: FlopsPerToken
  shared: tuple[SharedRuns, ...] = ()  # the rows that shared N and D, before they were combined; a subset has none

  def __len__(self) -> int:
    return len(self.L)

  def subset(self, idx) -> Runs:
    return Runs(*(getattr(self, f)[idx] for f in ("N", "D", "C", "L", "budget")), self.flops)

  def budgets(self) -> np.ndarray:
    """The distinct budgets, ascending."""
    return np.unique(self.budget[np.isfinite(self.budget)])

  def budget_or_C(self) -> np.ndarray:
    """C, with the runs of a budget set to the budget's value (their compute is the same)."""
    return np.where(np.isfinite(self.budget), self.budget, self.C)


def make_runs(
  L,
  N=None,
  D=None,
  C=None,
  budgets=None,
  budget_tol: float = 0.02,
  drop_highest_loss: int = 0,
  row_names=None,
  names=None,
  repeats: str = "all",
  other_columns=None,
) -> Runs:
  """Validate the arrays, combine runs that share N and D as ``repeats`` says, drop the
  ``drop_highest_loss`` highest losses (Besiroglu et al. drop 5 of the Chinchilla points) and derive the
  missing one of N, D, C with C = 6 N D. ``row_names`` name the rows and ``names`` ({"N": ..., "L": ...})
  the quantities in messages (default: "row i", "N"). Rows that repeat another row's values are warned
  about (a concatenated CSV counts runs twice).

  Runs that share N and D (equal values of the quantities given: a learning-rate sweep, seeds) are, with
  ``repeats``: "all", kept, each a point of its own, with a warning naming the ``other_columns`` ({name:
  each row's value}) that tell them apart; "best", the lowest loss of each group kept; "mean", one run of
  each group with the group's mean loss. Either way the groups, as they were, are the Runs' ``shared``.

  Budgets: with ``budgets`` (nominal values) each run goes to the nearest one within a factor
  1 + budget_tol, else to none; without, runs whose sorted C differ by at most budget_tol
  (relative) from the previous one share a budget, whose value is their geometric mean.
  """
  given = {name: v for name, v in (("N", N), ("D", D), ("C", C)) if v is not None}
  if len(given) < 2:
    raise AnalysisError(f"need at least two of N, D, C; got {sorted(given) or 'none'}")
  columns = {name: np.asarray(v, dtype=float) for name, v in given.items()}
  columns["L"] = np.asarray(L, dtype=float)
  n_rows = len(columns["L"])
  row_names = [f"row {i}" for i in range(n_rows)] if row_names is None else list(row_names)
  names = {name: name for name in columns} | (names or {})
  for name, v in columns.items():
    if v.shape != (n_rows,):
      raise AnalysisError(f"{names[name]} has shape {v.shape}, expected ({n_rows},)")
    for bad, what in ((~np.isfinite(v), "NaN, empty or infinite"), (np.isfinite(v) & (v <= 0), "non-positive")):
      if bad.any():
        first = row_names[int(np.argmax(bad))]
        raise AnalysisError(f"{names[name]} is {what} in {bad.sum()} row(s), first at {first}")
  _warn_repeated_rows(np.column_stack(list(columns.values())), row_names)
  if "C" not in columns:
    columns["C"] = 6.0 * columns["N"] * columns["D"]
  elif "D" not in columns:
    columns["D"] = columns["C"] / (6.0 * columns["N"])
  elif "N" not in columns:
    columns["N"] = columns["C"] / (6.0 * columns["D"])
  columns, shared = _combine_repeats(columns, repeats, other_columns or {}, row_names)
  n_rows = len(columns["L"])
  if drop_highest_loss:
    keep = np.sort(np.argsort(columns["L"], kind="stable")[: max(n_rows - drop_highest_loss, 0)])
    columns = {name: v[keep] for name, v in columns.items()}
    n_rows = len(keep)
  if n_rows < 3:
    raise AnalysisError(f"only {n_rows} run(s); need at least 3")
  budget = group_by_value(columns["C"], budget_tol, centers=budgets)
  unassigned = ~np.isfinite(budget)
  if budgets is None and unassigned.any():
    warn(
      f"{unassigned.sum()} run(s) have C values that chain over more than {2 * budget_tol:.0%} and are "
      "not used as IsoFLOP budgets; pass the nominal budgets (--budgets) instead"
    )
  elif unassigned.any():
    warn(f"{unassigned.sum()} run(s) are not within {budget_tol:.0%} of a given budget and are not used by approach 2")
  flops = FlopsPerToken.of_runs(columns["N"], columns["D"], columns["C"])
  return Runs(columns["N"], columns["D"], columns["C"], columns["L"], budget, flops, shared)


def _combine_repeats(columns: dict[str, np.ndarray], repeats: str, other_columns,
                     row_names: list[str]) -> tuple[dict[str, np.ndarray], tuple[SharedRuns, ...]]:
  """``make_runs``'s treatment of runs that share N and D: the columns with those runs kept, each group's best,
  or each group's mean loss; and the groups as they were."""
  if repeats not in REPEATS:
    raise AnalysisError(f"repeats={repeats!r}: choose one of {', '.join(REPEATS)}")
  keys = np.column_stack([columns[name] for name in ("N", "D", "C")])
  _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
  inverse = inverse.ravel()
  sizes = np.bincount(inverse)
  if sizes.max() == 1:
    return columns, ()
  groups = [np.flatnonzero(inverse == g) for g in np.flatnonzero(sizes > 1)]
  differ = [name for name, values in other_columns.items() if any(len({values[i] for i in g}) > 1 for g in groups)]
  shared = tuple(
    SharedRuns(float(columns["N"][g[0]]), float(columns["D"][g[0]]), columns["L"][g],
               {name: tuple(str(other_columns[name][i]) for i in g) for name in differ},
               tuple(row_names[i] for i in g))
    for g in sorted(groups, key=lambda g: (columns["N"][g[0]], columns["D"][g[0]]))
  )
  if repeats == "all":
    warn(
      f"{len(groups)} group(s) of runs share their N and D ({sum(map(len, groups))} runs"
      + (f", told apart by {', '.join(differ)}" if differ else "")
      + "), and each run is fitted as a point of its own: pass --repeats best to keep each group's lowest loss "
      "(a learning-rate or other hyperparameter sweep) or --repeats mean to average its losses (seeds)"
    )
    return columns, shared
  if repeats == "best":
    by_loss = np.lexsort((columns["L"], inverse))  # by group, then loss: each group's best comes first
    keep = np.sort(by_loss[np.r_[True, np.diff(inverse[by_loss]) != 0]])
    for name in differ:
      _warn_best_at_an_end(name, shared)
    return {name: values[keep] for name, values in columns.items()}, shared
  keep = np.sort(first)
  combined = {name: values[keep] for name, values in columns.items()}
  combined["L"] = (np.bincount(inverse, weights=columns["L"]) / sizes)[inverse[keep]]
  return combined, shared


def _warn_best_at_an_end(name: str, shared: tuple[SharedRuns, ...]) -> None:
  """Warn when, in groups that tried 3 or more numeric values of ``name`` (a learning rate), the lowest loss
  has the smallest or largest: its optimum may lie beyond what was tried."""
  ends = {"smallest": 0, "largest": 0}
  tried = 0
  for group in shared:
    numbers = group.numeric(name)
    if numbers is not None and len(np.unique(numbers)) >= 3:
      tried += 1
      value = numbers[group.best]
      ends["smallest"] += value == numbers.min()
      ends["largest"] += value == numbers.max()
  for end, count in ends.items():
    if count:
      warn(f"--repeats best: in {count} of {tried} group(s) that tried 3 or more values of {name}, the lowest loss "
           f"has the {end} value tried; the best {name} may lie beyond it: widen that grid")


def _warn_repeated_rows(values: np.ndarray, row_names: list[str]) -> None:
  """Warn when rows (N, D, C, loss: the columns given) repeat an earlier row exactly."""
  _, first, inverse = np.unique(values, axis=0, return_index=True, return_inverse=True)
  repeats = np.flatnonzero(first[inverse.ravel()] != np.arange(len(values)))
  if repeats.size:
    i = repeats[0]
    warn(
      f"{repeats.size} row(s) repeat an earlier row exactly (first: {row_names[i]} repeats "
      f"{row_names[first[inverse.ravel()[i]]]}); each counts as a separate run, so remove copies if the CSV "
      "was concatenated"
    )


def group_by_value(x: np.ndarray, rel_tol: float, centers=None) -> np.ndarray:
  """Group positive values within a relative tolerance; returns each value's group value (NaN: none).

  With ``centers`` a value joins the nearest centre within a factor 1 + rel_tol. Without, sorted
  values within rel_tol of their predecessor share a group valued at its geometric mean; a group
  that chains over more than a factor 1 + 2 rel_tol is not a group of equal values (NaN).
  """
  x = np.asarray(x, dtype=float)
  log_tol = math.log1p(rel_tol)
  if centers is not None:
    log_centers = np.log(np.asarray(centers, dtype=float))
    dist = np.abs(np.log(x)[:, None] - log_centers[None, :])
    nearest = dist.argmin(axis=1)
    within = dist[np.arange(len(x)), nearest] <= log_tol
    return np.where(within, np.exp(log_centers[nearest]), np.nan)
  order = np.argsort(x)
  log_sorted = np.log(x[order])
  labels = np.concatenate([[0], np.cumsum(np.diff(log_sorted) > log_tol)])
  values = np.empty_like(x)
  for label in np.unique(labels):
    members = log_sorted[labels == label]
    chained = members[-1] - members[0] > math.log1p(2 * rel_tol)
    values[order[labels == label]] = np.nan if chained else np.exp(members.mean())
  return values


# --------------------------------------------------------------------------------------------------
# Bootstrap and intervals
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
  value: float
  lo: float = math.nan
  hi: float = math.nan

  @property
  def has_interval(self) -> bool:
    return math.isfinite(self.lo) and math.isfinite(self.hi)


def percentile_band(law, fn: Callable, level: float = INTERVAL_LEVEL):
  """(lo, hi): the percentile interval of fn (scalar or array valued) over the law's bootstrap
  samples; None without samples."""
  if law.samples is None or len(law.samples) == 0:
    return None
  values = np.array([fn(type(law).from_params(s)) for s in law.samples], dtype=float)
  lo, hi = np.nanpercentile(values, [50 * (1 - level), 50 * (1 + level)], axis=0)
  return lo, hi


def estimate(law, fn: Callable, level: float = INTERVAL_LEVEL) -> Estimate:
  """fn(law) with the percentile interval of fn over the law's bootstrap samples."""
  value = float(fn(law))
  band = percentile_band(law, fn, level)
  return Estimate(value) if band is None else Estimate(value, float(band[0]), float(band[1]))


def _progress(iterable, total: int, description: str, enabled: bool):
  """A progress bar from rich or tqdm, whichever is installed; the bare iterable otherwise."""
  if not enabled:
    return iterable
  try:
    from rich.progress import track

    return track(iterable, total=total, description=description, transient=True)
  except ImportError:
    pass
  try:
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False)
  except ImportError:
    return iterable


def default_workers() -> int:
  """The CPUs this process may run on (its affinity, as a SLURM allocation sets it), at most
  MAX_DEFAULT_WORKERS: each worker holds about 80 MB, and a login node may have 100 CPUs and little memory."""
  cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
  return min(cpus, MAX_DEFAULT_WORKERS)


_shared_map: tuple[int, Callable] | None = None  # (workers, its map) inside ``worker_pool``


@contextlib.contextmanager
def worker_pool(workers: int):
  """Within it, every parallel step with this many ``workers`` (fits, bootstraps, hold-out refits) shares one
  pool of spawned processes, started once rather than once a step (each start imports numpy and scipy in
  every worker). A step asks for its processes by submitting work, so a pool no step uses starts none."""
  global _shared_map
  with _mapped(workers, workers) as mapper:
    previous, _shared_map = _shared_map, (workers, mapper)
    try:
      yield
    finally:
      _shared_map = previous


@contextlib.contextmanager
def _mapped(workers: int, tasks: int):
  """``map``, or the map of a pool of min(workers, tasks) processes, spawned rather than forked (the caller
  may hold threads: JAX's, BLAS's); results in order either way. Inside ``worker_pool(workers)``, its map.
  The workers ignore Ctrl-C (SIGINT reaches the terminal's whole process group): they are started with it
  ignored, from birth (``_spawning_quietly``), so the caller alone gets it, and leaving the context cancels
  the work not yet started and waits for the chunks running, a fraction of a second, so that no worker
  outlives it or prints a traceback."""
  if _shared_map is not None and _shared_map[0] == workers:
    yield _shared_map[1]
    return
  if min(workers, tasks) <= 1:
    yield map
    return
  try:
    pool = ProcessPoolExecutor(min(workers, tasks), multiprocessing.get_context("spawn"))
  except OSError as err:  # no semaphores here (a container without /dev/shm)
    warn(f"one process instead of {min(workers, tasks)}: cannot start worker processes here ({err})")
    yield map
    return
  try:
    yield _spawning_quietly(pool.map)
  finally:
    pool.shutdown(wait=True, cancel_futures=True)


def _spawning_quietly(pool_map: Callable) -> Callable:
  """The pool's map with SIGINT ignored while it submits the work, which is when the pool starts its
  processes: they inherit the disposition, and Python keeps a SIGINT it starts with ignored ignored, from
  before their imports (an initializer would run after them, too late for a Ctrl-C meanwhile). The results
  are waited for with the caller's own handler back. Outside the main thread, where signals cannot be set,
  the map as it is."""
  def mapper(fn, *iterables):
    if threading.current_thread() is not threading.main_thread():
      return pool_map(fn, *iterables)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
      return pool_map(fn, *iterables)
    finally:
      signal.signal(signal.SIGINT, previous)

  return mapper


def within(strata: np.ndarray) -> Callable[[np.random.Generator], np.ndarray]:
  """A draw for ``bootstrap``: row indices resampled with replacement within each stratum."""
  groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
  return lambda rng: np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])


def _evaluate(statistic: Callable[[np.ndarray], np.ndarray], draws: list[np.ndarray]) -> list[np.ndarray | None]:
  """``statistic`` on each resample; None where it fails (AnalysisError, or a numerical failure: ValueError,
  ArithmeticError). Module-level, so that worker processes can run it."""
  values = []
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for idx in draws:
      try:
        values.append(np.asarray(statistic(idx), dtype=float))
      except (ValueError, ArithmeticError):  # AnalysisError, math domain errors, overflow, LinAlgError
        values.append(None)
  return values


def bootstrap(
  statistic: Callable[[np.ndarray], np.ndarray],
  draw: Callable[[np.random.Generator], np.ndarray],
  n_boot: int,
  seed: int,
  description: str = "bootstrap",
  progress: bool = False,
  workers: int = 1,
) -> np.ndarray:
  """Evaluate ``statistic(draw(rng))`` on ``n_boot`` resamples (``within(strata)`` resamples rows).

  Resamples on which the statistic fails are dropped and counted in a warning. Returns an array (n_ok, k).
  With ``workers`` > 1, chunks of BOOTSTRAP_CHUNK resamples go to that many processes (the statistic must
  pickle: a module-level function or a partial of one, not a lambda); the samples are the same.
  """
  rng = np.random.default_rng(seed)
  draws = [draw(rng) for _ in range(n_boot)]
  chunks = [draws[i:i + BOOTSTRAP_CHUNK] for i in range(0, n_boot, BOOTSTRAP_CHUNK)]
  with _mapped(workers, len(chunks)) as mapper:
    evaluated = _progress(mapper(functools.partial(_evaluate, statistic), chunks), len(chunks), description, progress)
    samples = [value for chunk in evaluated for value in chunk if value is not None]
  if len(samples) < n_boot:
    warn(f"{description}: {n_boot - len(samples)} of {n_boot} resamples could not be fitted and were dropped")
  if not samples:
    return np.empty((0, 0))
  return np.array(samples)


# --------------------------------------------------------------------------------------------------
# Simple laws
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLaw:
  """y = k x^p, fitted by least squares in log-log space."""

  k: float
  p: float
  samples: np.ndarray | None = field(default=None, repr=False, compare=False)

  @property
  def params(self) -> np.ndarray:
    return np.array([math.log(self.k), self.p])

  @classmethod
  def from_params(cls, params) -> PowerLaw:
    return cls(math.exp(params[0]), float(params[1]))

  def __call__(self, x):
    return self.k * np.asarray(x, dtype=float) ** self.p


def fit_power_law(x, y) -> PowerLaw:
  x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
  if len(np.unique(x)) < 2:
    raise AnalysisError("a power law needs at least two distinct x values")
  p, log_k = np.polyfit(np.log(x), np.log(y), 1)
  return PowerLaw(math.exp(log_k), float(p))


@dataclass(frozen=True)
class SaturatingLaw:
  """y = E + (x0 / x)^gamma (Kaplan's L(N), L(C) with an irreducible term E)."""

  E: float
  x0: float
  gamma: float
  samples: np.ndarray | None = field(default=None, repr=False, compare=False)

  @property
  def params(self) -> np.ndarray:
    return np.array([self.E, math.log(self.x0), self.gamma])

  @classmethod
  def from_params(cls, params) -> SaturatingLaw:
    return cls(float(params[0]), math.exp(params[1]), float(params[2]))

  def __call__(self, x):
    return self.E + np.exp(self.gamma * (math.log(self.x0) - np.log(x)))


def fit_saturating_law(x, y, start: SaturatingLaw | None = None) -> SaturatingLaw:
  """Least squares on log y for y = E + exp(k - gamma (log x - mean log x)), E >= 0, gamma > 0.

  Without ``start``, a small grid of starts is tried and the best kept.
  """
  x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
  if len(np.unique(x)) < MIN_POINTS_SATURATING:
    raise AnalysisError(f"E + (x0/x)^gamma needs at least {MIN_POINTS_SATURATING} distinct x values")
  log_x, log_y = np.log(x), np.log(y)
  centre = log_x.mean()
  u = log_x - centre

  def residuals(theta):
    E, k, gamma = theta
    return np.log(E + np.exp(k - gamma * u)) - log_y

  if start is None:
    y_min, y_mid = y.min(), np.median(y)
    starts = [(E, math.log(y_mid - E), gamma) for E in (0.0, 0.5 * y_min, 0.9 * y_min) for gamma in (0.05, 0.3, 1.0)]
  else:
    log_x0 = math.log(start.x0)
    starts = [(start.E, start.gamma * (log_x0 - centre), start.gamma)]
  best = None
  for theta0 in starts:
    result = least_squares(residuals, theta0, bounds=([0.0, -np.inf, 1e-6], [np.inf, np.inf, 20.0]))
    if result.success and (best is None or result.cost < best.cost):
      best = result
  if best is None:
    raise AnalysisError("the fit of E + (x0/x)^gamma did not converge")
  E, k, gamma = best.x
  log_x0 = centre + k / gamma
  if abs(log_x0) > MAX_LOG_COEFFICIENT:
    raise AnalysisError(f"the fit of E + (x0/x)^gamma is degenerate (gamma={gamma:.3g}, ln x0={log_x0:.3g})")
  return SaturatingLaw(float(E), math.exp(log_x0), float(gamma))


# --------------------------------------------------------------------------------------------------
# Approach 3: parametric L(N, D)
# --------------------------------------------------------------------------------------------------


@functools.cache
def _blas_controller():
  try:
    from threadpoolctl import ThreadpoolController
  except ImportError:
    return None
  return ThreadpoolController()


def _single_threaded_blas():
  """A context with BLAS limited to one thread. L-BFGS-B calls BLAS on 5x5 problems, where
  OpenBLAS threads only contend (25x slower on a busy 2-core machine). Needs threadpoolctl; without
  it, a no-op."""
  controller = _blas_controller()
  return contextlib.nullcontext() if controller is None else controller.limit(limits=1)


def start_grid() -> np.ndarray:
  """Hoffmann et al.'s 4500 starts as rows (a, b, e, alpha, beta)."""
  alphas = betas = np.arange(0.0, 2.01, 0.5)
  es = np.arange(-1.0, 1.01, 0.5)
  abs_ = np.arange(0.0, 25.1, 5.0)
  grid = [(a, b, e, alpha, beta) for alpha, beta, e, a, b in itertools.product(alphas, betas, es, abs_, abs_)]
  return np.array(grid)


def _huber(r: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
  """The sum of Huber losses of the residuals r, and its derivative by each residual."""
  abs_r = np.abs(r)
  q = np.minimum(abs_r, delta)
  return np.dot(q, abs_r - 0.5 * q), np.copysign(q, r)  # 0.5 r^2 where |r| <= delta, delta (|r| - delta/2) beyond


def huber_objective(params, X: np.ndarray, log_l: np.ndarray, delta: float = HUBER_DELTA):
  """Sum of Huber losses of log L_pred - log L, and its gradient; params = (a, b, e, alpha, beta).

  log L_pred = LSE(a - alpha ln N, b - beta ln D, e), computed stably; X is the (3, n) matrix with
  rows 1, ln N, ln D, so that the three terms are W @ X.
  """
  a, b, e, alpha, beta = params
  W = np.array([[a, -alpha, 0.0], [b, 0.0, -beta], [e, 0.0, 0.0]])
  T = W @ X
  m = T.max(axis=0)
  P = np.exp(T - m)
  total = P.sum(axis=0)
  value, slope = _huber(m + np.log(total) - log_l, delta)
  # d value / d T[k, i] = huber'(r_i) * softmax_k(T[:, i]); S[k, j] = sum_i of that times X[j, i].
  S = (P * (slope / total)) @ X.T
  return value, np.array([S[0, 0], S[1, 0], S[2, 0], -S[0, 1], -S[1, 2]])


class JointLaw:
  """A law L(N, D) fitted to every run, and the compute-optimal allocation it implies. Subclasses give
  ``loss(N, D)``, ``n_opt_proportional(C, k)``, the optimum in closed form when a token costs k N FLOPs, and
  ``tokens_for(N, L)`` and ``params_for(D, L)``, the D (or N) at which the law reaches loss L with N parameters
  (or D tokens): inf where it never does."""

  method: ClassVar[str]  # its name in the report, predictions and warnings
  log_E: float  # each law has its five parameters, then objective and samples, as dataclass fields

  @classmethod
  def from_params(cls, params, objective: float = math.nan):
    """The law of a parameter vector (``params``: its five parameters in order)."""
    return cls(*(float(v) for v in params), objective)

  @property
  def E(self) -> float:
    return math.exp(self.log_E)

  def n_opt(self, C, flops: FlopsPerToken):
    """The N that minimises L(N, C / f(N)) at compute C, a token costing f(N) = ``flops(N)`` FLOPs: the
    closed form when f = k N, else a search in ln N between the closed forms at the extreme f/N, widened by
    a factor e^3 each way. Where f/N rises and falls with N (a ladder's shapes), L along an IsoFLOP line can
    have two minima: the search takes the lowest of FRONTIER_GRID points across the bracket, then refines it
    between that point's neighbours by golden section."""
    C = np.asarray(C, dtype=float)
    if flops.k is not None:
      return self.n_opt_proportional(C, flops.k)
    lo = np.log(self.n_opt_proportional(C, flops.per_param.max())) - 3.0
    hi = np.log(self.n_opt_proportional(C, flops.per_param.min())) + 3.0

    def along(ln_n, C=C):
      N = np.exp(ln_n)
      return self.loss(N, C / flops(N))

    step = (hi - lo) / (FRONTIER_GRID - 1)
    grid = lo[..., None] + step[..., None] * np.arange(FRONTIER_GRID)
    best = np.take_along_axis(grid, np.argmin(along(grid, C[..., None]), axis=-1)[..., None], axis=-1)[..., 0]
    lo, hi = np.maximum(best - step, lo), np.minimum(best + step, hi)

    shrink = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - shrink * (hi - lo), lo + shrink * (hi - lo)
    f1, f2 = along(x1), along(x2)
    for _ in range(GOLDEN_ITERATIONS):
      left = f1 < f2  # the minimum lies in [lo, x2]: x1 becomes the new x2
      lo, hi = np.where(left, lo, x1), np.where(left, x2, hi)
      new = np.where(left, hi - shrink * (hi - lo), lo + shrink * (hi - lo))
      f_new = along(new)
      x1, x2, f1, f2 = (np.where(left, new, x2), np.where(left, x1, new),
                        np.where(left, f_new, f2), np.where(left, f1, f_new))
    return np.exp(0.5 * (lo + hi))

  def d_opt(self, C, flops: FlopsPerToken):
    return np.asarray(C, dtype=float) / flops(self.n_opt(C, flops))

  def loss_opt(self, C, flops: FlopsPerToken):
    N = self.n_opt(C, flops)
    return self.loss(N, np.asarray(C, dtype=float) / flops(N))


@dataclass(frozen=True)
class ChinchillaLaw(JointLaw):
  """L(N, D) = E + A / N^alpha + B / D^beta, Hoffmann et al.'s approach 3, kept as the fitted
  parameters (ln A, ln B, ln E, alpha, beta): a fit whose E underflows to 0 keeps its ln E."""

  method: ClassVar[str] = "approach 3"
  log_A: float
  log_B: float
  log_E: float
  alpha: float
  beta: float
  objective: float = math.nan
  samples: np.ndarray | None = field(default=None, repr=False, compare=False)

  @property
  def params(self) -> np.ndarray:
    """(a, b, e, alpha, beta) with A = e^a, B = e^b, E = e^e."""
    return np.array([self.log_A, self.log_B, self.log_E, self.alpha, self.beta])

  @property
  def A(self) -> float:
    return math.exp(self.log_A)

  @property
  def B(self) -> float:
    return math.exp(self.log_B)

  def loss(self, N, D):
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    with np.errstate(over="ignore"):  # a steep bootstrap fit far out: N^alpha = inf, its term 0
      return self.E + self.A / N**self.alpha + self.B / D**self.beta

  @property
  def G(self) -> float:
    return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

  @property
  def a(self) -> float:
    """Exponent of N_opt(C) ~ C^a."""
    return self.beta / (self.alpha + self.beta)

  @property
  def b(self) -> float:
    """Exponent of D_opt(C) ~ C^b."""
    return self.alpha / (self.alpha + self.beta)

  def n_opt_proportional(self, C, k: float):
    """G (C/k)^a: Hoffmann et al.'s closed form (k = 6)."""
    return self.G * (C / k) ** self.a

  def tokens_for(self, N, L):
    """B / D^beta = L - E - A / N^alpha."""
    return _power_root(self.B, np.asarray(L, dtype=float) - self.loss(N, np.inf), self.beta)

  def params_for(self, D, L):
    """A / N^alpha = L - E - B / D^beta."""
    return _power_root(self.A, np.asarray(L, dtype=float) - self.loss(np.inf, D), self.alpha)


@dataclass(frozen=True)
class KaplanLaw(JointLaw):
  """L(N, D) = E + [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D: Kaplan et al.'s Eq. 1.5 with an
  irreducible term E (theirs is E = 0), kept as the fitted parameters (ln E, ln N_c, ln D_c, alpha_N,
  alpha_D). Without a data limit it is E + (N_c / N)^alpha_N, without a size limit E + (D_c / D)^alpha_D."""

  method: ClassVar[str] = "Kaplan L(N, D)"
  log_E: float
  log_Nc: float
  log_Dc: float
  alpha_N: float
  alpha_D: float
  objective: float = math.nan
  samples: np.ndarray | None = field(default=None, repr=False, compare=False)

  @property
  def params(self) -> np.ndarray:
    """(e, ln N_c, ln D_c, alpha_N, alpha_D) with E = e^e."""
    return np.array([self.log_E, self.log_Nc, self.log_Dc, self.alpha_N, self.alpha_D])

  @property
  def Nc(self) -> float:
    return math.exp(self.log_Nc)

  @property
  def Dc(self) -> float:
    return math.exp(self.log_Dc)

  @property
  def a(self) -> float:
    """Exponent of N_opt(C) ~ C^a where C = k N D."""
    return self.alpha_D / (self.alpha_N + self.alpha_D)

  @property
  def b(self) -> float:
    """Exponent of D_opt(C) ~ C^b where C = k N D."""
    return self.alpha_N / (self.alpha_N + self.alpha_D)

  def loss(self, N, D):
    ratio = self.alpha_N / self.alpha_D
    inner = np.logaddexp(ratio * (self.log_Nc - np.log(N)), self.log_Dc - np.log(D))
    return self.E + np.exp(self.alpha_D * inner)

  def n_opt_proportional(self, C, k: float):
    """Where (N_c / N)^g + D_c k N / C, g = alpha_N / alpha_D, is least: N^(1+g) = g N_c^g C / (k D_c)."""
    g = self.alpha_N / self.alpha_D
    return np.exp((math.log(g) + g * self.log_Nc - self.log_Dc + np.log(np.asarray(C, dtype=float) / k)) / (1 + g))

  def _inner(self, L):
    """(L - E)^(1 / alpha_D): the bracket of Eq. 1.5 at loss L (nan at or below E)."""
    excess = np.asarray(L, dtype=float) - self.E
    with np.errstate(invalid="ignore"):
      return np.where(excess > 0, np.maximum(excess, 0) ** (1 / self.alpha_D), np.nan)

  def tokens_for(self, N, L):
    """D_c / D = (L - E)^(1/alpha_D) - (N_c / N)^(alpha_N/alpha_D)."""
    return _power_root(self.Dc, self._inner(L) - (self.Nc / np.asarray(N, dtype=float)) ** (self.alpha_N / self.alpha_D),
                       1.0)

  def params_for(self, D, L):
    """(N_c / N)^(alpha_N/alpha_D) = (L - E)^(1/alpha_D) - D_c / D."""
    return _power_root(self.Nc ** (self.alpha_N / self.alpha_D), self._inner(L) - self.Dc / np.asarray(D, dtype=float),
                       self.alpha_N / self.alpha_D)


def _power_root(scale: float, target, power: float):
  """The x with scale / x^power = target: (scale / target)^(1/power), inf where target is not positive (the
  term would have to vanish or turn negative)."""
  target = np.asarray(target, dtype=float)
  with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
    return np.where(target > 0, (scale / np.where(target > 0, target, 1.0)) ** (1 / power), np.inf)


def kaplan_objective(params, X: np.ndarray, log_l: np.ndarray, delta: float = HUBER_DELTA):
  """Sum of Huber losses of log L_pred - log L for KaplanLaw, and its gradient; params = (e, ln N_c, ln D_c,
  alpha_N, alpha_D), X as for ``huber_objective``.

  log L_pred = LSE(e, t), t = alpha_D s, s = LSE(u, v), u = (alpha_N / alpha_D) ln(N_c / N), v = ln(D_c / D).
  """
  e, log_nc, log_dc, alpha_n, alpha_d = params
  x_n = log_nc - X[1]
  u = (alpha_n / alpha_d) * x_n
  s = np.logaddexp(u, log_dc - X[2])
  t = alpha_d * s
  log_pred = np.logaddexp(e, t)
  value, slope = _huber(log_pred - log_l, delta)
  p_u = np.exp(u - s)  # d s / d u; d s / d v = 1 - p_u
  w = slope * np.exp(t - log_pred)  # d value / d t
  gradient = [
    slope @ np.exp(e - log_pred),
    alpha_n * (w @ p_u),
    alpha_d * (w @ (1.0 - p_u)),
    w @ (p_u * x_n),
    w @ (s - p_u * u),
  ]
  return value, np.array(gradient)


def kaplan_start_grid() -> np.ndarray:
  """972 starts as rows (e, ln N_c, ln D_c, alpha_N, alpha_D), spanning E of 0.37 to 2.7, N_c and D_c of 1 to
  e^35 (Kaplan et al.'s are e^32) and exponents of 0.1 to 0.9."""
  exponents = (0.1, 0.3, 0.9)
  scales = np.arange(0.0, 35.1, 7.0)
  return np.array(list(itertools.product((-1.0, 0.0, 1.0), scales, scales, exponents, exponents)))


def _minimize_from(objective: Callable, bounds, starts: np.ndarray, data: tuple) -> tuple[float, np.ndarray | None]:
  """(objective, x) of the best finite L-BFGS-B fit from `starts`, the first of equals; (inf, None) when
  none is finite. Module-level, so that worker processes can run it."""
  best = (math.inf, None)
  with _single_threaded_blas():
    for x0 in starts:
      result = minimize(objective, x0, args=data, jac=True, method="L-BFGS-B", bounds=bounds)
      if np.isfinite(result.fun) and result.fun < best[0]:
        best = (float(result.fun), result.x)
  return best


def _fit_joint(objective: Callable, bounds, runs: Runs, starts: np.ndarray, delta: float, progress: bool,
               workers: int, method: str):
  """The best of L-BFGS-B fits of a five-parameter L(N, D) (``objective``: the summed Huber loss of the log
  residuals and its gradient) from every start, polished with tight tolerances. The starts are shared among
  `workers` processes in chunks of START_CHUNK; the fit is the same, bit for bit (the first best start wins
  either way)."""
  n_distinct, d_distinct = len(np.unique(runs.N)), len(np.unique(runs.D))
  if len(runs) < MIN_POINTS_APPROACH3 or min(n_distinct, d_distinct) < MIN_DISTINCT_APPROACH3:
    raise AnalysisError(
      f"{method} needs at least {MIN_POINTS_APPROACH3} runs with {MIN_DISTINCT_APPROACH3} distinct "
      f"N and D; got {len(runs)} runs, {n_distinct} distinct N, {d_distinct} distinct D"
    )
  data = (np.vstack([np.ones(len(runs)), np.log(runs.N), np.log(runs.D)]), np.log(runs.L), delta)
  chunks = [starts[i:i + START_CHUNK] for i in range(0, len(starts), START_CHUNK)]
  with _mapped(workers, len(chunks)) as mapper:
    bests = list(_progress(mapper(functools.partial(_minimize_from, objective, bounds, data=data), chunks),
                           len(chunks), f"{method} fit ({len(starts)} starts)", progress))
  found = [(fun, x) for fun, x in bests if x is not None]
  x = min(found, key=lambda best: best[0])[1] if found else None  # min keeps the first (chunk) of equals
  if x is None or not np.all(np.isfinite(x)):
    raise AnalysisError(f"{method}: no start gave a finite fit")
  with _single_threaded_blas():
    return minimize(objective, x, args=data, jac=True, method="L-BFGS-B", bounds=bounds, options=POLISH_OPTIONS)


def log_D_spread(N, D) -> float:
  """The RMS of ln D about its least-squares line in ln N: how far D varies apart from N."""
  log_N, log_D = np.log(N), np.log(D)
  return float(np.sqrt(np.mean((log_D - np.polyval(np.polyfit(log_N, log_D, 1), log_N)) ** 2)))


def _warn_about_fit(runs: Runs, law: JointLaw) -> None:
  """Warn when ln D is nearly a linear function of ln N among the runs (one budget, or a fixed
  tokens-per-parameter design), where the law extrapolates from a line, and when its E is about 0 (below
  NEGLIGIBLE_E of the lowest loss)."""
  method = law.method
  spread = log_D_spread(runs.N, runs.D)
  if spread < MIN_LOG_D_SPREAD:
    warn(
      f"{method}: D is almost a power of N among the runs (ln D lies within {spread:.3g} RMS of a line in "
      f"ln N; {len(runs.budgets())} budget(s)), as on a single IsoFLOP budget: N and D are confounded and "
      "L(N, D) extrapolates from one budget; trust its predictions only near that budget"
    )
  if law.log_E < math.log(NEGLIGIBLE_E * runs.L.min()):
    warn(f"{method}: E is about 0 (ln E = {law.log_E:.0f}, E below {NEGLIGIBLE_E:g} of the lowest loss): the runs "
         "show no irreducible loss")


def fit_approach3(
  runs: Runs,
  starts: np.ndarray | None = None,
  delta: float = HUBER_DELTA,
  progress: bool = False,
  workers: int = 1,
) -> ChinchillaLaw:
  """Minimise the summed Huber loss with L-BFGS-B from every start (default: the 4500-point grid),
  keep the best and polish it with tight tolerances. Warns when ln D is nearly a linear function of
  ln N (one budget, or a fixed tokens-per-parameter design), where the fit extrapolates from a line,
  and when E is about 0 (below NEGLIGIBLE_E of the lowest loss): ``_warn_about_fit``.

  With `workers` > 1 the starts are shared among that many processes, in chunks of
  START_CHUNK; the fit is the same, bit for bit (the first best start wins either way)."""
  starts = start_grid() if starts is None else np.atleast_2d(starts)
  best = _fit_joint(huber_objective, None, runs, starts, delta, progress, workers, ChinchillaLaw.method)
  a, b, e, alpha, beta = best.x
  if alpha <= 0 or beta <= 0 or max(a, b, e) > MAX_LOG_COEFFICIENT:
    raise AnalysisError(
      f"approach 3 fit is degenerate (alpha={alpha:.3g}, beta={beta:.3g}, ln A={a:.3g}, ln B={b:.3g}, "
      f"ln E={e:.3g}); the data do not constrain L(N, D)"
    )
  law = ChinchillaLaw.from_params(best.x, objective=float(best.fun))
  _warn_about_fit(runs, law)
  return law


KAPLAN_EXPONENT_BOUNDS = (1e-3, 10.0)  # alpha_N and alpha_D: the law divides by alpha_D


def fit_kaplan_joint(
  runs: Runs,
  starts: np.ndarray | None = None,
  delta: float = HUBER_DELTA,
  progress: bool = False,
  workers: int = 1,
) -> KaplanLaw:
  """Kaplan et al.'s L(N, D) with an irreducible term, fitted as approach 3 is: the summed Huber loss of the
  log residuals minimised by L-BFGS-B (exponents within KAPLAN_EXPONENT_BOUNDS) from every start (default:
  ``kaplan_start_grid``), the best polished. Its objective is comparable with approach 3's: both have five
  parameters and the same loss on the same residuals."""
  starts = kaplan_start_grid() if starts is None else np.atleast_2d(starts)
  bounds = [(None, None)] * 3 + [KAPLAN_EXPONENT_BOUNDS] * 2
  best = _fit_joint(kaplan_objective, bounds, runs, starts, delta, progress, workers, KaplanLaw.method)
  e, log_nc, log_dc, alpha_n, alpha_d = best.x
  at_bound = [x for x in (alpha_n, alpha_d) if min(abs(x - bound) for bound in KAPLAN_EXPONENT_BOUNDS) < 1e-6]
  if at_bound or max(abs(log_nc), abs(log_dc), e) > MAX_LOG_COEFFICIENT:
    raise AnalysisError(
      f"{KaplanLaw.method} fit is degenerate (alpha_N={alpha_n:.3g}, alpha_D={alpha_d:.3g}, ln N_c={log_nc:.3g}, "
      f"ln D_c={log_dc:.3g}, ln E={e:.3g}); the data do not constrain it"
    )
  law = KaplanLaw.from_params(best.x, objective=float(best.fun))
  _warn_about_fit(runs, law)
  return law


JOINT_FITS = {ChinchillaLaw: (fit_approach3, start_grid), KaplanLaw: (fit_kaplan_joint, kaplan_start_grid)}


def bootstrap_joint(
  runs: Runs,
  law: JointLaw,
  n_boot: int,
  seed: int = 0,
  n_grid_starts: int = 4,
  delta: float = HUBER_DELTA,
  progress: bool = False,
  workers: int = 1,
) -> JointLaw:
  """The law (approach 3's or Kaplan's L(N, D)) with bootstrap samples: each resample is refitted from the
  full fit's optimum and a few random starts of the law's grid, in `workers` processes."""
  fit, grid_of = JOINT_FITS[type(law)]
  grid = grid_of()
  rng = np.random.default_rng(seed)
  starts = np.vstack([law.params, grid[rng.choice(len(grid), size=n_grid_starts, replace=False)]])
  samples = bootstrap(
    functools.partial(_refit, fit, runs, starts, delta),
    within(np.zeros(len(runs))),
    n_boot,
    seed,
    f"{law.method} bootstrap",
    progress,
    workers,
  )
  return replace(law, samples=samples)


def _refit(fit: Callable, runs: Runs, starts: np.ndarray, delta: float, idx: np.ndarray) -> np.ndarray:
  return fit(runs.subset(idx), starts=starts, delta=delta).params


# --------------------------------------------------------------------------------------------------
# Approach 2: IsoFLOP parabolas
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IsoFLOPCurve:
  """L = c2 (ln N)^2 + c1 ln N + c0 at one budget C, with its vertex; D* = C / f(N*)."""

  C: float
  coeffs: tuple[float, float, float]
  n_points: int
  N_min: float
  N_max: float
  flops: FlopsPerToken = field(repr=False, compare=False)

  @property
  def convex(self) -> bool:
    return self.coeffs[0] > 0

  @property
  def N_star(self) -> float:
    c2, c1, _ = self.coeffs
    return math.exp(-c1 / (2 * c2))

  @property
  def D_star(self) -> float:
    return self.C / float(self.flops(self.N_star))

  @property
  def L_star(self) -> float:
    return float(self(self.N_star))

  @property
  def in_range(self) -> bool:
    return self.convex and self.N_min <= self.N_star <= self.N_max

  def __call__(self, N):
    return np.polyval(self.coeffs, np.log(N))


def parabola(C: float, N: np.ndarray, L: np.ndarray, flops: FlopsPerToken) -> IsoFLOPCurve:
  """The least-squares parabola in ln N through one budget's runs."""
  coeffs = tuple(float(c) for c in np.polyfit(np.log(N), L, 2))
  return IsoFLOPCurve(float(C), coeffs, len(N), float(N.min()), float(N.max()), flops)


def fit_isoflop_curves(runs: Runs, report: bool = True) -> list[IsoFLOPCurve]:
  """One parabola in ln N per budget with at least three distinct N. With ``report``, skipped budgets
  and minima that are missing or outside the sampled range are warned about."""
  curves, too_small = [], []
  for C in runs.budgets():
    sel = runs.budget == C
    N, L = runs.N[sel], runs.L[sel]
    if len(np.unique(N)) < MIN_POINTS_PER_BUDGET:
      too_small.append(f"{C:.3g} ({len(np.unique(N))})")
      continue
    curve = parabola(C, N, L, runs.flops)
    curves.append(curve)
    if report and not curve.convex:
      warn(f"approach 2: the parabola at C = {C:.3g} FLOP opens downwards (no minimum); budget excluded")
    elif report and not curve.in_range:
      warn(
        f"approach 2: the minimum at C = {C:.3g} FLOP, N* = {curve.N_star:.3g}, lies outside the "
        f"sampled N range [{curve.N_min:.3g}, {curve.N_max:.3g}]; budget excluded from the power laws"
      )
  if report and too_small:
    warn(
      f"approach 2: {len(too_small)} budget(s) have fewer than {MIN_POINTS_PER_BUDGET} distinct N and were "
      f"skipped: {', '.join(too_small[:8])}{' ...' if len(too_small) > 8 else ''}"
    )
  return curves


@dataclass(frozen=True)
class IsoFLOPFit:
  """Approach 2: N*(C) = k_N C^a and D*(C) = k_D C^b through the usable parabola minima."""

  curves: list[IsoFLOPCurve]
  n_law: PowerLaw
  d_law: PowerLaw

  @property
  def used(self) -> list[IsoFLOPCurve]:
    return [c for c in self.curves if c.in_range]


def _isoflop_laws(curves: list[IsoFLOPCurve]) -> tuple[PowerLaw, PowerLaw]:
  used = [c for c in curves if c.in_range]
  if len(used) < MIN_BUDGETS:
    raise AnalysisError(
      f"approach 2 needs at least {MIN_BUDGETS} budgets with a minimum inside the sampled range; got {len(used)}"
    )
  return _vertex_laws(used)


def _vertex_laws(curves: list[IsoFLOPCurve]) -> tuple[PowerLaw, PowerLaw]:
  """N* = k C^a and D* = k C^b through the curves' vertices."""
  C = [c.C for c in curves]
  return fit_power_law(C, [c.N_star for c in curves]), fit_power_law(C, [c.D_star for c in curves])


def fit_approach2(runs: Runs, n_boot: int = 0, seed: int = 0, progress: bool = False, workers: int = 1) -> IsoFLOPFit:
  """Parabola minima per budget and their power laws, with a residual bootstrap (see
  isoflop_residual_bootstrap) in `workers` processes."""
  curves = fit_isoflop_curves(runs)
  n_law, d_law = _isoflop_laws(curves)
  if n_boot:
    samples = isoflop_residual_bootstrap(runs, [c for c in curves if c.in_range], n_boot, seed, progress, workers)
    if samples.size:
      n_law, d_law = replace(n_law, samples=samples[:, :2]), replace(d_law, samples=samples[:, 2:])
  return IsoFLOPFit(curves, n_law, d_law)


def isoflop_residual_bootstrap(runs: Runs, curves: list[IsoFLOPCurve], n_boot: int, seed: int,
                               progress: bool = False, workers: int = 1) -> np.ndarray:
  """Bootstrap samples (k_N, a, k_D, b) of the power laws through `curves`' vertices (the fit's used
  budgets). Each resample keeps every run's N and adds, to its budget's fitted parabola, a residual
  drawn for that budget's noise: the leverage-adjusted residuals (r / sqrt(1 - h)) of every budget are
  divided by their budget's noise scale, pooled, centred, drawn with replacement and multiplied by the
  scale of the budget they go to. A budget's scale is the RMS of its own adjusted residuals when it has
  at least 3 residual degrees of freedom (6 runs), else the RMS over all budgets' (its own, from 1 or 2,
  would be a guess). The resampled vertices go through the fit's rule: a budget whose parabola opens
  downwards or whose minimum leaves its sampled N is left out of that resample's power laws, and a
  resample with fewer than 3 budgets left fails. Resampling the runs themselves fails on sparse designs
  (with 4 runs per budget, a third of a budget's resamples hold fewer than 3 distinct N). A budget with
  exactly 3 runs is fitted exactly and adds no residuals."""
  groups = [np.flatnonzero(runs.budget == c.C) for c in curves]
  fitted = [c(runs.N[g]) for c, g in zip(curves, groups)]
  adjusted = []
  for f, g in zip(fitted, groups):
    leverage = np.sum(np.linalg.qr(np.vander(np.log(runs.N[g]), 3))[0] ** 2, axis=1)
    keep = leverage < 1 - 1e-9
    adjusted.append((runs.L[g] - f)[keep] / np.sqrt(1 - leverage[keep]))
  if sum(r.size for r in adjusted) == 0:
    warn("approach 2 bootstrap: every budget's parabola passes exactly through its 3 runs, so there are no "
         "residuals to resample; no intervals (sample 4 or more sizes per budget)")
    return np.empty((0, 0))
  overall = math.sqrt(np.mean(np.concatenate(adjusted) ** 2))
  scales = [math.sqrt(np.mean(r**2)) if len(g) - 3 >= 3 else overall for r, g in zip(adjusted, groups)]
  pooled = np.concatenate([r / s for r, s in zip(adjusted, scales)])
  pooled = pooled - pooled.mean()
  sizes = np.cumsum([0] + [len(g) for g in groups])
  budgets = [(c.C, runs.N[g], f, s, a, b) for c, g, f, s, a, b in zip(curves, groups, fitted, scales, sizes[:-1],
                                                                        sizes[1:])]
  samples = bootstrap(functools.partial(_resampled_vertex_laws, budgets, pooled, runs.flops),
                      lambda rng: rng.choice(len(pooled), size=sizes[-1]), n_boot, seed, "approach 2 bootstrap",
                      progress, workers)
  left_out = int(np.sum(samples[:, -1])) if samples.size else 0
  samples = samples[:, :-1]
  if left_out:
    warn(f"approach 2 bootstrap: in {left_out} of {n_boot} resamples a budget's minimum left its sampled N "
         "(or its parabola opened downwards) and that budget was left out of the resample's power laws, as in the fit")
  return samples


# --------------------------------------------------------------------------------------------------
# Approach 1 (lower envelope) and Kaplan L(N)
# --------------------------------------------------------------------------------------------------


def _resampled_vertex_laws(budgets: list[tuple], pooled: np.ndarray, flops: FlopsPerToken, idx: np.ndarray):
  """isoflop_residual_bootstrap's statistic: (k_N, a, k_D, b) of one resample, and 1 where a budget left it."""
  noise = pooled[idx]
  resampled = [parabola(C, N, fitted + scale * noise[a:b], flops) for C, N, fitted, scale, a, b in budgets]
  n_law, d_law = _isoflop_laws(resampled)
  return np.concatenate([n_law.params, d_law.params, [not all(c.in_range for c in resampled)]])


def lower_envelope(C, L) -> np.ndarray:
  """Indices of the runs that reach a lower loss than every run with less compute, by ascending C."""
  C, L = np.asarray(C), np.asarray(L)
  order = np.lexsort((L, C))
  running_min = np.minimum.accumulate(L[order])
  is_new_min = np.concatenate([[True], L[order][1:] < running_min[:-1]])
  return order[is_new_min]


@dataclass(frozen=True)
class EnvelopeFit:
  """Approach 1: L(C) = E + (C0 / C)^gamma on the lower envelope; N and D on it as power laws of C."""

  envelope: np.ndarray
  loss_law: SaturatingLaw
  n_law: PowerLaw | None
  d_law: PowerLaw | None


def fit_approach1(runs: Runs, n_boot: int = 0, seed: int = 0, progress: bool = False, workers: int = 1) -> EnvelopeFit:
  """The envelope treats the runs of one budget as equal in compute, so only a budget's best run can
  be on it. The N and D laws (and the method's predictions) need 3 distinct N and 3 distinct D on
  the envelope: on a fixed-D (or fixed-N) design they would only restate the design. The bootstrap
  resamples the runs, in `workers` processes."""
  C = runs.budget_or_C()
  env = lower_envelope(C, runs.L)
  if len(env) < MIN_POINTS_SATURATING:
    raise AnalysisError(f"approach 1 needs at least {MIN_POINTS_SATURATING} envelope points; got {len(env)}")
  sizes = {b: int(np.sum(runs.budget == b)) for b in runs.budgets()}
  underfilled = [f"{b:.3g} ({sizes[b]})" for b in runs.budget[env] if sizes.get(b, np.inf) < MIN_POINTS_PER_BUDGET]
  if underfilled and np.median(list(sizes.values())) >= MIN_POINTS_PER_BUDGET:  # an IsoFLOP design
    warn(f"approach 1: envelope budget(s) with fewer than {MIN_POINTS_PER_BUDGET} runs, whose best run may lie "
         f"far above the budget's optimum: {', '.join(underfilled)}")
  loss_law = fit_saturating_law(C[env], runs.L[env])
  n_law = d_law = None
  n_sizes, n_tokens = len(np.unique(runs.N[env])), len(np.unique(runs.D[env]))
  if min(n_sizes, n_tokens) >= MIN_POINTS_POWER_LAW:
    n_law, d_law = fit_power_law(C[env], runs.N[env]), fit_power_law(C[env], runs.D[env])
  else:
    warn(f"approach 1: the envelope holds {n_sizes} distinct N and {n_tokens} distinct D; N_opt(C) and D_opt(C) "
         f"need {MIN_POINTS_POWER_LAW} of each (a fixed-N or fixed-D design has 1), so approach 1 gives no N_opt(C), "
         "D_opt(C) or compute-optimal predictions")
  if n_boot:
    samples = bootstrap(functools.partial(_refit_envelope, C, runs, loss_law, n_law is not None),
                        within(np.zeros(len(runs))), n_boot, seed, "approach 1 bootstrap", progress, workers)
    if samples.size:
      loss_law = replace(loss_law, samples=samples[:, :3])
      if n_law is not None:
        n_law, d_law = replace(n_law, samples=samples[:, 3:5]), replace(d_law, samples=samples[:, 5:])
  return EnvelopeFit(env, loss_law, n_law, d_law)


def _refit_envelope(C: np.ndarray, runs: Runs, start: SaturatingLaw, allocation: bool, idx: np.ndarray):
  """fit_approach1's bootstrap statistic: the L(C) law's parameters, then (with ``allocation``) the N and D laws'."""
  sub_C, sub = C[idx], runs.subset(idx)
  e = lower_envelope(sub_C, sub.L)
  params = [fit_saturating_law(sub_C[e], sub.L[e], start=start).params]
  if allocation:
    params += [fit_power_law(sub_C[e], sub.N[e]).params, fit_power_law(sub_C[e], sub.D[e]).params]
  return np.concatenate(params)


@dataclass(frozen=True)
class KaplanFit:
  """L(N) = E + (N0 / N)^alpha_N among runs trained on the same number of tokens D (law with bootstrap
  samples)."""

  D: float
  indices: np.ndarray
  law: SaturatingLaw


def fit_kaplan(runs: Runs, n_boot: int = 0, seed: int = 0, progress: bool = False, d_tol: float = 0.02,
               workers: int = 1) -> KaplanFit:
  """L(N) on the group of runs with equal D (within d_tol) that has the most model sizes (ties: most D);
  the bootstrap resamples the group's runs and refits from the fit, in `workers` processes."""
  groups = group_by_value(runs.D, d_tol)
  candidates = [(len(np.unique(runs.N[groups == D])), D) for D in np.unique(groups[np.isfinite(groups)])]
  n_sizes, D = max(candidates, default=(0, math.nan))
  if n_sizes < MIN_POINTS_SATURATING:
    raise AnalysisError(f"no group of runs with equal D has {MIN_POINTS_SATURATING} or more model sizes")
  idx = np.flatnonzero(groups == D)
  N, L = runs.N[idx], runs.L[idx]
  law = fit_saturating_law(N, L)
  if n_boot:
    samples = bootstrap(functools.partial(_refit_saturating, N, L, law), within(np.zeros(len(idx))), n_boot, seed,
                        "Kaplan L(N) bootstrap", progress, workers)
    if samples.size:
      law = replace(law, samples=samples)
  return KaplanFit(float(D), idx, law)


def _refit_saturating(x: np.ndarray, y: np.ndarray, start: SaturatingLaw, idx: np.ndarray) -> np.ndarray:
  return fit_saturating_law(x[idx], y[idx], start=start).params


# --------------------------------------------------------------------------------------------------
# Prediction and hold-out
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
  """Recommended N, D and the loss at compute C by one method (None: the method does not give it), and the
  tokens per parameter D / N of that allocation (its interval from the same bootstrap fits' ratios)."""

  method: str
  C: float
  N: Estimate | None
  D: Estimate | None
  L: Estimate | None
  ratio: Estimate | None


def predict(
  C: float,
  flops: FlopsPerToken,
  approach3: ChinchillaLaw | None = None,
  approach2: IsoFLOPFit | None = None,
  approach1: EnvelopeFit | None = None,
  kaplan_joint: KaplanLaw | None = None,
) -> list[Prediction]:
  """The compute-optimal N, D and loss at C (a token costing ``flops(N)``) by each method given, with
  bootstrap intervals. Approach 1 predicts only where it has N and D laws (not on a fixed-N or fixed-D
  design)."""

  def at_C(law):
    return None if law is None else estimate(law, lambda sample: sample(C))

  def allocation(n_law: PowerLaw, d_law: PowerLaw) -> tuple[Estimate, Estimate, Estimate]:
    """N*, D* and D*/N* at C from power laws fitted to the same bootstrap resamples: D/N = (k_d/k_n) C^(p_d-p_n)."""
    ratio = PowerLaw(d_law.k / n_law.k, d_law.p - n_law.p,
                     None if n_law.samples is None else d_law.samples[:, :2] - n_law.samples[:, :2])
    return at_C(n_law), at_C(d_law), at_C(ratio)

  out = []
  for joint in (approach3, kaplan_joint):
    if joint is not None:
      n = estimate(joint, lambda law: law.n_opt(C, flops))
      d = estimate(joint, lambda law: law.d_opt(C, flops))
      loss = estimate(joint, lambda law: law.loss_opt(C, flops))
      ratio = estimate(joint, lambda law: law.d_opt(C, flops) / law.n_opt(C, flops))
      out.append(Prediction(joint.method, C, n, d, loss, ratio))
  if approach2 is not None:
    n, d, ratio = allocation(approach2.n_law, approach2.d_law)
    out.append(Prediction("approach 2", C, n, d, None, ratio))
  if approach1 is not None and approach1.n_law is not None:
    n, d, ratio = allocation(approach1.n_law, approach1.d_law)
    out.append(Prediction("approach 1", C, n, d, at_C(approach1.loss_law), ratio))
  return out


@dataclass(frozen=True)
class LossAt:
  """The loss of N parameters trained on D tokens by one L(N, D) law, beside that law's compute-optimal
  allocation at the same compute C = f(N) D: what the chosen split of C gives up."""

  method: str
  N: float
  D: float
  C: float
  L: Estimate
  L_opt: Estimate  # the compute-optimal loss at C
  excess: Estimate  # L / L_opt - 1
  N_opt: Estimate  # the compute-optimal N at C


def loss_at(N: float, D: float, flops: FlopsPerToken, *joint_laws: JointLaw | None) -> list[LossAt]:
  """``LossAt`` by each law given (None: not fitted), with bootstrap intervals; a token costs ``flops(N)``."""
  C = float(flops(N)) * D
  return [LossAt(law.method, N, D, C,
                 estimate(law, lambda l: l.loss(N, D)),
                 estimate(law, lambda l: l.loss_opt(C, flops)),
                 estimate(law, lambda l: l.loss(N, D) / l.loss_opt(C, flops) - 1),
                 estimate(law, lambda l: l.n_opt(C, flops)))
          for law in joint_laws if law is not None]


@dataclass(frozen=True)
class Frontier:
  """One method's compute-optimal loss L*(C) of one sweep: a joint law's (``flops``: the sweep's FLOPs per
  token) or approach 1's L(C) (``flops`` None)."""

  method: str
  law: JointLaw | SaturatingLaw
  flops: FlopsPerToken | None

  def loss(self, law, C):
    """L*(C) by ``law``, this frontier's law or one of its bootstrap samples."""
    return law(C) if self.flops is None else law.loss_opt(C, self.flops)

  def laws(self) -> list:
    """The law's bootstrap samples, as laws."""
    samples = self.law.samples if self.law.samples is not None else ()
    return [type(self.law).from_params(s) for s in samples]


@dataclass(frozen=True)
class Multiplier:
  """At compute C, one method's compute-optimal loss of a baseline sweep and of another, and the compute the
  baseline needs to reach the other's loss, over C: above 1, the other sweep's setup is worth that many times
  the baseline's compute; inf where the baseline never reaches that loss (it is below the baseline's E)."""

  method: str
  C: float
  L_base: Estimate
  L_other: Estimate
  multiplier: Estimate


def _multiplier(base: Frontier, base_law, other: Frontier, other_law, C: np.ndarray) -> np.ndarray:
  """C_base(L_other*(C)) / C: the baseline's frontier on a grid of FRONTIER_POINTS in ln C, FRONTIER_REACH
  beyond C each way, inverted by interpolating ln C in ln(L* - E), which is linear where L* - E is a power of
  C (approach 3 with f = k N, approach 1). Beyond the grid: 0 or inf, as the other loss is above or below it."""
  target = other.loss(other_law, C)
  ln_c = np.linspace(np.log(C.min()) - FRONTIER_REACH, np.log(C.max()) + FRONTIER_REACH, FRONTIER_POINTS)
  E = base_law.E
  excess = np.minimum.accumulate(base.loss(base_law, np.exp(ln_c))) - E  # decreasing in C, as L* is
  with np.errstate(divide="ignore", invalid="ignore"):
    at = np.interp(-np.log(target - E), -np.log(np.maximum(excess, np.finfo(float).tiny)), ln_c,
                   left=-np.inf, right=np.inf)
  at = np.where(target <= E, np.inf, at)
  return np.exp(at) / C


def compute_multipliers(budgets, base: Frontier, other: Frontier) -> list[Multiplier]:
  """``Multiplier`` at each budget, by one method (``base`` and ``other`` must be the same method's frontiers
  of two sweeps), with percentile intervals over pairs of their bootstrap samples (the i-th of each: the two
  sweeps' resamples are independent)."""
  C = np.asarray(budgets, dtype=float)
  values, lo, hi = _paired(base, other, lambda b, o: _multiplier(base, b, other, o, C))
  L_base = _estimates(base.law, lambda law: base.loss(law, C))
  L_other = _estimates(other.law, lambda law: other.loss(law, C))
  return [Multiplier(base.method, float(c), L_base[i], L_other[i],
                     Estimate(float(values[i]), float(lo[i]), float(hi[i]))) for i, c in enumerate(C)]


def _paired(base: Frontier, other: Frontier, fn: Callable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """fn(base law, other law), and its percentile interval over pairs of the two sweeps' bootstrap samples (the
  i-th of each: the two sweeps' resamples are independent); nan without samples. A sample's value is inf where
  the baseline never gets there, so the percentiles take samples' own values."""
  values = np.asarray(fn(base.law, other.law), dtype=float)
  pairs = list(zip(base.laws(), other.laws()))
  if not pairs:
    return values, np.full(values.shape, math.nan), np.full(values.shape, math.nan)
  samples = np.array([fn(b, o) for b, o in pairs], dtype=float)
  lo, hi = np.nanpercentile(samples, [50 * (1 - INTERVAL_LEVEL), 50 * (1 + INTERVAL_LEVEL)], axis=0, method="nearest")
  return values, lo, hi


@dataclass(frozen=True)
class SizeMultiplier:
  """At compute C, another sweep's compute-optimal model (N*, D*) by one L(N, D) law, and what the baseline's
  law needs to reach that model's loss: at the same N* the tokens, over D* (``data``), and at the same D* the
  parameters, over N* (``params``). Above 1, the other's setup is worth that many times the baseline's data at
  equal size (or parameters at equal data); inf where the baseline never reaches that loss there."""

  method: str
  C: float
  N: Estimate
  D: Estimate
  data: Estimate
  params: Estimate


def size_multipliers(budgets, base: Frontier, other: Frontier) -> list[SizeMultiplier]:
  """``SizeMultiplier`` at each budget by one L(N, D) law (``base`` and ``other``: its frontiers of two sweeps),
  with percentile intervals over pairs of their bootstrap samples."""
  C = np.asarray(budgets, dtype=float)

  def at(b: JointLaw, o: JointLaw) -> np.ndarray:
    N, D = o.n_opt(C, other.flops), o.d_opt(C, other.flops)
    L = o.loss(N, D)
    return np.stack([N, D, b.tokens_for(N, L) / D, b.params_for(D, L) / N])

  values, lo, hi = _paired(base, other, at)
  return [SizeMultiplier(base.method, float(c), *(Estimate(float(values[k, i]), float(lo[k, i]), float(hi[k, i]))
                                                  for k in range(4))) for i, c in enumerate(C)]


def _estimates(law, fn: Callable) -> list[Estimate]:
  """``estimate`` of an array-valued fn: an Estimate per element."""
  value = np.asarray(fn(law), dtype=float)
  band = percentile_band(law, fn)
  lo, hi = band if band is not None else (np.full(value.shape, math.nan),) * 2
  return [Estimate(float(v), float(a), float(b)) for v, a, b in zip(value, lo, hi)]


@dataclass(frozen=True)
class HoldoutRow:
  method: str
  quantity: str
  predicted: float
  observed: float

  @property
  def rel_error(self) -> float:
    return (self.predicted - self.observed) / self.observed


@dataclass(frozen=True)
class HoldoutCheck:
  """Fits without the largest budget, compared with what that budget shows."""

  budget: float
  n_train: int
  n_test: int
  observed_from: str  # "parabola" (its vertex) or "best run"
  rows: list[HoldoutRow]
  run_rel_errors: dict[str, np.ndarray]  # method (approach 3, Kaplan L(N, D)) -> its error on each held-out run


def holdout_check(
  runs: Runs,
  joint_laws: tuple[type[JointLaw], ...] = (ChinchillaLaw, KaplanLaw),
  delta: float = HUBER_DELTA,
  progress: bool = False,
  workers: int = 1,
) -> HoldoutCheck:
  """Refit every method (approaches 2 and 1, and the L(N, D) laws of ``joint_laws``) on the runs below the
  largest budget and predict that budget's optimum; the L(N, D) laws also predict each held-out run's loss.

  The observed optimum is the held-out budget's parabola vertex when it is a usable minimum, else its
  best run. Runs above the held-out budget are used by neither side.
  """
  budgets = runs.budgets()
  if len(budgets) < 2:
    raise AnalysisError("the hold-out check needs at least two budgets")
  C_top = float(budgets[-1])
  test_sel = runs.budget == C_top
  test = runs.subset(test_sel)
  train = runs.subset(runs.C < test.C.min())
  curve = fit_isoflop_curves(test, report=False)
  if curve and curve[0].in_range:
    observed_from, N_obs, L_obs = "parabola", curve[0].N_star, curve[0].L_star
  else:
    best = int(np.argmin(test.L))
    observed_from, N_obs, L_obs = "best run", float(test.N[best]), float(test.L[best])
  D_obs = C_top / float(runs.flops(N_obs))
  rows, run_errors = [], {}

  def compare(method, N_pred, D_pred, L_pred):
    for quantity, predicted, observed in (("N*", N_pred, N_obs), ("D*", D_pred, D_obs), ("L*", L_pred, L_obs)):
      if predicted is not None:
        rows.append(HoldoutRow(method, quantity, float(predicted), float(observed)))

  fitters = [
    (law.method, functools.partial(JOINT_FITS[law][0], train, delta=delta, progress=progress, workers=workers))
    for law in joint_laws
  ]
  fitters += [("approach 2", lambda: fit_approach2(train)), ("approach 1", lambda: fit_approach1(train))]
  fitted = {}
  for method, fitter in fitters:
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnalysisWarning)
        fitted[method] = fitter()
    except AnalysisError as err:
      warn(f"hold-out: {method} could not be fitted without the largest budget: {err}")
  for law in joint_laws:
    if law.method in fitted:
      fit = fitted[law.method]
      compare(law.method, *(f(C_top, runs.flops) for f in (fit.n_opt, fit.d_opt, fit.loss_opt)))
      run_errors[law.method] = fit.loss(test.N, test.D) / test.L - 1.0
  if "approach 2" in fitted:
    fit2 = fitted["approach 2"]
    compare("approach 2", fit2.n_law(C_top), fit2.d_law(C_top), None)
  if "approach 1" in fitted and fitted["approach 1"].n_law is not None:
    fit1 = fitted["approach 1"]
    compare("approach 1", fit1.n_law(C_top), fit1.d_law(C_top), fit1.loss_law(C_top))
  return HoldoutCheck(C_top, len(train), len(test), observed_from, rows, run_errors)
