"""Small configs, batches and trainers shared by the tests."""

import os
import random
import socket

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


def assert_accumulation_is_the_big_batch(config, batch, accums=(1, 4), steps=2):
  """Train `config(accum_steps)` for `steps` steps on batch(cfg, seed=step) for each of `accums`: every run
  must log the first's losses and gradient norms and end with its parameters (up to rounding)."""
  results = []
  for accum in accums:
    cfg = config(accum)
    trainer = make_trainer(cfg)
    state = trainer.init()
    logged = []
    for seed in range(steps):
      state, m = trainer.train_step(state, batch(cfg, seed))
      logged.append((float(m["loss"]), float(m["grad_norm"])))
    results.append((logged, jax.device_get(state["params"])))
  for logged, params in results[1:]:
    np.testing.assert_allclose(results[0][0], logged, rtol=2e-6)
    for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(params)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for a subprocess with `devices` CPU devices: this process's flags (conftest's) and the count."""
  return f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()


def free_port(low: int = 20000, high: int = 60000) -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now (for a coordinator)."""
  while True:
    port = random.randint(low, high)
    with socket.socket() as s:
      try:
        s.bind(("127.0.0.1", port))
      except OSError:
        continue
    return port
