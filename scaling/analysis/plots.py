"""Plots of a scaling-law analysis, each saved as PNG and SVG.

Uses matplotlib's object-oriented API (Figure, Agg canvas), so no display or pyplot state is needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib import cm, colors
from matplotlib.figure import Figure
from matplotlib.ticker import (
  FuncFormatter,
  LogLocator,
  MaxNLocator,
  NullFormatter,
  NullLocator,
)

from scaling.analysis.fits import compute_multipliers, percentile_band

COMPUTE_LABEL = "training compute C [FLOP]"
PARAMS_LABEL = "parameters N"
TOKENS_LABEL = "tokens D"
LOSS_LABEL = "loss [nats/token]"  # a loss axis's label; the analysis's plots name the CSV's loss column instead
PLANNED_STYLE = {"marker": "X", "s": 90, "color": "white", "edgecolors": "black", "zorder": 5,
                 "label": "planned N and D (--at)"}
MAX_LEGEND_BUDGETS = 10  # budgets drawn in tab10's distinct colours with a legend; more: a colour scale


def _figure(ncols: int = 1) -> tuple[Figure, list]:
  fig = Figure(figsize=(7.5 * ncols, 5.5), layout="constrained")
  axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
  for ax in axes:
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)
  return fig, axes


def _log_loss_axis(ax, label: str = LOSS_LABEL) -> None:
  """Log-scaled loss axis; losses span less than a decade, so ticks at round numbers, labelled plainly."""
  ax.set_yscale("log")
  ax.yaxis.set_major_locator(MaxNLocator(nbins=8))
  ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
  ax.yaxis.set_minor_locator(NullLocator())
  ax.set_ylabel(label)


def _loss_label(analysis) -> str:
  """The loss axis's label in an analysis's plots: the CSV column it fitted."""
  return f"{analysis.columns['L']} [nats/token]"


def _log_grid(values, pad: float = 2.0, num: int = 200) -> np.ndarray:
  values = np.asarray(values, dtype=float)
  return np.geomspace(values.min() / pad, values.max() * pad, num)


def _power_of_ten_label(x: float, _=None) -> str:
  """2e+10 -> 2×10¹⁰ in mathtext (1e+10 -> 10¹⁰)."""
  mantissa, exponent = f"{x:.0e}".split("e")
  power = f"10^{{{int(exponent)}}}"
  return f"${power}$" if mantissa == "1" else f"${mantissa}\\times{power}$"


def _readable_log_ticks(fig: Figure) -> None:
  """On log axes spanning less than 2 decades, label 1, 2, 5 x 10^k (every integer below a factor 4)
  instead of matplotlib's minor labels, which overlap there; minor ticks are never labelled."""
  for ax in fig.axes:
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
      if not isinstance(axis.get_major_locator(), LogLocator):
        continue
      axis.set_minor_formatter(NullFormatter())
      ratio = max(limits) / min(limits)
      if ratio < 100:
        axis.set_major_locator(LogLocator(subs=np.arange(1.0, 10.0) if ratio < 4 else (1.0, 2.0, 5.0)))
        if not isinstance(axis.get_major_formatter(), FuncFormatter):  # a plot's own labels stay
          axis.set_major_formatter(FuncFormatter(_power_of_ten_label))


def _save(fig: Figure, out_dir: Path, name: str) -> str:
  _readable_log_ticks(fig)
  for suffix in (".png", ".svg"):
    fig.savefig(out_dir / f"{name}{suffix}", dpi=150)
  return f"{name}.png"


