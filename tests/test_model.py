"""The Transformer: exact parameter counts, causality, every option, positions, dropout, chunked loss."""

import itertools
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from scaling import config as config_lib
from scaling import flops, model, objectives
from configs import lm
from common import make_trainer, one_batch, tiny


def tree_size(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_count(m) -> int:
  frozen = ml_collections.FrozenConfigDict(m)
  return tree_size(nnx.state(nnx.eval_shape(lambda: model.Transformer(frozen, rngs=nnx.Rngs(0)))))


@pytest.mark.parametrize("size,expected", [("124m", 124_439_808), ("350m", 354_823_168),
                                           ("774m", 774_030_080), ("1558m", 1_557_611_200)])
def test_gpt2_counts_exact(size, expected):
  m = config_lib.load_file(f"configs/gpt2.py:{size}").model
  assert flops.param_counts(m)["total"] == expected
  assert abstract_count(m) == expected


def test_gpt2_bench_variant_pads_vocab_and_drops_biases():
  m = config_lib.load_file("configs/gpt2.py:124m-bench").model
  assert model.padded_vocab(m) == 50304 and not m.use_bias
  biases = 12 * (768 + 2304 + 768 + 768 + 3072 + 768) + 768  # per block: 2 LN, qkv, proj, fc, proj; final LN
  assert abstract_count(m) == flops.param_counts(m)["total"] == 124_439_808 - biases + (50304 - 50257) * 768


@pytest.mark.parametrize("size", list(lm.LADDER))
def test_lm_ladder_counts_match_tree(size):
  cfg = config_lib.load(f"configs/lm.py:{size}", {"model.vocab_size": 260})
  counts = flops.param_counts(cfg.model)
  assert abstract_count(cfg.model) == counts["total"]
  assert counts["total"] == counts["non_embedding"] + 320 * cfg.model.d_model  # vocab 260 padded to 320
  nominal = float(size[:-1]) * {"k": 1e3, "m": 1e6, "b": 1e9}[size[-1]]
  assert 0.5 < counts["non_embedding"] / nominal < 2.5, "the ladder's names are its non-embedding sizes"


OPTIONS = {
    "model.position": model.POSITIONS,
    "model.mlp": tuple(model.MLPS),
    "model.norm": model.NORMS,
    "model.norm_placement": ("pre", "post"),
    "model.use_bias": (False, True),
    "model.tie_embeddings": (True, False),
    "model.num_kv_heads": (0, 2, 1),  # MHA, GQA, MQA
}


def test_every_option_combination_builds_with_exact_count():
  for values in itertools.product(*OPTIONS.values()):
    cfg = tiny(**dict(zip(OPTIONS, values)))
    assert abstract_count(cfg.model) == flops.param_counts(cfg.model)["total"], values


def pairwise_cases():
  """A small set of option combinations in which every pair of values appears at least once."""
  names = list(OPTIONS)
  uncovered = {(a, va, b, vb) for a, b in itertools.combinations(names, 2) for va in OPTIONS[a] for vb in OPTIONS[b]}
  cases = []
  all_combos = list(itertools.product(*OPTIONS.values()))
  while uncovered:
    def gain(combo):
      d = dict(zip(names, combo))
      return sum((a, d[a], b, d[b]) in uncovered for a, b in itertools.combinations(names, 2))
    best = dict(zip(names, max(all_combos, key=gain)))
    uncovered -= {(a, best[a], b, best[b]) for a, b in itertools.combinations(names, 2)}
    cases.append(best)
  return cases


@pytest.mark.parametrize("case", pairwise_cases(), ids=lambda c: "-".join(str(v) for v in c.values()))
def test_option_combinations_train_a_step(case):
  cfg = tiny(**case, **{"model.dropout": 0.1, "model.num_layers": 1})
  trainer = make_trainer(cfg)
  state = trainer.init()
  before = jax.device_get(state["params"])
  state, metrics = trainer.train_step(state, one_batch(cfg))
  state, metrics = trainer.train_step(state, one_batch(cfg))  # step 0 has lr 0 (warmup)
  assert np.isfinite(float(metrics["loss"])) and abs(float(metrics["loss"]) - math.log(260)) < 1.0
  after = jax.device_get(state["params"])
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), before, after)
  assert all(jax.tree.leaves(changed)), "every parameter receives an update"


def forward(cfg, tokens, **kwargs):
  graphdef, params = nnx.split(model.Transformer(ml_collections.FrozenConfigDict(cfg.model), rngs=nnx.Rngs(0)))
  return np.asarray(jax.jit(lambda p, t: nnx.merge(graphdef, p)(t, **kwargs))(params, jnp.asarray(tokens)))


@pytest.mark.parametrize("position", model.POSITIONS)
def test_causal_later_tokens_never_change_earlier_logits(position):
  cfg = tiny(**{"model.position": position})
  tokens = np.random.default_rng(0).integers(0, 256, (2, 16))
  base = forward(cfg, tokens)
  for t in (3, 10, 15):
    changed = tokens.copy()
    changed[:, t] = (changed[:, t] + 1) % 256
    out = forward(cfg, changed)
    np.testing.assert_array_equal(out[:, :t], base[:, :t])
    assert np.abs(out[:, t:] - base[:, t:]).max() > 1e-4


