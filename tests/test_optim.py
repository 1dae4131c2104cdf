"""Schedules, weight-decay mask, gradient accumulation and z-loss."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from scaling import config as config_lib
from scaling import model, objectives, optim
from common import assert_accumulation_is_the_big_batch, one_batch, tiny


def schedule_values(name, steps_at):
  cfg = config_lib.load("configs/base.py", {"optim.schedule": name, "optim.lr": 1e-3, "optim.warmup_steps": 10,
                                            "optim.min_lr_ratio": 0.1, "train.steps": 110})
  s = optim.schedule(cfg)
  return [float(s(i)) for i in steps_at]


@pytest.mark.parametrize("name,expected", [
    ("constant", [0.0, 5e-4, 1e-3, 1e-3, 1e-3, 1e-3]),
    ("cosine", [0.0, 5e-4, 1e-3, 1e-4 + 9e-4 * 0.5, 1e-4 + 9e-4 * (1 + math.cos(math.pi * 0.8)) / 2, 1e-4]),
    ("linear", [0.0, 5e-4, 1e-3, 5.5e-4, 1e-3 - 0.8 * 9e-4, 1e-4]),
    ("wsd", [0.0, 5e-4, 1e-3, 1e-3, 1e-3, 1e-4]),  # stable until step 90, then 20 steps of decay
])
def test_schedules_with_warmup(name, expected):
  np.testing.assert_allclose(schedule_values(name, [0, 5, 10, 60, 90, 110]), expected, rtol=1e-5, atol=1e-9)


def test_wsd_decays_linearly_in_its_last_fraction():
  assert schedule_values("wsd", [100])[0] == pytest.approx(5.5e-4, rel=1e-5)


def test_decay_mask_only_kernels_and_optionally_embeddings():
  cfg = tiny(**{"model.use_bias": True, "model.norm": "layernorm", "model.position": "learned"})
  params = nnx.to_pure_dict(nnx.state(model.Transformer(ml_collections.FrozenConfigDict(cfg.model), rngs=nnx.Rngs(0))))
  flat = {"/".join(str(k.key) for k in path): v for path, v in jax.tree_util.tree_leaves_with_path(optim.decay_mask(params, False))}
  assert flat["blocks/0/mlp/up/kernel"] and flat["blocks/0/attn/q/kernel"]
  assert not flat["blocks/0/mlp/up/bias"] and not flat["blocks/0/attn_norm/scale"] and not flat["final_norm/bias"]
  assert not flat["embed"] and not flat["pos_embed"]
  with_embeddings = jax.tree.leaves(optim.decay_mask(params, True))
  assert sum(with_embeddings) == sum(flat.values()) + 2


def test_accumulation_equals_the_big_batch():
  # eps=1 makes Adam's update nearly linear in the gradient, so the parameters compare gradients
  # (with eps=1e-8 the update is ~lr * sign(g), where rounding noise in tiny gradients flips signs).
  assert_accumulation_is_the_big_batch(
      lambda accum: tiny(**{"optim.accum_steps": accum, "optim.warmup_steps": 0, "train.batch_size": 8,
                            "optim.eps": 1.0}), one_batch)


def test_z_loss_adds_coefficient_times_squared_log_partition():
  cfg = tiny(**{"optim.z_loss": 1e-2})
  m = model.Transformer(ml_collections.FrozenConfigDict(cfg.model), rngs=nnx.Rngs(0))
  batch = jax.tree.map(jnp.asarray, one_batch(cfg))
  total, stats = objectives.causal_lm(m, batch, None, cfg)
  log_z = jax.nn.logsumexp(m(batch["inputs"]).astype(jnp.float32), axis=-1)
  np.testing.assert_allclose(total - stats["ce"], 1e-2 * (log_z**2).sum(), rtol=1e-5)


def test_optimizer_is_optax_adamw_with_the_lr_of_the_step_it_is_given():
  """Without skipped steps the updates are optax.adamw's, bit for bit; the lr is the schedule's at the
  step passed in, not at the optimizer's count (which a skipped step does not advance)."""
  cfg = tiny(**{"optim.schedule": "linear", "optim.warmup_steps": 2, "train.steps": 10, "optim.clip_norm": 0.0})
  o = cfg.optim
  params = {"kernel": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "scale": jnp.ones((4,))}
  grads = [jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 2)), params) for i in range(4)]
  ours = optim.make_optimizer(cfg)
  reference = optax.adamw(optim.schedule(cfg), b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
                          mask=lambda p: optim.decay_mask(p, False))
  state, ref_state = ours.init(params), reference.init(params)
  for step, g in enumerate(grads):
    updates, state = ours.update(g, state, params, step=jnp.int32(step))
    ref_updates, ref_state = reference.update(g, ref_state, params)
    jax.tree.map(np.testing.assert_array_equal, updates, ref_updates)
  # after step 4, a skipped step 5: the first update of a fresh optimizer at step 6 uses lr(6)
  fresh_ref = optax.adamw(float(optim.schedule(cfg)(6)), b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
                          mask=lambda p: optim.decay_mask(p, False))
  updates, _ = ours.update(grads[0], ours.init(params), params, step=jnp.int32(6))
  expected, _ = fresh_ref.update(grads[0], fresh_ref.init(params), params)
  jax.tree.map(np.testing.assert_array_equal, updates, expected)
  assert float(optim.schedule(cfg)(6)) != float(optim.schedule(cfg)(0))