def plot_loss_vs_compute(runs, approach3=None, approach1=None, kaplan_joint=None, loss_label=LOSS_LABEL) -> Figure:
  """Loss against compute, coloured by model size, with the fitted compute-optimal frontiers."""
  fig, (ax,) = _figure()
  norm = colors.LogNorm(runs.N.min(), runs.N.max() * 1.0001)
  cmap = cm.viridis
  for N in np.unique(runs.N):
    sel = np.flatnonzero(runs.N == N)
    if len(sel) > 1:
      order = sel[np.argsort(runs.C[sel])]
      ax.plot(runs.C[order], runs.L[order], color=cmap(norm(N)), lw=1, alpha=0.7)
  points = ax.scatter(runs.C, runs.L, c=runs.N, cmap=cmap, norm=norm, s=18, zorder=3, label="runs")
  fig.colorbar(points, ax=ax, label=PARAMS_LABEL)
  C = _log_grid(runs.C, pad=1.5)
  if approach1 is not None:
    env = approach1.envelope
    ax.scatter(
      runs.C[env],
      runs.L[env],
      s=60,
      facecolors="none",
      edgecolors="black",
      zorder=4,
      label="lower envelope (approach 1)",
    )
    law = approach1.loss_law
    ax.plot(
      C, law(C), "k--", lw=1.5, label=f"approach 1: L(C) = {law.E:.3g} + ({law.x0:.3g} / C)$^{{{law.gamma:.3g}}}$"
    )
  if approach3 is not None:
    label = "approach 3: compute-optimal L(N$_{opt}$(C), D$_{opt}$(C))"
    ax.plot(C, approach3.loss_opt(C, runs.flops), color="tab:red", lw=2, label=label)
  if kaplan_joint is not None:
    label = "Kaplan L(N, D): compute-optimal L(N$_{opt}$(C), D$_{opt}$(C))"
    ax.plot(C, kaplan_joint.loss_opt(C, runs.flops), color="tab:purple", lw=1.5, ls="-.", label=label)
  ax.set_xscale("log")
  _log_loss_axis(ax, loss_label)
  ax.set_xlabel(COMPUTE_LABEL)
  ax.set_title("Loss against training compute, by model size")
  ax.legend(loc="upper right", fontsize=8)
  return fig


def plot_isoflops(runs, approach2, loss_label=LOSS_LABEL) -> Figure:
  """Loss against N per budget with the fitted parabolas and their minima."""
  fig, (ax,) = _figure()
  curves = approach2.curves
  norm = colors.LogNorm(min(c.C for c in curves), max(c.C for c in curves) * 1.0001)
  cmap = cm.plasma_r
  with_labels = len(curves) <= MAX_LEGEND_BUDGETS
  outside = ~np.isin(runs.budget, [c.C for c in curves])
  if outside.any():
    ax.scatter(runs.N[outside], runs.L[outside], s=8, color="0.7", label="runs not in a fitted budget")
  for i, curve in enumerate(curves):
    color = cm.tab10(i) if with_labels else cmap(0.15 + 0.85 * norm(curve.C))
    sel = runs.budget == curve.C
    ax.scatter(runs.N[sel], runs.L[sel], s=18, color=color, label=f"C = {curve.C:.2g} FLOP" if with_labels else None)
    if curve.convex:
      N = np.geomspace(min(curve.N_min, curve.N_star) / 1.3, max(curve.N_max, curve.N_star) * 1.3, 100)
      N = N[(N >= curve.N_min / 3) & (N <= curve.N_max * 3)]
      ax.plot(N, curve(N), color=color, lw=1.2)
      ax.plot(
        curve.N_star,
        curve.L_star,
        marker="*" if curve.in_range else "X",
        ms=12,
        color=color,
        mec="black",
        mfc=color if curve.in_range else "white",
        zorder=5,
        ls="none",
      )
  if not with_labels:
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"budget {COMPUTE_LABEL}")
  ax.plot([], [], marker="*", ms=12, mfc="0.5", mec="black", ls="none", label="parabola minimum (used)")
  if any(c.convex and not c.in_range for c in curves):
    ax.plot(
      [], [], marker="X", ms=10, mfc="white", mec="black", ls="none", label="minimum outside the sampled N (excluded)"
    )
  ax.set_xscale("log")
  _log_loss_axis(ax, loss_label)
  ax.set_xlabel(PARAMS_LABEL)
  ax.set_title("IsoFLOP curves: parabolas in log N per compute budget (approach 2)")
  ax.legend(fontsize=8, ncol=2, loc="best")
  return fig


def _band(ax, law, fn, x, color) -> None:
  band = percentile_band(law, lambda sample: fn(sample, x))
  if band is not None:
    ax.fill_between(x, band[0], band[1], color=color, alpha=0.2, lw=0)


