"""Small configs, batches and trainers shared by the tests."""

import jax
import numpy as np

from scaling import config as config_lib
from scaling import sharding
from scaling.steps import Trainer


def tiny(**overrides):
  """A small decoder config (vocab 260, the byte tokenizer's) with dotted-name overrides."""
  base = {"model.vocab_size": 260, "model.d_model": 32, "model.num_heads": 4, "model.d_ff": 64,
          "model.num_layers": 2, "model.max_len": 16, "data.seq_len": 16, "train.batch_size": 4,
          "train.steps": 3, "optim.warmup_steps": 1}
  return config_lib.load("configs/base.py", {**base, **overrides})


def one_batch(cfg, seed=0):
  """Random byte tokens shaped like a training batch of `cfg`."""
  rng = np.random.default_rng(seed)
  toks = rng.integers(0, 256, (cfg.train.batch_size, cfg.data.seq_len + 1)).astype(np.int32)
  return {"inputs": toks[:, :-1], "targets": toks[:, 1:], "weights": np.ones(toks[:, 1:].shape, np.float32)}


def make_trainer(cfg):
  """A Trainer on a one-device mesh."""
  return Trainer(cfg, sharding.make_mesh(cfg.mesh, jax.devices()[:1]))
