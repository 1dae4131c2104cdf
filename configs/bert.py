"""BERT (Devlin et al. 2019): a bidirectional post-norm encoder pretrained by masked LM and
next-sentence prediction (objective mlm_nsp; plain MLM: --config.objective=mlm --config.model.pooler=false).

Sizes
- tiny: a CPU-sized encoder on the byte tokenizer and the built-in pystdlib corpus.
- base, large: BERT-base and BERT-large exactly: learned positions (512), 2 segment types, post-norm
  LayerNorm (eps 1e-12) with biases, GELU, vocabulary 30522, the MLM head's decoder tied to the token
  embedding. Encoder plus pooler: 109,482,240 and 335,141,888 parameters, as published. Train them on
  a 30522-piece tokenizer (python -m scaling.data.tokenizer train --vocab-size 30522) and a real
  corpus (--config.data.dataset=...); optimisation as in the paper (AdamW, lr 1e-4, 10k warmup steps,
  linear decay, batch 256 x 128 tokens, 1M steps).
"""

from configs import base

SIZES = {  # name: (layers, d_model, heads); d_ff = 4 d_model
    "tiny": (2, 64, 4),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}


def get_config(arg: str = "base"):
  if arg not in SIZES:
    raise ValueError(f"bert size {arg!r}: choose one of {', '.join(SIZES)}")
  layers, d_model, heads = SIZES[arg]
  c = base.get_config()
  c.family, c.size, c.objective = "bert", arg, "mlm_nsp"
  m = c.model
  m.num_layers, m.d_model, m.num_heads, m.d_ff = layers, d_model, heads, 4 * d_model
  m.causal, m.norm_placement, m.norm, m.norm_eps = False, "post", "layernorm", 1e-12
  m.mlp, m.use_bias, m.tie_embeddings, m.position = "gelu", True, True, "learned"
  m.num_segments, m.embed_norm, m.mlm_head, m.pooler = 2, True, True, True
  c.data.dataset = "pystdlib"
  if arg == "tiny":  # the tokenizer's vocabulary, short sequences, the base config's optimisation
    m.max_len = c.data.seq_len = 64
    return c
  m.max_len, m.vocab_size, m.dropout = 512, 30522, 0.1
  c.data.seq_len = 128
  o = c.optim
  o.lr, o.schedule, o.warmup_steps, o.min_lr_ratio = 1e-4, "linear", 10_000, 0.0
  o.b2, o.eps, o.weight_decay = 0.999, 1e-6, 0.01
  c.train.steps, c.train.batch_size = 1_000_000, 256
  return c
