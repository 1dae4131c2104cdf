"""GPT-2, exactly (Radford et al. 2019): learned positions, LayerNorm with bias, GELU, biased
projections, tied embeddings, vocabulary 50257, context 1024.

Sizes: 124m, 350m, 774m, 1558m. Append '-bench' (e.g. `gpt2.py:124m-bench`) for the benchmark
setting: vocabulary padded to 50304 and no biases.
"""

from configs import base

SIZES = {  # name: (layers, d_model, heads)
    "124m": (12, 768, 12),
    "350m": (24, 1024, 16),
    "774m": (36, 1280, 20),
    "1558m": (48, 1600, 25),
}


def get_config(arg: str = "124m"):
  size, _, variant = arg.partition("-")
  if size not in SIZES or variant not in ("", "bench"):
    raise ValueError(f"gpt2 size {arg!r}: choose one of {', '.join(SIZES)} (optionally with -bench)")
  layers, d_model, heads = SIZES[size]
  c = base.get_config()
  c.family, c.size = "gpt2", arg
  m = c.model
  m.num_layers, m.d_model, m.num_heads, m.d_ff = layers, d_model, heads, 4 * d_model
  m.vocab_size, m.max_len = 50257, 1024
  m.position, m.mlp, m.norm, m.norm_eps = "learned", "gelu", "layernorm", 1e-5
  m.use_bias, m.tie_embeddings, m.dropout = True, True, 0.0
  if variant == "bench":
    m.vocab_multiple, m.use_bias = 64, False
  c.data.seq_len = 1024
  c.optim.lr, c.optim.warmup_steps = 6e-4, 700
  c.train.steps, c.train.batch_size = 20000, 512
  return c
