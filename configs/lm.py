"""A modern decoder for scaling studies: RoPE, RMSNorm, SwiGLU, no biases, tied embeddings.

Sizes are named by their approximate non-embedding parameter count, from 10k to 1b; the shapes
keep head_dim in 16..128 and the aspect ratio d_model / num_layers growing slowly with size.
"""

from configs import base

# name: (layers, d_model, heads)
LADDER = {
    "10k": (1, 32, 2),
    "25k": (2, 32, 2),
    "50k": (2, 48, 3),
    "100k": (2, 64, 4),
    "200k": (3, 80, 5),
    "400k": (4, 96, 6),
    "1m": (5, 128, 4),
    "2m": (6, 160, 5),
    "5m": (8, 224, 7),
    "10m": (8, 320, 5),
    "20m": (10, 384, 6),
    "50m": (12, 576, 9),
    "100m": (14, 768, 12),
    "200m": (18, 960, 15),
    "400m": (24, 1152, 18),
    "1b": (28, 1664, 13),
}


def swiglu_width(d_model: int) -> int:
  """The SwiGLU hidden width: 8/3 d_model (same parameters as a 4x GELU MLP), rounded up to 16."""
  return -(-8 * d_model // 3 // 16) * 16


def get_config(arg: str = "1m"):
  if arg not in LADDER:
    raise ValueError(f"lm size {arg!r}: choose one of {', '.join(LADDER)}")
  layers, d_model, heads = LADDER[arg]
  c = base.get_config()
  c.family, c.size = "lm", arg
  m = c.model
  m.num_layers, m.d_model, m.num_heads, m.d_ff = layers, d_model, heads, swiglu_width(d_model)
  m.position, m.mlp, m.norm, m.use_bias, m.tie_embeddings = "rope", "swiglu", "rmsnorm", False, True
  m.vocab_multiple = 64
  c.data.seq_len = m.max_len = 256
  return c
