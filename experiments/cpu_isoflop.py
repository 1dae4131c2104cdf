"""IsoFLOP curves on a laptop CPU: 4 FLOP budgets x 4 model shapes on the built-in corpus (pystdlib).

  python -m scaling.sweep --experiment experiments/cpu_isoflop.py --jobs 2
  python -m scaling.analyze runs/cpu_isoflop/results.csv --out runs/cpu_isoflop/analysis

Took 12 minutes with --jobs 2 on a 2-core CPU. Byte-level tokens, sequences of 128, batches of 4 (small
batches give these short runs enough steps). Each budget spans 4 ladder shapes, 10k to 400k
non-embedding parameters, around its expected optimum; models this small train best on more tokens
per parameter than Chinchilla's 20 (a pilot put the optimum near 40), so the design centres on 40.
Every run is evaluated on the whole validation split.
"""

from configs import lm
from scaling import sweep

BUDGETS = (5e11, 1.2e12, 3e12, 7.5e12)  # training FLOPs (PaLM count); with 4, approach 1 has its 4
# frontier points and approach 2's hold-out check refits without the largest budget


OVERRIDES = {"data.dataset": "pystdlib", "data.seq_len": 128, "train.batch_size": 4, "optim.lr": 3e-3,
             "train.eval_every": 0, "train.eval_batches": 0, "train.progress": False}


def runs(overrides=None):
  """The design; ``overrides`` change fields of every run (a variant to compare, as cpu_isoflop_gelu.py)."""
  return sweep.isoflop("configs/lm.py", BUDGETS, sizes=lm.LADDER, num_sizes=4, tokens_per_param=40,
                       overrides={**OVERRIDES, **(overrides or {})})
