"""cpu_isoflop.py with GELU MLPs in place of SwiGLU (two matrices of the ladder's width instead of three, so each
shape has fewer parameters), to compare the two at equal compute:

  python -m scaling.sweep --experiment experiments/cpu_isoflop.py --jobs 2
  python -m scaling.sweep --experiment experiments/cpu_isoflop_gelu.py --jobs 2
  python -m scaling.analyze runs/cpu_isoflop/results.csv runs/cpu_isoflop_gelu/results.csv --out runs/gelu_vs_swiglu

The analysis fits each sweep, then tables the compute cpu_isoflop needs to reach this sweep's compute-optimal
loss (the compute multiplier).
"""

from experiments import cpu_isoflop


def runs():
  return cpu_isoflop.runs({"model.mlp": "gelu"})