def test_encoder_is_bidirectional():
  cfg = tiny(**{"model.causal": False})
  tokens = np.random.default_rng(0).integers(0, 256, (2, 16))
  changed = tokens.copy()
  changed[:, 12] = (changed[:, 12] + 1) % 256
  assert np.abs(forward(cfg, changed)[:, :12] - forward(cfg, tokens)[:, :12]).max() > 1e-4


def test_sinusoid_table_is_the_formula():
  table = np.asarray(model.sinusoids(50, 16))
  pos, i = np.arange(50)[:, None], np.arange(8)[None, :]
  np.testing.assert_allclose(table[:, 0::2], np.sin(pos / 10000 ** (2 * i / 16)), atol=1e-5)
  np.testing.assert_allclose(table[:, 1::2], np.cos(pos / 10000 ** (2 * i / 16)), atol=1e-5)


def test_original_transformer_input_is_scaled_embedding_plus_sinusoids():
  """With no blocks (and post-norm, so no final norm) the hidden states are the input: E * sqrt(d) + PE."""
  cfg = tiny(**{"model.position": "sinusoidal", "model.embed_scale": True, "model.norm_placement": "post"})
  m = ml_collections.FrozenConfigDict({**cfg.model.to_dict(), "num_layers": 0})
  net = model.Transformer(m, rngs=nnx.Rngs(0))
  tokens = jnp.arange(16)[None] * 7
  expected = np.asarray(net.embed[...])[np.asarray(tokens)] * math.sqrt(32) + np.asarray(model.sinusoids(16, 32))
  np.testing.assert_allclose(net.hidden(tokens), expected, rtol=1e-6, atol=1e-6)


def test_rope_preserves_norms_and_relative_positions():
  x = jax.random.normal(jax.random.key(0), (1, 8, 2, 16))
  pos = jnp.arange(8)[None]
  r = model.rope(x, pos, 10000.0)
  np.testing.assert_allclose(jnp.linalg.norm(r, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)
  q = jnp.broadcast_to(x[:, :1], x.shape)  # the same vector at every position
  rq = model.rope(q, pos, 10000.0)
  dots = jnp.einsum("bthd,bshd->bhts", rq, rq)[0, 0]
  np.testing.assert_allclose(dots[0, 3], dots[2, 5], rtol=1e-5)  # depends on the offset only


def test_dropout_needs_a_key_and_scales():
  x = jnp.ones((1000,))
  np.testing.assert_array_equal(model.dropout(x, 0.5, None), x)
  y = model.dropout(x, 0.5, jax.random.key(0))
  assert set(np.unique(np.asarray(y))) == {0.0, 2.0}
  assert abs(float(y.mean()) - 1.0) < 0.1


def test_chunked_loss_equals_full_loss_and_gradient():
  cfg = tiny()
  cfg_chunked = tiny(**{"model.logits_chunk": 4})
  batch = jax.tree.map(jnp.asarray, one_batch(cfg))
  m = model.Transformer(ml_collections.FrozenConfigDict(cfg.model), rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(m)

  def loss(params, c):
    return objectives.causal_lm(nnx.merge(graphdef, params), batch, None, c)[0]

  full, g_full = jax.value_and_grad(loss)(params, cfg)
  chunked, g_chunked = jax.value_and_grad(loss)(params, cfg_chunked)
  np.testing.assert_allclose(chunked, full, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g_full), jax.tree.leaves(g_chunked)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_post_norm_block_on_a_hand_computed_case():
  """Post-norm: x <- norm(x + attn(x)); x <- norm(x + mlp(x)); pre-norm adds the sublayer of norm(x)."""
  cfg = tiny(**{"model.norm_placement": "post", "model.num_layers": 1, "model.position": "none"})
  block = model.Block(ml_collections.FrozenConfigDict(cfg.model), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (1, 4, 32))
  pos = jnp.arange(4)[None]

  def rms(v):
    return v / jnp.sqrt((v * v).mean(-1, keepdims=True) + 1e-6)

  h = rms(x + block.attn(x, pos, None, None))
  np.testing.assert_allclose(block(x, pos, None, None), rms(h + block.mlp(h, None)), rtol=1e-5, atol=1e-6)
  block.pre = True
  h = x + block.attn(rms(x), pos, None, None)
  np.testing.assert_allclose(block(x, pos, None, None), h + block.mlp(rms(h), None), rtol=1e-5, atol=1e-6)


def stack_layers(params, num_layers):
  """Unrolled params (blocks 0..L-1) -> the scanned layout (one block, a leading layers axis)."""
  blocks = [params["blocks"][i] for i in range(num_layers)]
  return {**params, "blocks": jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)}


@pytest.mark.parametrize("remat,unroll", [("none", 1), ("full", 2), ("dots", 3)])
def test_scanned_layers_equal_the_unrolled_loop(remat, unroll):
  """Same params, batch and dropout keys: the scanned stack gives the loop's loss, gradients and update."""
  options = {"model.num_layers": 3, "model.dropout": 0.1, "model.remat": remat}
  loop = make_trainer(tiny(**options))
  scan = make_trainer(tiny(**options, **{"model.scan_layers": True, "model.scan_unroll": unroll}))
  state = loop.init()
  params = jax.tree.map(jnp.copy, stack_layers(state["params"], 3))  # train_step donates its state
  stacked = {"params": params, "opt_state": scan.optimizer.init(params), "step": jnp.copy(state["step"])}
  batch = jax.tree.map(jnp.asarray, one_batch(loop.config))
  key = jax.random.key(7)
  (loss_loop, _), g_loop = jax.jit(jax.value_and_grad(loop._loss, has_aux=True))(state["params"], batch, key)
  (loss_scan, _), g_scan = jax.jit(jax.value_and_grad(scan._loss, has_aux=True))(stacked["params"], batch, key)
  np.testing.assert_allclose(loss_scan, loss_loop, rtol=1e-6)
  # Each gradient within 1e-6 of its tensor's largest entry (the two differ only in summation order).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max()),
               g_scan, stack_layers(g_loop, 3))
  for _ in range(2):
    state, m_loop = loop.train_step(state, batch)
    stacked, m_scan = scan.train_step(stacked, batch)
    np.testing.assert_allclose(m_scan["loss"], m_loop["loss"], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               stack_layers(jax.device_get(state["params"]), 3), jax.device_get(stacked["params"]))


