"""Training objectives: each maps (model, batch, key) to (summed loss, summed statistics).

Losses are sums over the batch's weighted positions, not means: the step divides by the total
weight after accumulating microbatches, so accumulation is exactly the big batch. Logits are cast to
float32 for the softmax; with `model.logits_chunk` they are formed a chunk of positions at a time.
The key is the dropout key of the step or microbatch; evaluation passes None. An objective in PREPARE
has the whole batch prepared first (BERT's masks, drawn from the step's key or, in evaluation, a fixed one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

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
    # the target's logit by comparison with the vocabulary's iota, not a gather: the gradient is then
    # elementwise and XLA fuses it with the softmax's into one pass writing the compute dtype, where a
    # gather's scatter made it write the full vocabulary's fp32 gradient twice (compiled for an H100)
    is_target = lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1) == targets[..., None]
    target_logit = jnp.where(is_target, logits, 0.0).sum(-1)
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


def mask_batch(batch, key, config):
  """BERT's masking of a whole batch, before the step cuts it into microbatches (so that accumulating
  masks exactly what the big batch would): 'inputs' masked (mask_tokens), 'targets' the original
  tokens, 'weights' 1 at the selected positions and 'real' at the positions attended to. With
  next-sentence labels also, on every row, 'nsp_rows' (0 on the padding rows of an evaluation's last
  batch) and 'nsp_scale', the batch's selected count over its pair count: the NSP sum times it is the
  batch's mean NSP loss once the step divides by the selected count.

  batch: 'inputs', 'weights' (> 0 at real tokens, which are attended to and may be selected; packed
  windows mark tokens with a real successor, the same but for a split's last token), optionally
  'segments' and 'nsp_label'.
  """
  tokenizer = get_tokenizer(config.data)
  if tokenizer.mask_id is None:
    raise DataError(f"config.data.tokenizer={config.data.tokenizer!r} has no [MASK] piece, which MLM needs"
                    " (train one with: python -m scaling.data.tokenizer train)")
  real = batch["weights"] > 0
  inputs, selected = mask_tokens(key, batch["inputs"], real, tokenizer)
  weights = selected.astype(jnp.float32)
  masked = {**batch, "inputs": inputs, "targets": batch["inputs"], "weights": weights, "real": real}
  if "nsp_label" in batch:
    rows = batch["weights"][:, 0]
    masked["nsp_rows"] = rows
    masked["nsp_scale"] = jnp.full(rows.shape, weights.sum() / jnp.maximum(rows.sum(), 1.0))
  return masked


def masked_lm_sums(model, batch, key, config):
  """Encode a batch masked by mask_batch and sum the MLM loss over its selected positions.
  -> (hidden states, summed loss, stats {'ce', 'weight', 'correct'})."""
  # real tokens come first in every row (windows and pairs pad at the end): their count is the row's length
  h = model.hidden(batch["inputs"], segments=batch.get("segments"), lengths=batch["real"].sum(-1), key=key)
  ce, z, correct = token_losses(model, h, batch["targets"], batch["weights"], config.optim.z_loss,
                                config.model.logits_chunk)
  return h, ce + z, {"ce": ce, "weight": batch["weights"].sum(), "correct": correct}


def mlm(model, batch, key, config):
  """BERT's masked LM: predict the selected tokens (see mask_tokens) from the masked sequence."""
  _, loss, stats = masked_lm_sums(model, batch, key, config)
  return loss, stats


def mlm_nsp(model, batch, key, config):
  """Masked LM plus next-sentence prediction on segment pairs (scaling/data/pairs.py): the loss is the
  mean MLM loss plus the mean NSP loss of the whole batch, also under accumulation (mask_batch's
  'nsp_scale')."""
  h, loss, stats = masked_lm_sums(model, batch, key, config)
  logits = model.pooler(h).astype(jnp.float32)
  labels, rows = batch["nsp_label"][:, 0], batch["nsp_rows"]
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
  stats["nsp_ce"] = ((jax.nn.logsumexp(logits, axis=-1) - label_logit) * rows).sum()
  stats["nsp_correct"] = ((jnp.argmax(logits, axis=-1) == labels) * rows).sum()
  stats["nsp_count"] = rows.sum()
  return loss + stats["nsp_ce"] * batch["nsp_scale"][0], stats


OBJECTIVES = {"causal_lm": causal_lm, "mlm": mlm, "mlm_nsp": mlm_nsp}
PREPARE = {"mlm": mask_batch, "mlm_nsp": mask_batch}  # what the step does to the whole batch first