def plot_optimal_allocation(runs, approach2=None, approach3=None, approach1=None, budgets_to_predict=(),
                            kaplan_joint=None, planned=()) -> Figure:
  """N* and D* against C from the data's compute to the prediction budgets: approach-2 minima with
  their power laws, the frontiers of approach 3, Kaplan's L(N, D) and approach 1, with 95% bootstrap bands;
  ``planned`` (N, D) allocations (--at) marked at their compute."""
  fig, axes = _figure(ncols=2)
  planned = np.array(planned, dtype=float).reshape(-1, 2)
  planned_C = runs.flops(planned[:, 0]) * planned[:, 1]
  C = _log_grid(np.concatenate([runs.C, budgets_to_predict, planned_C]), pad=2.0)
  for ax, quantity, label in ((axes[0], "N", PARAMS_LABEL), (axes[1], "D", TOKENS_LABEL)):
    if approach2 is not None:
      used = [c for c in approach2.curves if c.in_range]
      excluded = [c for c in approach2.curves if c.convex and not c.in_range]
      value = (lambda c: c.N_star) if quantity == "N" else (lambda c: c.D_star)
      ax.scatter(
        [c.C for c in used], [value(c) for c in used], color="tab:blue", zorder=4, label="approach 2: IsoFLOP minima"
      )
      if excluded:
        ax.scatter(
          [c.C for c in excluded],
          [value(c) for c in excluded],
          facecolors="none",
          edgecolors="tab:blue",
          zorder=4,
          label="approach 2: minima outside sampled N",
        )
      law = approach2.n_law if quantity == "N" else approach2.d_law
      ax.plot(C, law(C), color="tab:blue", lw=1.5, label=f"approach 2: {quantity}* = {law.k:.3g} C$^{{{law.p:.3f}}}$")
      _band(ax, law, lambda sample, x: sample(x), C, "tab:blue")
    fn = (lambda law, x: law.n_opt(x, runs.flops)) if quantity == "N" else (lambda law, x: law.d_opt(x, runs.flops))
    for law, color, style in ((approach3, "tab:red", "-"), (kaplan_joint, "tab:purple", "-.")):
      if law is not None:
        exponent = law.a if quantity == "N" else law.b
        ax.plot(
          C,
          fn(law, C),
          color=color,
          lw=1.5,
          ls=style,
          label=f"{law.method}: {quantity}$_{{opt}}$ $\\propto$ C$^{{{exponent:.3f}}}$",
        )
        _band(ax, law, fn, C, color)
    if approach1 is not None and approach1.n_law is not None:
      law = approach1.n_law if quantity == "N" else approach1.d_law
      ax.plot(
        C,
        law(C),
        color="tab:green",
        lw=1.2,
        ls="--",
        label=f"approach 1 envelope: {quantity} $\\propto$ C$^{{{law.p:.3f}}}$",
      )
    for i, budget in enumerate(budgets_to_predict):
      ax.axvline(budget, color="0.5", ls=":", lw=1, label="prediction budgets" if i == 0 else None)
    if len(planned):
      ax.scatter(planned_C, planned[:, 0 if quantity == "N" else 1], **PLANNED_STYLE)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(COMPUTE_LABEL)
    ax.set_ylabel(f"compute-optimal {label}")
    ax.set_title(f"Compute-optimal {label} against compute (bands: 95% bootstrap)")
    ax.legend(fontsize=8, loc="upper left")
  return fig


