"""The Transformer, in Flax NNX: decoder (causal LM) or encoder (BERT), every option in the config.

Every parameter carries logical axis names (`axes=('embed', 'mlp')`); scaling/sharding.py maps them
to the mesh through the config's rules. Parameters are float32; each matmul runs in the compute
dtype. Dropout takes an explicit key, so the forward pass is a pure function of (params, inputs, key).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.config import ConfigError
from scaling import sharding
from scaling.sharding import constrain

POSITIONS = ("rope", "learned", "sinusoidal", "none")
NORMS = ("layernorm", "rmsnorm")
DTYPES = ("auto", "float32", "bfloat16")
ATTENTION = ("auto", "xla", "cudnn")
MLPS = {  # name -> (activation, gated)
    "gelu": (functools.partial(jax.nn.gelu, approximate=True), False),
    "relu": (jax.nn.relu, False),
    "swiglu": (jax.nn.silu, True),
}
REMAT = {  # name -> checkpoint policy for the blocks' backward pass
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def padded_vocab(m) -> int:
  """The embedding table's rows: vocab_size rounded up to a multiple of vocab_multiple."""
  return -(-m.vocab_size // m.vocab_multiple) * m.vocab_multiple


def head_dim(m) -> int:
  return m.head_dim or m.d_model // m.num_heads


def compute_dtype(m):
  if m.dtype == "auto":
    return jnp.float32 if sharding.platform() == "cpu" else jnp.bfloat16
  return jnp.dtype(m.dtype)


def attention_impl(m, dtype) -> str:
  """cuDNN flash attention on GPU for half-precision inputs, XLA's attention otherwise; an explicit
  `cudnn` where cuDNN can't run it is a ConfigError."""
  backend, half = sharding.platform(), jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)
  cudnn_fits = backend == "gpu" and half and head_dim(m) <= 128
  if m.attention == "cudnn" and not cudnn_fits:
    raise ConfigError(
        f"config.model.attention='cudnn' needs a GPU with cuDNN, a bfloat16 or float16 model.dtype and head_dim "
        f"<= 128 (here: backend {backend}, dtype {jnp.dtype(dtype).name}, head_dim {head_dim(m)}); use auto or xla")
  if m.attention != "auto":
    return m.attention
  return "cudnn" if cudnn_fits else "xla"


def param(key, shape, axes, std: float | None) -> nnx.Param:
  """A float32 parameter: normal(0, std) when std is given, else ones for scales/zeros for biases."""
  if std is None:
    value = jnp.zeros(shape, jnp.float32)
  else:
    value = std * jax.random.normal(key, shape, jnp.float32)
  return nnx.Param(value, axes=axes)


