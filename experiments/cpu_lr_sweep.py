"""A learning-rate sweep on a laptop CPU: cpu_isoflop.py's two smallest budgets, each of their 4 model shapes
trained at 4 learning rates (32 runs), to see how the best learning rate moves with model size.

  python -m scaling.sweep --experiment experiments/cpu_lr_sweep.py --jobs 2
  python -m scaling.analyze runs/cpu_lr_sweep/results.csv --out runs/cpu_lr_sweep/analysis --repeats best

Took 22 minutes with --jobs 2 on a 2-core CPU. results.csv gets an optim.lr column; the analysis keeps each
point's lowest loss (--repeats best), tables each point's sweep with the optimum between the grid's values,
fits the optima with a power law in N and D, and plots loss against the learning rate. Two budgets give too
few points for the laws of loss, which the analysis skips with a warning: add cpu_isoflop.py's larger
budgets for those.
"""

from configs import lm
from experiments import cpu_isoflop
from scaling import sweep

LEARNING_RATES = (1e-3, 3e-3, 1e-2, 3e-2)


def runs():
  return sweep.isoflop("configs/lm.py", cpu_isoflop.BUDGETS[:2], sizes=lm.LADDER, num_sizes=4, tokens_per_param=40,
                       axes={"optim.lr": list(LEARNING_RATES)},
                       overrides={k: v for k, v in cpu_isoflop.OVERRIDES.items() if k != "optim.lr"})