def plot_loss_contours(runs, approach3, budgets=(), planned=(), loss_label=LOSS_LABEL) -> Figure:
  """Contours of the approach-3 L(N, D) with the runs, IsoFLOP lines, the efficient frontier and the
  ``planned`` (N, D) allocations (--at)."""
  fig, (ax,) = _figure()
  planned = np.array(planned, dtype=float).reshape(-1, 2)
  N = _log_grid(np.concatenate([runs.N, planned[:, 0]]), pad=3.0, num=150)
  D = _log_grid(np.concatenate([runs.D, planned[:, 1]]), pad=3.0, num=150)
  grid_N, grid_D = np.meshgrid(N, D)
  loss = approach3.loss(grid_N, grid_D)
  levels = np.geomspace(loss.min(), np.percentile(loss, 95), 15)
  filled = ax.contourf(grid_N, grid_D, loss, levels=levels, cmap="viridis_r", norm=colors.LogNorm(), extend="max")
  lines = ax.contour(grid_N, grid_D, loss, levels=levels[::2], colors="white", linewidths=0.6)
  ax.clabel(lines, fmt="%.2f", fontsize=7)
  fig.colorbar(filled, ax=ax, label=f"predicted {loss_label}", format="%.2f")
  f = runs.flops
  for i, C in enumerate(budgets):
    ax.plot(N, C / f(N), color="0.85", ls="--", lw=0.8, label="IsoFLOP lines D = C / f(N)" if i == 0 else None)
  C = np.geomspace(f(N.min()) * D.min(), f(N.max()) * D.max(), 200)
  ax.plot(
    approach3.n_opt(C, f),
    approach3.d_opt(C, f),
    color="tab:red",
    lw=2,
    label=f"efficient frontier: N$_{{opt}}$ $\\propto$ C$^{{{approach3.a:.3f}}}$, "
    f"D$_{{opt}}$ $\\propto$ C$^{{{approach3.b:.3f}}}$",
  )
  ax.scatter(runs.N, runs.D, s=10, color="black", label="runs", zorder=3)
  if len(planned):
    ax.scatter(planned[:, 0], planned[:, 1], **PLANNED_STYLE)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlim(N.min(), N.max())
  ax.set_ylim(D.min(), D.max())
  ax.set_xlabel(PARAMS_LABEL)
  ax.set_ylabel(TOKENS_LABEL)
  ax.set_title("Approach 3: L(N, D) = E + A/N$^\\alpha$ + B/D$^\\beta$")
  fig.legend(fontsize=8, loc="outside lower center", ncol=3)  # below the axes: inside, it covers runs
  return fig


def plot_kaplan(runs, kaplan, loss_label=LOSS_LABEL) -> Figure:
  """Loss against N of the runs at the Kaplan fit's D, with L(N) and its 95% bootstrap band."""
  fig, (ax,) = _figure()
  N, L = runs.N[kaplan.indices], runs.L[kaplan.indices]
  ax.scatter(N, L, s=18, color="tab:blue", zorder=3, label=f"runs at D = {kaplan.D:.3g} tokens")
  grid = _log_grid(N, pad=1.5)
  law = kaplan.law
  ax.plot(grid, law(grid), color="tab:red", lw=1.5,
          label=f"L(N) = {law.E:.3g} + ({law.x0:.3g} / N)$^{{{law.gamma:.3g}}}$")
  _band(ax, law, lambda sample, x: sample(x), grid, "tab:red")
  ax.set_xscale("log")
  _log_loss_axis(ax, loss_label)
  ax.set_xlabel(PARAMS_LABEL)
  ax.set_title("Kaplan-style L(N) at fixed data (band: 95% bootstrap)")
  ax.legend(fontsize=8, loc="upper right")
  return fig


def _smooth(x: np.ndarray, y: np.ndarray, fraction: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
  """A centred moving average of y over `fraction` of its records (at least 1), x trimmed to match."""
  window = max(1, int(len(y) * fraction) // 2 * 2 + 1)
  half = window // 2
  return x[half:len(x) - half], np.convolve(y, np.ones(window) / window, mode="valid")


def plot_learning_curves(curves, budgets=()) -> Figure:
  """Each run's train loss (smoothed) against tokens and against compute, coloured by model size; a dot
  marks its final eval loss; dotted lines mark the IsoFLOP budgets, where the runs of a budget end. Runs
  the fits left out (not ``fitted``: --repeats best) are drawn faint, without a dot."""
  fig, axes = _figure(ncols=2)
  sizes = np.array([c.N for c in curves])
  norm = colors.LogNorm(sizes.min(), sizes.max() * 1.0001)
  for ax, x, label in ((axes[0], "tokens", TOKENS_LABEL), (axes[1], "compute", COMPUTE_LABEL)):
    for c in curves:
      color = cm.viridis(norm(c.N))
      ax.plot(*_smooth(getattr(c, x), c.loss), color=color, lw=1 if c.fitted else 0.6, alpha=0.8 if c.fitted else 0.2)
      if c.fitted:
        ax.scatter(getattr(c, x)[-1], c.eval_loss, color=color, s=18, zorder=3, edgecolors="black", linewidths=0.5)
    ax.set_xscale("log")
    _log_loss_axis(ax)
    ax.set_xlabel(label)
  for C in budgets:
    axes[1].axvline(C, color="gray", ls=":", lw=1)
  axes[0].set_title("Train loss against tokens (moving average; dots: final eval loss)"
                    + ("; faint: not fitted" if not all(c.fitted for c in curves) else ""))
  axes[1].set_title("Train loss against compute (dotted: IsoFLOP budgets)")
  fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cm.viridis), ax=axes, label=PARAMS_LABEL)
  return fig


