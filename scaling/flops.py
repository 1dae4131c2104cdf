"""Parameter counts, training FLOPs per token and chip peaks: one formula for each, used everywhere.

Conventions
- N (total): every parameter of the model, as `jax.tree.leaves` counts them (tests check it).
- N (non-embedding): N minus the token, position and segment tables, an untied output head and the
  MLM head's output bias (Kaplan et al. 2020).
- heads: BERT's pretraining heads (the MLM head and the next-sentence classifier), which its
  published counts leave out: BERT-base's 109,482,240 is N - heads (the pooler is counted).
- FLOPs per token, PaLM (Chowdhery et al. 2022, appendix B): 6 N_matmul + 12 L H Q T, where
  N_matmul = non-embedding parameters + the output projection (tied or not), since the logits
  matmul costs FLOPs while an embedding lookup does not. Training compute C = that x D.
- FLOPs per token, Chinchilla (Hoffmann et al. 2022, appendix F): 3 x forward, the forward counting
  embeddings, attention projections, QK^T, softmax, the value mix, the output projection, the MLP and
  the logits, with no causal discount.
"""

from __future__ import annotations

from scaling.model import MLPS, head_dim, padded_vocab

# Dense bf16 peak FLOP/s per chip, by a substring of jax's device_kind (first match wins).
PEAK_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100", 989.4e12),  # SXM
    ("H200", 989.4e12),
    ("A100", 312e12),
    ("TPU v4", 275e12),
    ("TPU v5 lite", 197e12),  # v5e
    ("TPU v5e", 197e12),
    ("TPU v5", 459e12),  # v5p
    ("TPU v6 lite", 918e12),  # v6e (Trillium)
    ("TPU v6e", 918e12),
)


def peak_flops(device_kind: str) -> float | None:
  """Peak dense bf16 FLOP/s of one chip, or None when unknown (CPUs): MFU is then not reported."""
  for key, peak in PEAK_FLOPS:
    if key.lower() in device_kind.lower():
      return peak
  return None


def _block_params(m) -> int:
  d, hd, h, kv = m.d_model, head_dim(m), m.num_heads, m.num_kv_heads or m.num_heads
  bias = int(m.use_bias)
  attention = d * hd * (h + 2 * kv) + bias * hd * (h + 2 * kv) + h * hd * d + bias * d
  gated = MLPS[m.mlp][1]
  mlp = d * m.d_ff * (3 if gated else 2) + bias * (m.d_ff * (2 if gated else 1) + d)
  return attention + mlp + 2 * norm_params(m)


def norm_params(m) -> int:
  return m.d_model * (2 if m.norm == "layernorm" and m.use_bias else 1)


def param_counts(m) -> dict[str, int]:
  """{'total', 'non_embedding', 'embedding', 'heads'} parameter counts of the model config `m`."""
  vocab, d, bias = padded_vocab(m), m.d_model, int(m.use_bias)
  mlm_transform = (d * d + bias * d + norm_params(m)) * int(m.mlm_head)
  mlm_bias = bias * vocab * int(m.mlm_head)
  pooler, classifier = (d * d + bias * d) * int(m.pooler), (d * 2 + bias * 2) * int(m.pooler)
  embedding = vocab * d
  embedding += m.max_len * d if m.position == "learned" else 0
  embedding += m.num_segments * d
  embedding += 0 if m.tie_embeddings else vocab * d
  embedding += mlm_bias
  norms = norm_params(m) * (int(m.embed_norm) + int(m.norm_placement == "pre"))
  non_embedding = m.num_layers * _block_params(m) + norms + mlm_transform + pooler + classifier
  return {"total": non_embedding + embedding, "non_embedding": non_embedding, "embedding": embedding,
          "heads": mlm_transform + mlm_bias + classifier}


def flops_per_token(m, seq_len: int) -> float:
  """Training FLOPs per token, PaLM's count: 6 N_matmul + 12 L H Q T."""
  n_matmul = param_counts(m)["non_embedding"] + padded_vocab(m) * m.d_model
  return 6 * n_matmul + 12 * m.num_layers * m.num_heads * head_dim(m) * seq_len


def chinchilla_flops_per_token(m, seq_len: int) -> float:
  """Training FLOPs per token, Chinchilla's appendix F count (3 x forward)."""
  d, hd, h, kv, vocab, t = m.d_model, head_dim(m), m.num_heads, m.num_kv_heads or m.num_heads, padded_vocab(m), seq_len
  embeddings = 2 * vocab * d
  attention = 2 * d * hd * (h + 2 * kv) + 2 * t * h * hd + 3 * h * t + 2 * t * h * hd + 2 * h * hd * d
  dense = 2 * d * m.d_ff * (3 if MLPS[m.mlp][1] else 2)
  logits = 2 * d * vocab + 2 * d * d * int(m.mlm_head)  # the MLM head's dense layer runs at every position
  return 3 * (embeddings + m.num_layers * (attention + dense) + logits)
