"""Kaplan-style model-size sweep (Kaplan et al. 2020): the ladder from 1m to 200m non-embedding
parameters, every size trained on the same 2^30 tokens (about 1.07e9), to fit L(N) at fixed data.

  python -m scaling.sweep --experiment experiments/model_size.py --launcher slurm -- --gpus-per-node 8

The corpus is the TFDS dataset DATASET (see experiments/chinchilla_isoflop.py). Sequences of 1024
bytes, batches of 128: 8192 steps.
"""

from scaling import sweep

DATASET = "c4/en"
SIZES = ("1m", "2m", "5m", "10m", "20m", "50m", "100m", "200m")


def runs():
  return sweep.grid("configs/lm.py", sizes=SIZES, tokens=[2**30], warmup_fraction=0.02, overrides={
      "data.dataset": DATASET, "data.seq_len": 1024, "train.batch_size": 128, "optim.lr": 1e-3,
      "train.eval_every": 1000, "train.eval_batches": 64, "checkpoint.every": 1000, "train.progress": False})
