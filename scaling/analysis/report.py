"""report.md (and a short console summary) of a scaling-law analysis."""

from __future__ import annotations

import math
from operator import attrgetter
from pathlib import Path
from typing import Callable

import numpy as np

from scaling.analysis.fits import INTERVAL_LEVEL, Estimate, KaplanLaw, estimate, kaplan_start_grid


def _num(x: float) -> str:
  return f"{x:.5g}" if math.isfinite(x) else "-"


def _est(e: Estimate | None) -> str:
  if e is None:
    return "-"
  return f"{_num(e.value)} [{_num(e.lo)}, {_num(e.hi)}]" if e.has_interval else _num(e.value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _law_table(law, quantities: list[tuple[str, Callable]]) -> list[str]:
  rows = [[name, _est(estimate(law, fn))] for name, fn in quantities]
  return _table(["quantity", f"value [{INTERVAL_LEVEL:.0%} interval]"], rows)


def _data_section(a) -> list[str]:
  runs = a.runs
  n_budgets = len(runs.budgets())
  lines = [
    f"Source: `{a.source}`; {len(runs)} runs used of {a.n_rows} rows.",
    "",
    *_table(
      ["", "min", "max"],
      [
        ["parameters N", _num(runs.N.min()), _num(runs.N.max())],
        ["tokens D", _num(runs.D.min()), _num(runs.D.max())],
        ["compute C [FLOP]", _num(runs.C.min()), _num(runs.C.max())],
        ["loss", _num(runs.L.min()), _num(runs.L.max())],
      ],
    ),
    *_compute_lines(a),
    f"IsoFLOP budgets: {n_budgets}. Settings: "
    + ", ".join(f"{key} {value}" for key, value in a.settings.items())
    + f". Intervals are {INTERVAL_LEVEL:.0%} bootstrap percentile intervals.",
    "",
  ]
  return lines


def _compute_lines(a) -> list[str]:
  """Which columns the loss and the FLOP count C are, and the FLOPs per token f that every conversion between C,
  N and D uses."""
  flops, columns = a.runs.flops, a.columns
  derived = [q for q in ("N", "D", "C") if q not in columns]
  source = f"The loss L is the CSV's column {columns['L']!r}. " + (
    f"Compute C is the CSV's column {columns['C']!r}" if "C" in columns else "Compute C is not in the CSV"
  ) + (f"; {derived[0]} is derived from C = 6 N D." if derived else ".")
  if flops.k is not None:
    cost = (
      f"A token costs f = C / D = {_num(flops.k)} N FLOPs for every run (C = {_num(flops.k)} N D), so the "
      "compute-optimal N and D have their closed forms."
    )
  else:
    per_6n = flops.per_param / 6
    cost = (
      f"A token costs f = C / D = {_num(per_6n[0])} × 6N FLOPs at N = {_num(math.exp(flops.log_N[0]))} to "
      f"{_num(per_6n[-1])} × 6N at N = {_num(math.exp(flops.log_N[-1]))}: every conversion between C, N and D "
      "(D* = C / f(N*), approach 3's compute-optimal N and D, the hold-out's observed D*, the IsoFLOP lines) "
      "uses f(N), with f / N interpolated monotonically and smoothly in ln N between the runs' N (PCHIP) and "
      "held at its end values beyond them."
    )
  return [source, "", cost, ""]


def _value(text: str) -> str:
  """A setting's value as the CSV has it, a number shortened."""
  try:
    return f"{float(text):.4g}"
  except ValueError:
    return text


def _shared_section(a) -> list[str]:
  shared = a.runs.shared
  what = {"all": "each run was fitted as a point of its own", "best": "the lowest loss of each group was fitted",
          "mean": "the mean loss of each group was fitted"}[a.repeats]
  tried = ["; ".join(f"{name}: {', '.join(_value(v) for v in sorted(set(group.settings[name]), key=_sort_key))}"
                     for name in group.varied()) or "-" for group in shared]
  same = len(set(tried)) == 1
  rows = []
  for group, values in zip(shared, tried, strict=True):
    best = group.best
    optimum = group.optimum()
    rows.append([
      _num(group.N),
      _num(group.D),
      str(len(group.L)),
      *([] if same else [values]),
      ", ".join(f"{name}={_value(group.settings[name][best])}" for name in group.varied()) or "-",
      _num(group.L[best]),
      f"+{group.L.max() / group.L[best] - 1:.1%}",
      f"{optimum[0]}={optimum[1]:.4g}" if optimum else "-",
    ])
  lines = [
    f"{len(shared)} group(s) of runs share their N and D"
    + (f", each trying {tried[0]}" if same and tried[0] != "-" else "")
    + f"; {what} (--repeats {a.repeats}). Optimum: the vertex of a parabola in ln(value) through the lowest loss "
    "and its two neighbours, where one numeric setting varies and its lowest loss is not at an end of the values "
    "tried.",
    "",
    *_table(["N", "D", "runs", *([] if same else ["values tried"]), "lowest loss at", "lowest loss",
             "highest, above lowest", "optimum"], rows),
  ]
  allocations = [p for p in a.predictions if p.N is not None and p.D is not None]
  for law in a.setting_laws:
    intervals = ", ".join(f"{q} [{_num(e.lo)}, {_num(e.hi)}]" for q, e in law.exponents.items())
    lines += [
      f"The optimum of {law.name} as a power law, least squares in logs through the {law.n_groups} groups that have "
      f"one: {law.name} ≈ {_power_law(law)} ({INTERVAL_LEVEL:.0%} t-intervals of the exponents: {intervals}; "
      f"RMS residual {law.rms:.1%} in ln {law.name}; fitted on {_ranges(law)}).",
      "",
    ]
    if allocations:
      lines += [
        f"{law.name} by that law at the predicted compute-optimal N and D (beyond the N and D it was fitted on, an "
        "extrapolation):",
        "",
        *_table(["C [FLOP]", "method", "N", "D", law.name],
                [[_num(p.C), p.method, _num(p.N.value), _num(p.D.value), f"{law(p.N.value, p.D.value):.4g}"]
                 for p in allocations]),
      ]
  return lines


def _power_law(law) -> str:
  """A SettingLaw as k N^x D^y."""
  return " ".join([_num(law.k), *(f"{q}^{e.value:.4f}" for q, e in law.exponents.items())])


def _ranges(law) -> str:
  """The N and D a SettingLaw was fitted on: "N from a to b and D = c"."""
  return " and ".join(f"{q} = {_num(lo)}" if lo == hi else f"{q} from {_num(lo)} to {_num(hi)}"
                      for q, (lo, hi) in law.ranges.items())


def _sort_key(text: str) -> tuple:
  """Numbers in numeric order, before other values in text order."""
  try:
    return (0, float(text), "")
  except ValueError:
    return (1, 0.0, text)


def _approach3_section(a) -> list[str]:
  law = a.approach3
  if law is None:
    return ["Skipped (see warnings).", ""]
  n_samples = 0 if law.samples is None else len(law.samples)
  return [
    "L(N, D) = E + A / N^α + B / D^β, fitted as log L = LSE(a − α log N, b − β log D, e) by minimising the "
    "sum of Huber losses of the log residuals with L-BFGS-B from 4500 starts "
    f"(fit time {a.approach3_seconds:.1f} s, objective {law.objective:.6g}; {n_samples} bootstrap fits).",
    "",
    *_law_table(
      law,
      [
        ("E", attrgetter("E")),
        ("A", attrgetter("A")),
        ("B", attrgetter("B")),
        ("α", attrgetter("alpha")),
        ("β", attrgetter("beta")),
        ("a = β/(α+β)  (N_opt ∝ C^a)", attrgetter("a")),
        ("b = α/(α+β)  (D_opt ∝ C^b)", attrgetter("b")),
        ("G = (αA / βB)^(1/(α+β))", attrgetter("G")),
      ],
    ),
    _frontier_line(law, a.runs.flops.k),
    "",
  ]


def _frontier_line(law, k: float | None) -> str:
  if k is None:
    return (
      "Compute-optimal frontier: N_opt(C) minimises L(N, C / f(N)) (f: the FLOPs per token, see Data), "
      "D_opt(C) = C / f(N_opt); N_opt ∝ C^a and D_opt ∝ C^b hold only where f ∝ N."
    )
  if isinstance(law, KaplanLaw):
    return (
      f"Compute-optimal frontier (C = {_num(k)} N D): N_opt(C) = (g N_c^g C / ({_num(k)} D_c))^(1/(1+g)) with "
      f"g = α_N/α_D = {_num(law.alpha_N / law.alpha_D)}, so N_opt ∝ C^{law.a:.4f} and D_opt ∝ C^{law.b:.4f}."
    )
  return (
    f"Compute-optimal frontier (C = {_num(k)} N D): N_opt(C) = G (C/{_num(k)})^a = {_num(law.G)} "
    f"(C/{_num(k)})^{law.a:.4f}, D_opt(C) = G⁻¹ (C/{_num(k)})^b = {_num(1 / law.G)} (C/{_num(k)})^{law.b:.4f}."
  )


def _kaplan_joint_section(a) -> list[str]:
  law = a.kaplan_joint
  if law is None:
    return ["Skipped (see warnings).", ""]
  n_samples = 0 if law.samples is None else len(law.samples)
  lines = [
    "L(N, D) = E + [(N_c / N)^(α_N/α_D) + D_c / D]^α_D: Kaplan et al.'s Eq. 1.5 with an irreducible term E (theirs "
    "has none). Fitted as approach 3 is: the sum of Huber losses of the log residuals, minimised with L-BFGS-B "
    f"from {len(kaplan_start_grid())} starts (fit time {a.kaplan_joint_seconds:.1f} s, objective "
    f"{law.objective:.6g}; {n_samples} bootstrap fits).",
    "",
    *_law_table(
      law,
      [
        ("E", attrgetter("E")),
        ("N_c", attrgetter("Nc")),
        ("D_c", attrgetter("Dc")),
        ("α_N", attrgetter("alpha_N")),
        ("α_D", attrgetter("alpha_D")),
        ("a = α_D/(α_N+α_D)  (N_opt ∝ C^a)", attrgetter("a")),
        ("b = α_N/(α_N+α_D)  (D_opt ∝ C^b)", attrgetter("b")),
      ],
    ),
    _frontier_line(law, a.runs.flops.k),
    "",
  ]
  if a.approach3 is not None:
    rows = []
    for form in (a.approach3, law):
      errors = np.abs(form.loss(a.runs.N, a.runs.D) / a.runs.L - 1.0)
      rows.append([form.method, f"{form.objective:.6g}", f"{np.sqrt(np.mean(errors**2)):.2%}", f"{errors.max():.2%}"])
    lines += [
      "The two forms of L(N, D) on the same runs, each with five parameters and the same loss (the lower objective "
      "fits better; the hold-out check below compares their predictions):",
      "",
      *_table(["form", "Huber objective", "RMS error of the runs' loss", "max"], rows),
    ]
  return lines


def _approach2_section(a) -> list[str]:
  fit = a.approach2
  if fit is None:
    return ["Skipped (see warnings).", ""]
  rows = [
    [
      _num(c.C),
      str(c.n_points),
      f"{_num(c.N_min)} – {_num(c.N_max)}",
      _num(c.N_star) if c.convex else "-",
      _num(c.D_star) if c.convex else "-",
      _num(c.L_star) if c.convex else "-",
      "yes" if c.in_range else ("no: minimum outside sampled N" if c.convex else "no: no minimum"),
    ]
    for c in fit.curves
  ]
  return [
    "Per budget, a parabola L = c₂ (ln N)² + c₁ ln N + c₀; its vertex N*, D* = C / f(N*).",
    "",
    *_table(["C [FLOP]", "runs", "N sampled", "N*", "D*", "L*", "used"], rows),
    "Power laws through the used minima (bootstrap: parabola residuals resampled at each budget's noise "
    "level, N fixed, minima outside the sampled N left out as in the fit):",
    "",
    *_table(
      ["law", "coefficient", "exponent"],
      [
        ["N* = k C^a", _est(estimate(fit.n_law, attrgetter("k"))), _est(estimate(fit.n_law, attrgetter("p")))],
        ["D* = k C^b", _est(estimate(fit.d_law, attrgetter("k"))), _est(estimate(fit.d_law, attrgetter("p")))],
      ],
    ),
  ]


def _approach1_section(a) -> list[str]:
  fit = a.approach1
  if fit is None:
    return ["Skipped (see warnings).", ""]
  lines = [
    f"Lower envelope of loss against compute ({len(fit.envelope)} runs), fitted with L(C) = E + (C0 / C)^γ "
    "(least squares on log L):",
    "",
    *_law_table(fit.loss_law, [("E", attrgetter("E")), ("C0 [FLOP]", attrgetter("x0")), ("γ", attrgetter("gamma"))]),
  ]
  if fit.n_law is not None:
    lines += [
      "N and D of the envelope runs as power laws of C:",
      "",
      *_table(
        ["law", "exponent"],
        [
          ["N_opt ∝ C^a", _est(estimate(fit.n_law, attrgetter("p")))],
          ["D_opt ∝ C^b", _est(estimate(fit.d_law, attrgetter("p")))],
        ],
      ),
    ]
  return lines


def _kaplan_section(a) -> list[str]:
  fit = a.kaplan
  if fit is None:
    return ["Skipped (see warnings).", ""]
  return [
    f"L(N) = E + (N0 / N)^α_N on the {len(fit.indices)} runs trained on D ≈ {_num(fit.D)} tokens "
    "(least squares on log L):",
    "",
    *_law_table(fit.law, [("E", attrgetter("E")), ("N0", attrgetter("x0")), ("α_N", attrgetter("gamma"))]),
  ]


def _predictions_section(a) -> list[str]:
  if not a.predictions:
    return ["None.", ""]
  rows = [[_num(p.C), p.method, _est(p.N), _est(p.D), _est(p.ratio), _est(p.L)] for p in a.predictions]
  return [
    f"Compute-optimal allocation and loss per budget, values [{INTERVAL_LEVEL:.0%} interval]; D/N is the tokens "
    "per parameter, its interval from each bootstrap fit's own ratio:",
    "",
    *_table(["C [FLOP]", "method", "N", "D", "D/N", "loss"], rows),
  ]


def _losses_at_section(a) -> list[str]:
  if not a.losses_at:
    return ["None: neither L(N, D) law (approach 3, Kaplan's) could be fitted (see warnings).", ""]
  rows = [[_num(x.N), _num(x.D), _num(x.C), x.method, _est(x.L), _est(x.L_opt), _percent(x.excess), _est(x.N_opt)]
          for x in a.losses_at]
  return [
    f"The loss of each allocation asked for (--at N:D) by each L(N, D) law, beside that law's compute-optimal "
    f"loss and N at the same compute C (a token costing the runs' FLOPs per token at N), values "
    f"[{INTERVAL_LEVEL:.0%} interval]; beyond the runs' N and D, an extrapolation:",
    "",
    *_table(["N", "D", "C [FLOP]", "method", "loss", "compute-optimal loss", "above it", "compute-optimal N"], rows),
  ]


def _percent(e: Estimate) -> str:
  return f"{e.value:+.2%} [{e.lo:+.2%}, {e.hi:+.2%}]" if e.has_interval else f"{e.value:+.2%}"


def _holdout_section(a) -> list[str]:
  h = a.holdout
  if h is None:
    return ["Skipped (see warnings).", ""] if a.settings["hold-out check"] else ["Not run (--no-holdout).", ""]
  rows = [[r.method, r.quantity, _num(r.predicted), _num(r.observed), f"{r.rel_error:+.1%}"] for r in h.rows]
  lines = [
    f"Fitted on the {h.n_train} runs below the largest budget C = {_num(h.budget)} FLOP and compared with "
    f"its {h.n_test} runs (observed optimum from the {h.observed_from}).",
    "",
    *(_table(["method", "quantity", "predicted", "observed", "error"], rows) if rows else
      ["No method refitted without the largest budget predicts its optimum (see warnings).", ""]),
  ]
  for method, run_errors in h.run_rel_errors.items():
    errors = np.abs(run_errors)
    lines.append(f"Loss of the held-out runs by {method}: mean |error| {errors.mean():.2%}, max {errors.max():.2%}.")
  return lines + [""] if h.run_rel_errors else lines


def render_report(a) -> str:
  sections = [
    ("Data", _data_section),
    ("Approach 3: parametric fit of L(N, D)", _approach3_section),
    ("Approach 2: IsoFLOP profiles", _approach2_section),
    ("Approach 1: lower envelope", _approach1_section),
    ("Kaplan-style L(N, D)", _kaplan_joint_section),
    ("Kaplan-style L(N) at fixed data", _kaplan_section),
    ("Predictions", _predictions_section),
    ("Hold-out check", _holdout_section),
  ]
  if a.runs.shared:
    sections.insert(1, ("Runs that share N and D", _shared_section))
  if a.losses_at_asked:
    sections.insert(sections.index(("Predictions", _predictions_section)) + 1,
                    ("Loss of given N and D", _losses_at_section))
  lines = ["# Scaling-law analysis", ""]
  for title, render in sections:
    lines += [f"## {title}", "", *render(a)]
  lines += ["## Warnings", ""]
  lines += [f"- {w}" for w in a.warnings] or ["None."]
  lines += ["", "## Plots", ""]
  for title, png in a.plots.items():
    svg = Path(png).with_suffix(".svg").name
    lines += [f"### {title}", "", f"![{title}]({png})", "", f"[SVG]({svg})", ""]
  return "\n".join(lines).rstrip() + "\n"


def write_report(a, path: Path) -> None:
  Path(path).write_text(render_report(a), encoding="utf-8")


def summary(a) -> str:
  """A few lines for the console, the first naming the loss fitted."""
  lines = [f"{len(a.runs)} runs of {a.source}, loss {a.columns['L']!r}:"]
  if a.approach3 is not None:
    law = a.approach3
    lines.append(
      f"approach 3: E={_num(law.E)} A={_num(law.A)} B={_num(law.B)} alpha={_num(law.alpha)} "
      f"beta={_num(law.beta)} a={law.a:.4f} b={law.b:.4f} ({a.approach3_seconds:.1f} s)"
    )
  if a.approach2 is not None:
    lines.append(f"approach 2: N* ~ C^{a.approach2.n_law.p:.4f}, D* ~ C^{a.approach2.d_law.p:.4f}")
  if a.approach1 is not None:
    law = a.approach1.loss_law
    lines.append(f"approach 1: L(C) = {_num(law.E)} + ({_num(law.x0)} / C)^{law.gamma:.4f}")
  if a.kaplan_joint is not None:
    law = a.kaplan_joint
    lines.append(
      f"Kaplan L(N, D): E={_num(law.E)} N_c={_num(law.Nc)} D_c={_num(law.Dc)} alpha_N={_num(law.alpha_N)} "
      f"alpha_D={_num(law.alpha_D)} a={law.a:.4f} b={law.b:.4f} ({a.kaplan_joint_seconds:.1f} s)"
    )
  for law in a.setting_laws:
    lines.append(f"optimum {law.name} ~ {_power_law(law)} ({law.n_groups} groups)")
  for p in a.predictions:
    lines.append(f"predict C={_num(p.C)} ({p.method}): N={_est(p.N)} D={_est(p.D)} D/N={_est(p.ratio)} "
                 f"L={_est(p.L)}")
  for x in a.losses_at:
    lines.append(f"at N={_num(x.N)} D={_num(x.D)} ({x.method}): L={_est(x.L)}, {x.excess.value:+.2%} above the "
                 f"compute-optimal L={_num(x.L_opt.value)} (N={_num(x.N_opt.value)}) at C={_num(x.C)}")
  return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Comparing sweeps (scaling.analyze with two CSVs or more)
# --------------------------------------------------------------------------------------------------


def _times(e: Estimate) -> str:
  """A compute multiplier: '1.52x [1.31x, 1.80x]'; inf: the baseline never reaches that loss."""
  def one(x: float) -> str:
    return "never" if x == math.inf else f"{x:.3g}x"
  if math.isnan(e.lo) or math.isnan(e.hi):
    return one(e.value)
  return f"{one(e.value)} [{one(e.lo)}, {one(e.hi)}]"


def _sweeps_section(c) -> list[str]:
  rows = []
  for label, a in zip(c.labels, c.analyses):
    law3 = a.approach3
    rows.append([
      f"`{label}`" + (" (baseline)" if label == c.labels[0] else ""), f"[report]({label}/report.md)", str(len(a.runs)),
      f"{_num(a.runs.C.min())} to {_num(a.runs.C.max())}",
      *(["-"] * 4 if law3 is None else [_est(estimate(law3, attrgetter(q))) for q in ("E", "alpha", "beta", "a")]),
      "-" if a.approach1 is None else _est(estimate(a.approach1.loss_law, attrgetter("gamma"))),
      str(len(a.warnings)),
    ])
  return [
    "Each sweep analysed alike (the same options); its own report has every fit, plot and warning.",
    "",
    *_table(["sweep", "analysis", "runs", "C [FLOP]", "E", "α", "β", "a (N_opt ∝ C^a)", "approach 1 γ",
             "warnings"], rows),
  ]


def _multipliers_section(c) -> list[str]:
  base = c.labels[0]
  lines = [
    f"The compute `{base}` needs to reach each sweep's compute-optimal loss L*(C), over C: above 1, the other "
    f"sweep's setup is worth that many times `{base}`'s compute at C; below 1, it costs. Each method's L*(C) is "
    "its own (approach 3 and Kaplan's L(N, D) at each sweep's compute-optimal N and D, approach 1 its L(C) "
    f"through the best runs); values [{INTERVAL_LEVEL:.0%} interval over pairs of the sweeps' bootstrap fits]. "
    f"Beyond the largest budget of `{base}` ({_num(max(c.analyses[0].runs.budget_or_C()))} FLOP), an extrapolation.",
    "",
  ]
  rows = [[f"`{label}`", method, _num(m.C), _est(m.L_base), _est(m.L_other), _times(m.multiplier)]
          for (label, method), multipliers in c.multipliers.items() for m in multipliers]
  return lines + _table(["sweep", "method", "C [FLOP]", f"L* of `{base}`", "L* of the sweep", "multiplier"], rows)


def _size_multipliers_section(c) -> list[str]:
  base = c.labels[0]
  lines = [
    f"At each budget, the sweep's compute-optimal model (N*, D*) by each L(N, D) law, and what `{base}`'s law "
    "needs to reach its loss there: at the same N* the tokens, over D* (data multiplier), and at the same D* the "
    f"parameters, over N* (parameter multiplier). Above 1, the sweep's setup is worth that many times `{base}`'s "
    "data at equal size (or parameters at equal data); never: the loss is out of reach there. Values "
    f"[{INTERVAL_LEVEL:.0%} interval over pairs of the sweeps' bootstrap fits].",
    "",
  ]
  rows = [[f"`{label}`", method, _num(m.C), _est(m.N), _est(m.D), _times(m.data), _times(m.params)]
          for (label, method), multipliers in c.size_multipliers.items() for m in multipliers]
  return lines + _table(["sweep", "method", "C [FLOP]", "N*", "D*", "data multiplier", "parameter multiplier"], rows)


def render_comparison(c) -> str:
  lines = ["# Scaling-law comparison", ""]
  sections = [("Sweeps", _sweeps_section), (f"Compute multipliers over `{c.labels[0]}`", _multipliers_section)]
  if c.size_multipliers:
    sections.append((f"At equal size and at equal data, over `{c.labels[0]}`", _size_multipliers_section))
  for title, render in sections:
    lines += [f"## {title}", "", *render(c)]
  lines += ["## Plots", ""]
  for title, png in c.plots.items():
    lines += [f"### {title}", "", f"![{title}]({png})", "", f"[SVG]({Path(png).with_suffix('.svg').name})", ""]
  return "\n".join(lines).rstrip() + "\n"


def write_comparison(c, path: Path) -> None:
  Path(path).write_text(render_comparison(c), encoding="utf-8")


def comparison_summary(c) -> str:
  """A line per sweep and method at the baseline's largest budget, for the console."""
  C_max = max(c.analyses[0].runs.budget_or_C())
  lines = []
  for (label, method), multipliers in c.multipliers.items():
    m = min(multipliers, key=lambda m: abs(math.log(m.C / C_max)))
    sized = next((s for s in c.size_multipliers.get((label, method), ()) if s.C == m.C), None)
    at_size = "" if sized is None else (f"; at its N*={_num(sized.N.value)}, D*={_num(sized.D.value)}: data multiplier "
                                        f"{_times(sized.data)}, parameter multiplier {_times(sized.params)}")
    lines.append(f"{label} over {c.labels[0]} at C={_num(m.C)} ({method}): compute multiplier {_times(m.multiplier)}, "
                 f"L*={_est(m.L_other)} against {_est(m.L_base)}{at_size}")
  return "\n".join(lines)
