"""Training objectives: each maps (model, batch, key) to (summed loss, summed statistics).

Losses are sums over the batch's weighted positions, not means: the step divides by the total
weight after accumulating microbatches, so accumulation is exactly the big batch. Logits are cast to
float32 for the softmax; with `model.logits_chunk` they are formed a chunk of positions at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_losses(model, h, targets, weights, z_loss: float, chunk: int):
  """Weighted sums over positions of cross-entropy, z-loss and correct predictions.

  h: [batch, length, d_model] final hidden states; targets, weights: [batch, length].
  """

  def sums(h, targets, weights):
    logits = model.logits(h).astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return jnp.stack([((log_z - target_logit) * weights).sum(), (z_loss * log_z**2 * weights).sum(),
                      (correct * weights).sum()])

  if not chunk or chunk >= h.shape[1]:
    ce, z, correct = sums(h, targets, weights)
  else:
    n = h.shape[1] // chunk
    split = lambda x: jnp.moveaxis(x.reshape(x.shape[0], n, chunk, *x.shape[2:]), 1, 0)
    body = jax.checkpoint(lambda total, xs: (total + sums(*xs), None))
    (ce, z, correct), _ = jax.lax.scan(body, jnp.zeros(3), (split(h), split(targets), split(weights)))
  return ce, z, correct


def causal_lm(model, batch, key, config):
  """Next-token prediction: batch['targets'] are batch['inputs'] shifted left by one."""
  h = model.hidden(batch["inputs"], key=key)
  ce, z, correct = token_losses(model, h, batch["targets"], batch["weights"], config.optim.z_loss,
                                config.model.logits_chunk)
  return ce + z, {"ce": ce, "weight": batch["weights"].sum(), "correct": correct}


OBJECTIVES = {"causal_lm": causal_lm}
