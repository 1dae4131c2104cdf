"""Learning-rate schedules, the optax AdamW chain, and which parameters are decayed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _decay(o, steps: int, after_warmup):
  """Linear warmup from 0 to lr over warmup_steps, then after_warmup(decay_steps, peak, floor)."""
  warmup = max(o.warmup_steps, 0)
  floor = o.lr * o.min_lr_ratio
  if warmup == 0:
    return after_warmup(steps, o.lr, floor)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, o.lr, warmup), after_warmup(max(steps - warmup, 1), o.lr, floor)], [warmup])


def _wsd(steps, peak, floor, fraction):
  decay = max(int(round(steps * fraction)), 1)
  return optax.join_schedules(
      [optax.constant_schedule(peak), optax.linear_schedule(peak, floor, decay)], [steps - decay])


SCHEDULES = {
    "constant": lambda o, n: _decay(o, n, lambda s, peak, floor: optax.constant_schedule(peak)),
    "cosine": lambda o, n: _decay(o, n, lambda s, peak, floor: optax.cosine_decay_schedule(peak, s, floor / peak)),
    "linear": lambda o, n: _decay(o, n, lambda s, peak, floor: optax.linear_schedule(peak, floor, s)),
    "wsd": lambda o, n: _decay(o, n, lambda s, peak, floor: _wsd(s, peak, floor, o.decay_fraction)),
}

EMBEDDINGS = ("embed", "pos_embed", "segment_embed")  # the model's embedding tables


def schedule(config) -> optax.Schedule:
  return SCHEDULES[config.optim.schedule](config.optim, config.train.steps)


def decay_mask(params, decay_embeddings: bool):
  """True for dense kernels (and embedding tables when asked); never norms or biases."""

  def decayed(path, _):
    name = path[-1].key
    return name == "kernel" or (decay_embeddings and name in EMBEDDINGS)

  return jax.tree_util.tree_map_with_path(decayed, params)


def make_optimizer(config) -> optax.GradientTransformation:
  o = config.optim
  adamw = optax.adamw(schedule(config), b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
                      mu_dtype=jnp.dtype(o.moments_dtype),
                      mask=lambda params: decay_mask(params, o.decay_embeddings))
  return optax.chain(optax.clip_by_global_norm(o.clip_norm), adamw) if o.clip_norm > 0 else adamw