def sinusoids(length: int, dim: int) -> jax.Array:
  """PE(pos, 2i) = sin(pos / 10000^(2i/dim)), PE(pos, 2i+1) = cos(pos / 10000^(2i/dim))."""
  pos = jnp.arange(length, dtype=jnp.float32)[:, None]
  inv = 10000.0 ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
  table = jnp.zeros((length, dim), jnp.float32)
  table = table.at[:, 0::2].set(jnp.sin(pos * inv))
  return table.at[:, 1::2].set(jnp.cos(pos * inv[: dim // 2]))


def rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
  """Rotary embedding on [batch, length, heads, head_dim], rotating the two halves of head_dim."""
  half = x.shape[-1] // 2
  freqs = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions[:, :, None, None].astype(jnp.float32) * freqs
  sin, cos = jnp.sin(angles), jnp.cos(angles)
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def dropout(x: jax.Array, rate: float, key) -> jax.Array:
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


class Norm(nnx.Module):
  def __init__(self, m, *, rngs: nnx.Rngs):
    self.kind, self.eps = m.norm, m.norm_eps
    self.scale = nnx.Param(jnp.ones((m.d_model,), jnp.float32), axes=("norm",))
    self.bias = param(None, (m.d_model,), ("norm",), None) if m.norm == "layernorm" and m.use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    h = x.astype(jnp.float32)
    if self.kind == "layernorm":
      h = h - h.mean(-1, keepdims=True)
    h = h * jax.lax.rsqrt((h * h).mean(-1, keepdims=True) + self.eps) * self.scale[...]
    if self.bias is not None:
      h = h + self.bias[...]
    return h.astype(x.dtype)


class Dense(nnx.Module):
  """y = x . W (+ b), contracting x's last `len(in_shape)` axes; W is (*in_shape, *out_shape)."""

  def __init__(self, in_shape, out_shape, in_axes, out_axes, use_bias, std, *, rngs: nnx.Rngs):
    self.n_in = len(in_shape)
    self.kernel = param(rngs.params(), (*in_shape, *out_shape), (*in_axes, *out_axes), std)
    self.bias = param(None, tuple(out_shape), tuple(out_axes), None) if use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    w = self.kernel[...].astype(x.dtype)
    axes = (tuple(range(x.ndim - self.n_in, x.ndim)), tuple(range(self.n_in)))
    y = jax.lax.dot_general(x, w, (axes, ((), ())))
    return y if self.bias is None else y + self.bias[...].astype(x.dtype)


class Attention(nnx.Module):
  def __init__(self, m, *, rngs: nnx.Rngs):
    d, h, kv, hd = m.d_model, m.num_heads, m.num_kv_heads or m.num_heads, head_dim(m)
    std, out_std = m.init_std, m.init_std / math.sqrt(2 * m.num_layers)
    self.q = Dense((d,), (h, hd), ("embed",), ("heads", "head_dim"), m.use_bias, std, rngs=rngs)
    self.k = Dense((d,), (kv, hd), ("embed",), ("kv_heads", "head_dim"), m.use_bias, std, rngs=rngs)
    self.v = Dense((d,), (kv, hd), ("embed",), ("kv_heads", "head_dim"), m.use_bias, std, rngs=rngs)
    self.o = Dense((h, hd), (d,), ("heads", "head_dim"), ("embed",), m.use_bias, out_std, rngs=rngs)
    self.m = m

  def __call__(self, x, positions, lengths, key):
    m = self.m
    q = constrain(self.q(x), ("batch", "length", "act_heads", None))
    k = constrain(self.k(x), ("batch", "length", "act_kv_heads", None))
    v = constrain(self.v(x), ("batch", "length", "act_kv_heads", None))
    if m.position == "rope":
      q, k = rope(q, positions, m.rope_theta), rope(k, positions, m.rope_theta)
    out = jax.nn.dot_product_attention(
        q, k, v, key_value_seq_lengths=lengths, is_causal=m.causal, implementation=attention_impl(m, x.dtype))
    out = constrain(out, ("batch", "length", "act_heads", None))
    return dropout(self.o(out), m.dropout, key)


class MLP(nnx.Module):
  def __init__(self, m, *, rngs: nnx.Rngs):
    self.activation, gated = MLPS[m.mlp]
    std, out_std = m.init_std, m.init_std / math.sqrt(2 * m.num_layers)
    self.up = Dense((m.d_model,), (m.d_ff,), ("embed",), ("mlp",), m.use_bias, std, rngs=rngs)
    self.gate = Dense((m.d_model,), (m.d_ff,), ("embed",), ("mlp",), m.use_bias, std, rngs=rngs) if gated else None
    self.down = Dense((m.d_ff,), (m.d_model,), ("mlp",), ("embed",), m.use_bias, out_std, rngs=rngs)
    self.rate = m.dropout

  def __call__(self, x, key):
    h = self.up(x)
    h = self.activation(self.gate(x)) * h if self.gate is not None else self.activation(h)
    h = constrain(h, ("batch", "length", "act_mlp"))
    return dropout(self.down(h), self.rate, key)


class Block(nnx.Module):
  def __init__(self, m, *, rngs: nnx.Rngs):
    self.attn_norm, self.attn = Norm(m, rngs=rngs), Attention(m, rngs=rngs)
    self.mlp_norm, self.mlp = Norm(m, rngs=rngs), MLP(m, rngs=rngs)
    self.pre = m.norm_placement == "pre"

  def __call__(self, x, positions, lengths, key):
    k_attn, k_mlp = jax.random.split(key) if key is not None else (None, None)
    if self.pre:
      x = x + self.attn(self.attn_norm(x), positions, lengths, k_attn)
      x = x + self.mlp(self.mlp_norm(x), k_mlp)
    else:
      x = self.attn_norm(x + self.attn(x, positions, lengths, k_attn))
      x = self.mlp_norm(x + self.mlp(x, k_mlp))
    return constrain(x, ("batch", "length", "act_embed"))


def stacked_blocks(m, rngs: nnx.Rngs) -> Block:
  """num_layers blocks as one Block whose params have a leading 'layers' axis (replicated: no rule maps it)."""

  @nnx.split_rngs(splits=m.num_layers)
  @nnx.vmap(in_axes=(0,), out_axes=0)
  def create(rngs):
    return Block(m, rngs=rngs)

  blocks = create(rngs)
  for _, variable in nnx.iter_graph(blocks):
    if isinstance(variable, nnx.Param):
      variable.set_metadata("axes", ("layers", *variable.get_metadata()["axes"]))
  return blocks


class MLMHead(nnx.Module):
  """BERT's masked-LM head: dense, activation and norm before the decoder, and a bias on its logits."""

  def __init__(self, m, *, rngs: nnx.Rngs):
    self.dense = Dense((m.d_model,), (m.d_model,), ("embed",), ("embed",), m.use_bias, m.init_std, rngs=rngs)
    self.activation = MLPS[m.mlp][0]
    self.norm = Norm(m, rngs=rngs)
    self.bias = param(None, (padded_vocab(m),), ("vocab",), None) if m.use_bias else None

  def __call__(self, h, decode) -> jax.Array:
    out = decode(self.norm(self.activation(self.dense(h))))
    return out if self.bias is None else out + self.bias[...].astype(out.dtype)


class Pooler(nnx.Module):
  """BERT's pooler, tanh(dense(h)) at the first ([CLS]) position, and the next-sentence classifier."""

  def __init__(self, m, *, rngs: nnx.Rngs):
    self.dense = Dense((m.d_model,), (m.d_model,), ("embed",), ("embed",), m.use_bias, m.init_std, rngs=rngs)
    self.classifier = Dense((m.d_model,), (2,), ("embed",), ("classes",), m.use_bias, m.init_std, rngs=rngs)

  def __call__(self, h) -> jax.Array:
    """Hidden states [batch, length, d_model] -> next-sentence logits [batch, 2] (0: B follows A)."""
    return self.classifier(jnp.tanh(self.dense(h[:, 0])))


class Transformer(nnx.Module):
  """Token (+ position, + segment) embeddings, a stack of blocks, a final norm (pre-norm), a head;
  optionally BERT's MLM head before the decoder and its pooler with the next-sentence classifier."""

  def __init__(self, m, *, rngs: nnx.Rngs):
    self.m = m
    vocab = padded_vocab(m)
    self.embed = param(rngs.params(), (vocab, m.d_model), ("vocab", "embed"), m.init_std)
    self.pos_embed = (param(rngs.params(), (m.max_len, m.d_model), ("positions", "embed"), m.init_std)
                      if m.position == "learned" else None)
    self.segment_embed = (param(rngs.params(), (m.num_segments, m.d_model), ("segments", "embed"), m.init_std)
                          if m.num_segments else None)
    self.embed_norm = Norm(m, rngs=rngs) if m.embed_norm else None
    self.blocks = (stacked_blocks(m, rngs) if m.scan_layers else
                   nnx.List([Block(m, rngs=rngs) for _ in range(m.num_layers)]))
    self.final_norm = Norm(m, rngs=rngs) if m.norm_placement == "pre" else None
    self.head = (None if m.tie_embeddings else
                 Dense((m.d_model,), (vocab,), ("embed",), ("vocab",), False, m.init_std, rngs=rngs))
    self.mlm_head = MLMHead(m, rngs=rngs) if m.mlm_head else None
    self.pooler = Pooler(m, rngs=rngs) if m.pooler else None

  def hidden(self, tokens, *, segments=None, lengths=None, key=None) -> jax.Array:
    """Final hidden states [batch, length, d_model]; `lengths` (int [batch]) counts each row's real tokens,
    which come first: keys past them (padding) are not attended to; `segments` are token types (default 0)."""
    m, dtype = self.m, compute_dtype(self.m)
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    # The table gathered over its embed (fsdp) axis first: the lookup then splits cleanly over the batch.
    x = jnp.take(constrain(self.embed[...], ("vocab", None)), tokens, axis=0)
    if m.embed_scale:
      x = x * math.sqrt(m.d_model)
    if m.position == "learned":
      x = x + self.pos_embed[...][: tokens.shape[1]]
    elif m.position == "sinusoidal":
      x = x + sinusoids(tokens.shape[1], m.d_model)
    if self.segment_embed is not None:
      segments = jnp.zeros_like(tokens) if segments is None else segments
      x = x + jnp.take(self.segment_embed[...], segments, axis=0)
    if self.embed_norm is not None:
      x = self.embed_norm(x)
    keys = [None] * (m.num_layers + 1) if key is None else list(jax.random.split(key, m.num_layers + 1))
    x = constrain(dropout(x, m.dropout, keys[-1]).astype(dtype), ("batch", "length", "act_embed"))
    if lengths is not None:  # a row of padding alone attends to its first token: attention over no key is undefined
      lengths = jnp.maximum(lengths, 1).astype(jnp.int32)
    if m.scan_layers:
      x = self.scan_blocks(x, positions, lengths, None if key is None else jnp.stack(keys[:-1]))
    else:
      for block, k in zip(self.blocks, keys):
        if REMAT[m.remat] is None:
          x = block(x, positions, lengths, k)
        else:
          x = nnx.remat(lambda b, *a: b(*a), policy=REMAT[m.remat])(block, x, positions, lengths, k)
    return self.final_norm(x) if self.final_norm is not None else x

  def scan_blocks(self, x, positions, lengths, keys):
    """The stacked blocks as one lax.scan over their leading 'layers' axis (`model.scan_unroll` per iteration)."""
    graphdef, state = nnx.split(self.blocks)

    def layer(x, params_and_key):
      params, key = params_and_key
      return nnx.merge(graphdef, params)(x, positions, lengths, key), None

    # scan already keeps XLA from merging the recomputation into the forward pass: no CSE barriers needed
    policy = REMAT[self.m.remat]
    body = layer if policy is None else jax.checkpoint(layer, policy=policy, prevent_cse=False)
    return jax.lax.scan(body, x, (state, keys), unroll=self.m.scan_unroll)[0]

  def logits(self, h: jax.Array) -> jax.Array:
    """Vocabulary logits (compute dtype) for hidden states h[..., d_model]."""
    out = self.decode(h) if self.mlm_head is None else self.mlm_head(h, self.decode)
    return constrain(out, ("batch", "length", "act_vocab"))

  def decode(self, h: jax.Array) -> jax.Array:
    """The output projection: the untied head, or the token embedding transposed."""
    if self.head is not None:
      return self.head(h)
    return jnp.einsum("...d,vd->...v", h, self.embed[...].astype(h.dtype))

  def __call__(self, tokens, **kwargs) -> jax.Array:
    return self.logits(self.hidden(tokens, **kwargs))