def _file_name(text: str) -> str:
  """``text`` with every character but letters, digits, '.', '-' and '_' as '_': a column's name in a file's."""
  return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def swept_settings(shared) -> list[str]:
  """The settings that vary among runs sharing N and D, with numbers for values wherever they vary (a
  learning rate, not a dataset's name), seeds left out (their numbers have no order to draw a curve along)."""
  names = dict.fromkeys(name for group in shared for name in group.varied() if name.split(".")[-1] != "seed")
  return [name for name in names
          if all(group.numeric(name) is not None for group in shared if name in group.varied())]


def plot_setting_sweep(shared, name: str, loss_label=LOSS_LABEL) -> Figure:
  """Loss against setting ``name`` for each group of runs that share N and D and vary it, coloured by N (by D
  where they share one N): on the left the loss, on the right its excess over the group's lowest (the curves'
  shapes side by side). A line joins each value's mean loss (over what else varies: seeds), a dot marks each
  run, a star the lowest loss; the axis of ``name`` is logarithmic where every value is positive."""
  fig, axes = _figure(ncols=2)
  swept = [group for group in shared if name in group.varied()]
  by, label = ("N", PARAMS_LABEL) if len({group.N for group in swept}) > 1 else ("D", TOKENS_LABEL)
  shade = np.array([getattr(group, by) for group in swept])
  norm = colors.LogNorm(shade.min(), shade.max() * 1.0001)
  log_x = all(np.all(group.numeric(name) > 0) for group in swept)
  for ax, relative in zip(axes, (False, True)):
    for group, value in zip(swept, shade, strict=True):
      color = cm.viridis(norm(value))
      x = group.numeric(name)
      y = 100 * (group.L / group.L[group.best] - 1) if relative else group.L
      values = np.unique(x)
      ax.plot(values, [y[x == v].mean() for v in values], color=color, lw=1.2, marker="o", ms=3)
      ax.scatter(x, y, color=color, s=10, alpha=0.5)
      ax.scatter(x[group.best], y[group.best], color=color, marker="*", s=120, edgecolors="black", linewidths=0.5,
                 zorder=3)
    if log_x:
      ax.set_xscale("log")
    ax.set_xlabel(name)
  _log_loss_axis(axes[0], loss_label)
  axes[1].set_ylabel("loss above the group's lowest [%]")
  axes[0].set_title(f"Loss against {name}, runs of one N and D joined (star: lowest)")
  axes[1].set_title("The same, relative to each group's lowest loss")
  fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cm.viridis), ax=axes, label=label)
  return fig


def make_plots(analysis, out_dir: Path) -> dict[str, str]:
  """Every plot the analysis supports, saved in out_dir; returns title -> PNG file name."""
  runs, loss_label = analysis.runs, _loss_label(analysis)
  prediction_budgets = sorted({p.C for p in analysis.predictions})
  planned = sorted({(x.N, x.D) for x in analysis.losses_at})
  budgets = [b for b in runs.budgets() if np.sum(runs.budget == b) >= 3]  # the IsoFLOP groups, not stray runs
  figures = {
    "Loss against compute": (
      "loss_vs_compute",
      lambda: plot_loss_vs_compute(runs, analysis.approach3, analysis.approach1, analysis.kaplan_joint, loss_label),
    ),
  }
  if analysis.approach2 is not None:
    figures["IsoFLOP curves"] = ("isoflops", lambda: plot_isoflops(runs, analysis.approach2, loss_label))
  if any(fit is not None for fit in (analysis.approach2, analysis.approach3, analysis.kaplan_joint)):
    figures["Compute-optimal N and D"] = (
      "optimal_allocation",
      lambda: plot_optimal_allocation(
        runs, analysis.approach2, analysis.approach3, analysis.approach1, prediction_budgets, analysis.kaplan_joint,
        planned
      ),
    )
  if analysis.approach3 is not None:
    figures["L(N, D) contours"] = ("loss_contours",
                                   lambda: plot_loss_contours(runs, analysis.approach3, budgets, planned, loss_label))
  if analysis.kaplan is not None:
    figures["Kaplan L(N)"] = ("kaplan", lambda: plot_kaplan(runs, analysis.kaplan, loss_label))
  for name in swept_settings(runs.shared):
    figures[f"Loss against {name}"] = (f"sweep_{_file_name(name)}",
                                       lambda name=name: plot_setting_sweep(runs.shared, name, loss_label))
  if analysis.curves:
    figures["Learning curves"] = ("learning_curves", lambda: plot_learning_curves(analysis.curves, budgets))
  return {title: _save(make(), out_dir, name) for title, (name, make) in figures.items()}