def test_scanned_params_have_a_leading_layers_axis_and_the_same_count():
  cfg = config_lib.load("configs/gpt2.py:124m", {"model.scan_layers": True})
  abstract = nnx.eval_shape(lambda: model.Transformer(ml_collections.FrozenConfigDict(cfg.model), rngs=nnx.Rngs(0)))
  assert tree_size(nnx.state(abstract)) == 124_439_808
  kernel = abstract.blocks.attn.q.kernel
  assert kernel.shape == (12, 768, 12, 64)
  assert kernel.get_metadata()["axes"] == ("layers", "embed", "heads", "head_dim")


def test_scan_unroll_is_checked():
  message = r"config.model.scan_unroll=5 must be in \[1, config.model.num_layers=2\]"
  with pytest.raises(config_lib.ConfigError, match=message):
    tiny(**{"model.scan_unroll": 5})


CUDNN_NEEDS = (r"config.model.attention='cudnn' needs a GPU with cuDNN, a bfloat16 or float16 model.dtype and "
               r"head_dim <= 128 \(here: backend {}, dtype {}, head_dim {}\); use auto or xla")


def test_attention_impl_picks_cudnn_only_where_it_runs(monkeypatch):
  m = tiny().model  # head_dim 8
  assert model.attention_impl(m, jnp.float32) == "xla"
  with pytest.raises(config_lib.ConfigError, match=CUDNN_NEEDS.format(jax.default_backend(), "bfloat16", 8)):
    model.attention_impl(tiny(**{"model.attention": "cudnn"}).model, jnp.bfloat16)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert model.attention_impl(m, jnp.bfloat16) == "cudnn"
  assert model.attention_impl(m, jnp.float32) == "xla"
  assert model.attention_impl(tiny(**{"model.attention": "xla"}).model, jnp.bfloat16) == "xla"
  cudnn = tiny(**{"model.attention": "cudnn"}).model
  assert model.attention_impl(cudnn, jnp.float16) == "cudnn"
  with pytest.raises(config_lib.ConfigError, match=CUDNN_NEEDS.format("gpu", "float32", 8)):
    model.attention_impl(cudnn, jnp.float32)
  wide = tiny(**{"model.attention": "cudnn", "model.head_dim": 256}).model
  with pytest.raises(config_lib.ConfigError, match=CUDNN_NEEDS.format("gpu", "bfloat16", 256)):
    model.attention_impl(wide, jnp.bfloat16)
  assert model.attention_impl(tiny(**{"model.head_dim": 256}).model, jnp.bfloat16) == "xla"


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="cuDNN may run here")
def test_train_cli_explicit_cudnn_off_gpu_is_one_line(tmp_path):
  """Raised while the step is traced, the ConfigError still reaches the CLI: one line, exit 2."""
  argv = [sys.executable, "-m", "scaling.train", "--config=configs/lm.py:50k", f"--workdir={tmp_path / 'w'}",
          "--config.train.steps=2", "--config.optim.warmup_steps=0", "--config.model.attention=cudnn"]
  proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr
  assert "Traceback" not in proc.stderr and "cuDNN is not detected" not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert errors == [f"error: config.model.attention='cudnn' needs a GPU with cuDNN, a bfloat16 or float16 "
                    f"model.dtype and head_dim <= 128 (here: backend {jax.default_backend()}, dtype float32, "
                    f"head_dim 16); use auto or xla"]
