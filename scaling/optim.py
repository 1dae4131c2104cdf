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


def scale_by_step_schedule(lr: optax.Schedule) -> optax.GradientTransformationExtraArgs:
  """Multiplies updates by -lr(step), with `step` the training step passed to update(..., step=step).

  optax's own schedules count their calls in the optimizer state, and a step whose update was skipped
  (non-finite loss, checkpoint.skip_nonfinite) keeps the state as it was, so from there on the applied lr
  would lag the logged one; the training step is the one clock that both read."""

  def update(updates, state, params=None, *, step, **extra_args):
    del params, extra_args
    scale = -lr(step)
    return jax.tree.map(lambda u: jnp.asarray(scale, u.dtype) * u, updates), state

  return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def make_optimizer(config) -> optax.GradientTransformationExtraArgs:
  """optax.adamw (with global-norm clipping first when clip_norm > 0) whose lr is read at the step given
  to update(grads, opt_state, params, step=step)."""
  o = config.optim
  adamw = optax.chain(
      optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps, mu_dtype=jnp.dtype(o.moments_dtype)),
      optax.add_decayed_weights(o.weight_decay, mask=lambda params: decay_mask(params, o.decay_embeddings)),
      scale_by_step_schedule(schedule(config)))
  return optax.chain(optax.clip_by_global_norm(o.clip_norm), adamw) if o.clip_norm > 0 else adamw