METHOD_STYLES = {"approach 3": {"ls": "-", "lw": 2}, "Kaplan L(N, D)": {"ls": "-.", "lw": 1.5},
                 "approach 1": {"ls": "--", "lw": 1.5}}  # the comparison's lines: one per method
COMPARISON_POINTS = 40  # compute values at which the comparison plot draws the multipliers


def plot_comparison(comparison, frontiers: list[dict]) -> Figure:
  """Left: each sweep's runs and compute-optimal loss L*(C) by each method; right: each sweep's compute
  multiplier over the baseline against C, with the 95% band of approach 3 (or the first method there is)."""
  fig, (ax, ax_m) = _figure(ncols=2)
  colours = [cm.tab10(i % 10) for i in range(len(comparison.labels))]
  C_all = np.concatenate([a.runs.C for a in comparison.analyses] + [np.asarray(comparison.budgets)])
  C = _log_grid(C_all, pad=1.2, num=COMPARISON_POINTS)
  for label, a, colour, by_method in zip(comparison.labels, comparison.analyses, colours, frontiers):
    ax.scatter(a.runs.C, a.runs.L, s=14, color=colour, alpha=0.6, zorder=3)
    for method, frontier in by_method.items():
      ax.plot(C, frontier.loss(frontier.law, C), color=colour, label=f"{label}: {method}", **METHOD_STYLES[method])
  ax.set_xscale("log")
  _log_loss_axis(ax, _loss_label(comparison.analyses[0]))
  ax.set_xlabel(COMPUTE_LABEL)
  ax.set_title("Compute-optimal loss L*(C) of each sweep (dots: its runs)")
  ax.legend(fontsize=8, loc="upper right")
  base = frontiers[0]
  measured = C <= max(comparison.analyses[0].runs.budget_or_C()) * 1.2
  shown = [1.0]  # the multipliers within the baseline's compute, which set the axis: extrapolations may run off
  for label, colour, by_method in zip(comparison.labels[1:], colours[1:], frontiers[1:]):
    banded = False
    for method, frontier in by_method.items():
      if method not in base:
        continue
      multipliers = compute_multipliers(C, base[method], frontier)
      values = np.array([m.multiplier.value for m in multipliers])
      ax_m.plot(C, values, color=colour, label=f"{label}: {method}", **METHOD_STYLES[method])
      shown += list(values[measured])
      lo, hi = (np.array([getattr(m.multiplier, end) for m in multipliers]) for end in ("lo", "hi"))
      if not banded and np.isfinite(lo).any():
        ax_m.fill_between(C, lo, np.minimum(hi, 1e300), color=colour, alpha=0.2, lw=0)  # inf: up to the top
        banded = True
        shown += list(lo[measured]) + list(hi[measured])
  shown = np.array(shown)[np.isfinite(shown) & (np.array(shown) > 0)]
  ax_m.set_ylim(shown.min() / 2, shown.max() * 2)
  ax_m.axhline(1.0, color="black", lw=1)
  for budget in comparison.budgets:
    ax_m.axvline(budget, color="grey", lw=0.5, ls=":")
  ax_m.set_xscale("log")
  ax_m.set_yscale("log")
  ax_m.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}x"))
  ax_m.set_xlabel(COMPUTE_LABEL)
  ax_m.set_ylabel(f"compute {comparison.labels[0]} needs for the same loss / C")
  ax_m.set_title(f"Compute multiplier over {comparison.labels[0]} (band: 95%; dotted: the report's budgets)")
  ax_m.legend(fontsize=8, loc="best")
  return fig


def make_comparison_plots(comparison, out_dir: Path, frontiers: list[dict]) -> dict[str, str]:
  return {"Compute-optimal loss and compute multiplier": _save(plot_comparison(comparison, frontiers), out_dir,
                                                                "comparison")}
