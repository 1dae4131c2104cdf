"""Training objectives: each maps (model, batch, key) to (summed loss, summed statistics).

Losses are sums over the batch's weighted positions, not means: the step divides by the total
weight after accumulating microbatches, so accumulation is exactly the big batch. Logits are cast to
float32 for the softmax; with `model.logits_chunk` they are formed a chunk of positions at a time.
The key is the training step's randomness (dropout, MLM masking); evaluation passes None.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from scaling.data import DataError, get_tokenizer

MASK_RATE = 0.15  # BERT: the fraction of real, non-special tokens selected for prediction
MASK_SPLIT = (0.8, 0.1)  # of the selected: the fraction replaced by [MASK], by a random token (rest kept)
EVAL_MASK_KEY = 0  # evaluation masks with this fixed key: every evaluation of every run, the same positions


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


def mask_tokens(key, tokens, real, tokenizer):
  """BERT's masking: select MASK_RATE of the real (True in `real`), non-special tokens; of those,
  80% become [MASK], 10% a random non-special token, 10% stay. -> (masked tokens, selected)."""
  specials = sorted({i for i in (tokenizer.pad_id, tokenizer.eos_id, tokenizer.mask_id, tokenizer.cls_id,
                                 tokenizer.sep_id) if i is not None})
  k_select, k_kind, k_random = jax.random.split(key, 3)
  selected = real & ~jnp.isin(tokens, jnp.asarray(specials)) & jax.random.bernoulli(k_select, MASK_RATE, tokens.shape)
  random = jax.random.randint(k_random, tokens.shape, 0, tokenizer.vocab_size - len(specials))
  for s in specials:  # the random draw indexes the non-special ids: step over each special id below it
    random = random + (random >= s)
  kind = jax.random.uniform(k_kind, tokens.shape)
  replaced = jnp.where(kind < MASK_SPLIT[0], tokenizer.mask_id, jnp.where(kind < sum(MASK_SPLIT), random, tokens))
  return jnp.where(selected, replaced, tokens).astype(tokens.dtype), selected


def masked_lm_sums(model, batch, key, config):
  """Mask the batch, encode it, and sum the MLM loss over the selected positions.

  batch: 'inputs', 'weights' (> 0 at real tokens, which are attended to and may be selected; packed
  windows mark tokens with a real successor, the same but for a split's last token) and optionally
  'segments'. -> (hidden states, summed loss, stats {'ce', 'weight', 'correct'}).
  """
  tokenizer = get_tokenizer(config.data)
  if tokenizer.mask_id is None:
    raise DataError(f"config.data.tokenizer={config.data.tokenizer!r} has no [MASK] piece, which MLM needs"
                    " (train one with: python -m scaling.data.tokenizer train)")
  mask_key, dropout_key = (jax.random.key(EVAL_MASK_KEY), None) if key is None else jax.random.split(key)
  real = batch["weights"] > 0
  inputs, selected = mask_tokens(mask_key, batch["inputs"], real, tokenizer)
  h = model.hidden(inputs, segments=batch.get("segments"), padding=real, key=dropout_key)
  weights = selected.astype(jnp.float32)
  ce, z, correct = token_losses(model, h, batch["inputs"], weights, config.optim.z_loss, config.model.logits_chunk)
  return h, ce + z, {"ce": ce, "weight": weights.sum(), "correct": correct}


def mlm(model, batch, key, config):
  """BERT's masked LM: predict the selected tokens (see mask_tokens) from the masked sequence."""
  _, loss, stats = masked_lm_sums(model, batch, key, config)
  return loss, stats


def mlm_nsp(model, batch, key, config):
  """Masked LM plus next-sentence prediction on segment pairs (scaling/data/pairs.py): the loss is the
  mean MLM loss plus the mean NSP loss. The NSP sum is scaled by the batch's masked count over its
  pair count, since the step divides by the masked count; with accumulation, microbatches' NSP means
  are weighted by their masked counts."""
  h, loss, stats = masked_lm_sums(model, batch, key, config)
  logits = model.pooler(h).astype(jnp.float32)
  labels = batch["nsp_label"][:, 0]
  rows = batch["weights"][:, 0]  # 0 on the padding rows of an evaluation's last batch
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
  stats["nsp_ce"] = ((jax.nn.logsumexp(logits, axis=-1) - label_logit) * rows).sum()
  stats["nsp_correct"] = ((jnp.argmax(logits, axis=-1) == labels) * rows).sum()
  stats["nsp_count"] = rows.sum()
  return loss + stats["nsp_ce"] * stats["weight"] / jnp.maximum(stats["nsp_count"], 1.0), stats


OBJECTIVES = {"causal_lm": causal_lm, "mlm": mlm, "mlm_nsp": mlm_nsp}
