"""Chinchilla-style IsoFLOP design for accelerators (Hoffmann et al. 2022, approach 2): 5 budgets from
1e17 to 1e19 FLOPs, 5 ladder shapes around each budget's expected optimum (20 tokens per parameter).

  python -m scaling.sweep --experiment experiments/chinchilla_isoflop.py --launcher slurm -- --gpus-per-node 8
  python -m scaling.sweep --experiment experiments/chinchilla_isoflop.py --launcher tpu -- --tpu NAME --zone ZONE

The corpus is the TFDS dataset DATASET, prepared as array_record in $SCALING_DATA_DIR (`tfds build
c4/en --file_format=array_record`); point DATASET at yours. Sequences of 1024 bytes, batches of 256
(a multiple of 8, so any power-of-two process count up to 8 divides them).
"""

from configs import lm
from scaling import sweep

DATASET = "c4/en"
BUDGETS = (1e17, 3e17, 1e18, 3e18, 1e19)  # training FLOPs (PaLM count)


def runs():
  return sweep.isoflop("configs/lm.py", BUDGETS, sizes=lm.LADDER, num_sizes=5, batch_multiple=8, overrides={
      "data.dataset": DATASET, "data.seq_len": 1024, "train.batch_size": 256, "optim.lr": 1e-3,
      "train.eval_every": 1000, "train.eval_batches": 64, "checkpoint.every": 1000, "train.progress": False})
