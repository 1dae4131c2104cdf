"""Scaling-law analysis: Chinchilla approaches 1-3, Kaplan L(N) and L(N, D), uncertainty, predictions, plots, report.

The command line is ``python -m scaling.analyze RESULTS.csv --out DIR`` (see ``scaling.analyze``).
"""

from scaling.analysis.fits import (
  AnalysisError,
  AnalysisWarning,
  ChinchillaLaw,
  Estimate,
  KaplanLaw,
  Runs,
  bootstrap_joint,
  fit_approach1,
  fit_approach2,
  fit_approach3,
  fit_kaplan,
  fit_kaplan_joint,
  holdout_check,
  make_runs,
  predict,
)

__all__ = [
  "AnalysisError",
  "AnalysisWarning",
  "ChinchillaLaw",
  "Estimate",
  "KaplanLaw",
  "Runs",
  "bootstrap_joint",
  "fit_approach1",
  "fit_approach2",
  "fit_approach3",
  "fit_kaplan",
  "fit_kaplan_joint",
  "holdout_check",
  "make_runs",
  "predict",
]
