"""BERT: exact counts, masking statistics, the MLM and NSP losses, segment pairs, an encoder checked
against a NumPy reference, padding, and a tiny BERT's MLM loss falling on the built-in corpus.

Bidirectionality, the sinusoid table and post- vs pre-norm on a hand-computed block are in test_model.py.
"""

import itertools
import json
import math
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from scaling import config as config_lib
from scaling import flops, model, objectives, train
from scaling.data import DataError, get_tokenizer, pipeline, sources
from scaling.data.pairs import PairSource
from common import assert_accumulation_is_the_big_batch, make_trainer

BYTE = get_tokenizer(config_lib.load("configs/base.py").data)


def abstract_params(m):
  frozen = ml_collections.FrozenConfigDict(m)
  return nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: model.Transformer(frozen, rngs=nnx.Rngs(0)))))


def size(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# ---------------------------------------------------------------------------------------------------
# Parameter counts

@pytest.mark.parametrize("name,encoder_and_pooler,with_heads", [("base", 109_482_240, 110_106_428),
                                                                ("large", 335_141_888, 336_226_108)])
def test_bert_counts_exact(name, encoder_and_pooler, with_heads):
  """The published BERT counts (encoder + pooler); with the MLM head and NSP classifier, BertForPreTraining's."""
  m = config_lib.load(f"configs/bert.py:{name}").model
  counts = flops.param_counts(m)
  params = abstract_params(m)
  assert counts["total"] - counts["heads"] == encoder_and_pooler
  assert counts["total"] == size(params) == with_heads
  assert counts["heads"] == size(params["mlm_head"]) + size(params["pooler"]["classifier"])
  d = m.d_model
  assert size(params["mlm_head"]) == d * d + d + 2 * d + 30522  # dense, LayerNorm, output bias
  assert size(params["pooler"]) == d * d + d + 2 * d + 2


@pytest.mark.parametrize("mlm_head,pooler,use_bias,norm,tie", itertools.product(
    (False, True), (False, True), (False, True), ("layernorm", "rmsnorm"), (True, False)))
def test_head_counts_match_the_tree(mlm_head, pooler, use_bias, norm, tie):
  cfg = config_lib.load("configs/bert.py:tiny", {"model.vocab_size": 261, "model.mlm_head": mlm_head,
                                                 "model.pooler": pooler, "model.use_bias": use_bias,
                                                 "model.norm": norm, "model.tie_embeddings": tie,
                                                 "objective": "mlm_nsp" if pooler else "mlm"})
  counts = flops.param_counts(cfg.model)
  params = abstract_params(cfg.model)
  assert counts["total"] == size(params)
  assert counts["heads"] == size(params.get("mlm_head")) + size(params.get("pooler", {}).get("classifier"))


# ---------------------------------------------------------------------------------------------------
# Masking

def test_masking_statistics_within_binomial_tolerance():
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, BYTE.vocab_size, (400, 500)).astype(np.int32)  # ~2% are special ids
  real = rng.random(tokens.shape) < 0.9
  masked, selected = map(np.asarray, objectives.mask_tokens(jax.random.key(1), jnp.asarray(tokens),
                                                            jnp.asarray(real), BYTE))
  special = tokens >= 256
  assert not selected[special | ~real].any(), "specials and padding are never selected"
  np.testing.assert_array_equal(masked[~selected], tokens[~selected])
  eligible, chosen = (real & ~special).sum(), selected.sum()

  def within(count, n, p):  # 4.5 binomial standard deviations
    assert abs(count - n * p) < 4.5 * math.sqrt(n * p * (1 - p)), (count, n, p)

  within(chosen, eligible, 0.15)
  to_mask = masked[selected] == BYTE.mask_id
  kept = masked[selected] == tokens[selected]
  within(to_mask.sum(), chosen, 0.8)
  within(kept.sum(), chosen, 0.1 + 0.1 / 256)  # a random token is the original one time in 256
  within((~to_mask & ~kept).sum(), chosen, 0.1 * 255 / 256)
  assert masked[selected][~to_mask].max() < 256, "random tokens are never special"
  again, _ = objectives.mask_tokens(jax.random.key(1), jnp.asarray(tokens), jnp.asarray(real), BYTE)
  other, _ = objectives.mask_tokens(jax.random.key(2), jnp.asarray(tokens), jnp.asarray(real), BYTE)
  np.testing.assert_array_equal(again, masked)
  assert (np.asarray(other) != masked).any()


def test_random_replacements_cover_the_non_special_ids_uniformly():
  """Special ids may sit anywhere in a vocabulary (SentencePiece puts them first)."""
  tok = types.SimpleNamespace(pad_id=0, eos_id=2, mask_id=3, cls_id=4, sep_id=5, vocab_size=20)
  tokens = jnp.full((2000, 500), 1, jnp.int32)
  masked, selected = objectives.mask_tokens(jax.random.key(0), tokens, jnp.ones(tokens.shape, bool), tok)
  replaced = np.asarray(masked)[np.asarray(selected) & (np.asarray(masked) != 3)]
  counts = np.bincount(replaced, minlength=20)
  normal = [1] + list(range(6, 20))
  assert counts[[0, 2, 3, 4, 5]].sum() == 0
  expected = (replaced != 1).sum() / 14  # random draws spread over the 15 normal ids: 14 of them are not 1
  assert np.all(np.abs(counts[normal[1:]] - expected) < 5 * math.sqrt(expected))


# ---------------------------------------------------------------------------------------------------
# The losses

def tiny(**overrides):
  return config_lib.load("configs/bert.py:tiny", {"model.vocab_size": 261, "train.batch_size": 4,
                                                  "data.seq_len": 32, **overrides})


def encoder_batch(cfg, seed=0):
  """Random byte segment pairs; the last row is a padding row and the others are padded at the end."""
  rng = np.random.default_rng(seed)
  b, t = cfg.train.batch_size, cfg.data.seq_len
  lengths = rng.integers(t // 2, t + 1, b)
  lengths[-1] = 0
  real = np.arange(t)[None] < lengths[:, None]
  inputs = np.where(real, rng.integers(0, 256, (b, t)), BYTE.pad_id).astype(np.int32)
  inputs[real[:, 0], 0] = BYTE.cls_id
  segments = (real & (np.arange(t)[None] >= lengths[:, None] // 2)).astype(np.int32)
  return {"inputs": inputs, "segments": segments, "weights": real.astype(np.float32),
          "nsp_label": rng.integers(0, 2, (b, 1)).astype(np.int32)}


def test_mlm_loss_is_only_on_the_selected_positions():
  cfg = tiny()
  batch = jax.tree.map(jnp.asarray, encoder_batch(cfg))
  net = model.Transformer(ml_collections.FrozenConfigDict(cfg.model), rngs=nnx.Rngs(0))
  key = jax.random.key(3)
  loss, stats = jax.jit(lambda b, k: objectives.mlm(net, objectives.mask_batch(b, k, cfg), None, cfg))(batch, key)
  masked, selected = objectives.mask_tokens(key, batch["inputs"], batch["weights"] > 0, BYTE)
  logits = jax.jit(lambda t, b: net(t, segments=b["segments"], lengths=(b["weights"] > 0).sum(-1)))(masked, batch)
  logp = jax.nn.log_softmax(logits, axis=-1)
  target_logp = np.take_along_axis(np.asarray(logp), np.asarray(batch["inputs"])[..., None], -1)[..., 0]
  selected = np.asarray(selected)
  assert 5 < selected.sum() < selected.size / 4
  np.testing.assert_allclose(stats["ce"], -target_logp[selected].sum(), rtol=1e-5)
  np.testing.assert_allclose(loss, stats["ce"], rtol=1e-6)
  assert stats["weight"] == selected.sum()
  assert stats["correct"] == (np.asarray(logp).argmax(-1) == np.asarray(batch["inputs"]))[selected].sum()


def test_nsp_loss_is_the_mean_over_real_rows_added_to_the_mean_mlm_loss():
  cfg = tiny(objective="mlm_nsp")
  batch = jax.tree.map(jnp.asarray, encoder_batch(cfg))
  net = model.Transformer(ml_collections.FrozenConfigDict(cfg.model), rngs=nnx.Rngs(0))
  loss, stats = jax.jit(lambda b, k: objectives.mlm_nsp(net, objectives.mask_batch(b, k, cfg), None, cfg))(
      batch, jax.random.key(3))
  masked, _ = objectives.mask_tokens(jax.random.key(3), batch["inputs"], batch["weights"] > 0, BYTE)
  nsp = jax.jit(lambda t, b: net.pooler(net.hidden(t, segments=b["segments"], lengths=(b["weights"] > 0).sum(-1))))
  logp = np.asarray(jax.nn.log_softmax(nsp(masked, batch), axis=-1))[:3]  # the fourth row is padding
  labels = np.asarray(batch["nsp_label"])[:3, 0]
  assert stats["nsp_count"] == 3
  np.testing.assert_allclose(stats["nsp_ce"], -logp[np.arange(3), labels].sum(), rtol=1e-5)
  assert stats["nsp_correct"] == (logp.argmax(-1) == labels).sum()
  np.testing.assert_allclose(loss / stats["weight"], stats["ce"] / stats["weight"] + stats["nsp_ce"] / 3, rtol=1e-5)


@pytest.mark.parametrize("objective", ["mlm", "mlm_nsp"])
def test_accumulation_equals_the_big_batch(objective):
  """The masks are drawn for the whole batch and NSP is the whole batch's mean, so accumulating 2
  microbatches (without dropout) is the big batch's update, the padding row in one microbatch only."""
  assert_accumulation_is_the_big_batch(
      lambda accum: tiny(objective=objective, **{"optim.accum_steps": accum, "optim.warmup_steps": 0, "optim.eps": 1.0,
                                                 "model.dropout": 0.0, "model.pooler": objective == "mlm_nsp"}),
      encoder_batch, accums=(1, 2))


def test_nsp_without_the_pooler_is_a_config_error():
  with pytest.raises(config_lib.ConfigError, match="config.model.pooler=True"):
    tiny(objective="mlm_nsp", **{"model.pooler": False})


def test_steps_mask_by_step_and_evaluate_with_a_fixed_mask():
  """Training draws a new mask every step (from seed and step, with or without dropout and with
  accumulation); evaluation masks the same positions every time."""
  cfg = tiny(objective="mlm_nsp", **{"optim.accum_steps": 2})
  trainer = make_trainer(cfg)
  state = trainer.init()
  batch = encoder_batch(cfg)
  first = trainer.eval_step(state["params"], batch)
  np.testing.assert_array_equal(jax.device_get(trainer.eval_step(state["params"], batch)), jax.device_get(first))
  losses = []
  for _ in range(2):  # the learning rate is 0 at step 0: the parameters do not move
    state, metrics = trainer.train_step(state, batch)
    losses.append(float(metrics["loss"]))
  assert all(np.isfinite(losses)) and losses[0] != losses[1]


# ---------------------------------------------------------------------------------------------------
# The encoder

def layer_norm(x, p, eps=1e-12):
  mu = x.mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * p["scale"] + p["bias"]


def gelu(x):
  return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def reference_bert(p, tokens, segments, real):
  """BERT's forward pass, one layer, in NumPy: hidden states, MLM logits, NSP logits."""
  dense = lambda x, q: np.tensordot(x, q["kernel"], axes=q["kernel"].ndim - (q["bias"].ndim)) + q["bias"]
  x = p["embed"][tokens] + p["pos_embed"][: tokens.shape[1]] + p["segment_embed"][segments]
  x = layer_norm(x, p["embed_norm"])
  a, f = p["blocks"][0]["attn"], p["blocks"][0]["mlp"]
  q, k, v = dense(x, a["q"]), dense(x, a["k"]), dense(x, a["v"])
  scores = np.einsum("bthd,bshd->bhts", q, k) / math.sqrt(q.shape[-1])
  scores = np.where(real[:, None, None, :], scores, -np.inf)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  x = layer_norm(x + dense(np.einsum("bhts,bshd->bthd", weights, v), a["o"]), p["blocks"][0]["attn_norm"])
  x = layer_norm(x + dense(gelu(dense(x, f["up"])), f["down"]), p["blocks"][0]["mlp_norm"])
  head = p["mlm_head"]
  logits = layer_norm(gelu(dense(x, head["dense"])), head["norm"]) @ p["embed"].T + head["bias"]
  nsp = dense(np.tanh(dense(x[:, 0], p["pooler"]["dense"])), p["pooler"]["classifier"])
  return x, logits, nsp


def test_encoder_equals_a_numpy_reference():
  """Embeddings (token + position + segment) and their LayerNorm, bidirectional attention with a padding
  mask, post-norm LayerNorm blocks, GELU MLP, the MLM head with the tied decoder, the pooler."""
  cfg = tiny(**{"model.num_layers": 1, "model.init_std": 0.5})
  net = model.Transformer(ml_collections.FrozenConfigDict(cfg.model), rngs=nnx.Rngs(0))
  batch = encoder_batch(cfg)
  real = batch["weights"][:3] > 0
  tokens, segments = batch["inputs"][:3], batch["segments"][:3]

  @jax.jit
  def forward(tokens, segments, real):
    h = net.hidden(tokens, segments=segments, lengths=real.sum(-1))
    return h, net.logits(h), net.pooler(h)

  h, logits, nsp = forward(tokens, segments, real)
  params = jax.tree.map(lambda x: np.asarray(x, np.float64), nnx.to_pure_dict(nnx.state(net)))
  ref_h, ref_logits, ref_nsp = reference_bert(params, tokens, segments, real)
  np.testing.assert_allclose(np.asarray(h)[real], ref_h[real], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(logits)[real], ref_logits[real], rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(nsp, ref_nsp, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("position", ["learned", "sinusoidal"])
def test_padding_never_changes_the_real_positions(position):
  cfg = tiny(**{"model.position": position})
  net = model.Transformer(ml_collections.FrozenConfigDict(cfg.model), rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 256, (2, 32)).astype(np.int32)
  segments = (np.arange(32) >= 10).astype(np.int32)[None].repeat(2, 0)
  real = np.arange(32)[None].repeat(2, 0) < 20
  forward = jax.jit(lambda t, s, r: net.hidden(t, segments=s, lengths=r.sum(-1)))
  padded = np.asarray(forward(tokens, segments, real))
  junk = np.where(real, tokens, rng.integers(0, 256, tokens.shape)).astype(np.int32)
  np.testing.assert_allclose(np.asarray(forward(junk, segments, real))[:, :20], padded[:, :20], atol=1e-5)
  alone = np.asarray(jax.jit(lambda t, s: net.hidden(t, segments=s))(tokens[:, :20], segments[:, :20]))
  np.testing.assert_allclose(alone, padded[:, :20], atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Segment pairs

LETTERS = "abcdefghijklmnopqrst"


@pytest.fixture(scope="module")
def pairs_config(tmp_path_factory):
  """20 documents: document i repeats letter i followed by a running digit; one is empty, one a byte."""
  root = tmp_path_factory.mktemp("docs")
  lengths = [0, 1, *np.random.default_rng(0).integers(100, 2000, len(LETTERS) - 2)]
  for i, (letter, length) in enumerate(zip(LETTERS, lengths)):
    (root / f"doc{i:02d}.txt").write_text("".join(f"{letter}{j % 10}" for j in range(length))[:length])

  def make(**overrides):
    return tiny(objective="mlm_nsp", **{"data.dataset": "files", "data.files": str(root / "*.txt"),
                                        "data.data_dir": str(tmp_path_factory.getbasetemp() / "tfds"),
                                        "data.val_fraction": 0.2, "train.eval_batches": 0, **overrides})
  return make


def decode_pair(row, batch):
  """(A, B, label) of a batch row, checking the layout [CLS] A [SEP] B [SEP] pad..."""
  n = int(batch["weights"][row].sum())
  tokens, segments = batch["inputs"][row], batch["segments"][row]
  assert (tokens[n:] == BYTE.pad_id).all() and batch["weights"][row, :n].all()
  assert tokens[0] == BYTE.cls_id and tokens[n - 1] == BYTE.sep_id
  first_sep = int(np.argmax(tokens == BYTE.sep_id))
  np.testing.assert_array_equal(segments, (np.arange(len(tokens)) > first_sep) & (np.arange(len(tokens)) < n))
  return (BYTE.decode(tokens[1:first_sep]), BYTE.decode(tokens[first_sep + 1:n - 1]), int(batch["nsp_label"][row, 0]))


def test_pairs_are_true_continuations_or_random_segments(pairs_config):
  cfg = pairs_config()
  source = pipeline.window_source(cfg, "train")
  documents = [d.decode() for d in sources.documents(cfg.data, "train")]
  assert source.num_windows == sum(math.ceil((len(d) - 1) / 29) for d in documents if len(d) >= 2)
  batch = source.examples(np.arange(source.num_windows))
  labels = batch["nsp_label"][:, 0]
  n = len(labels)
  assert abs(labels.sum() - n / 2) < 4 * math.sqrt(n / 4)
  covered = 0
  for row in range(n):
    a, b, label = decode_pair(row, batch)
    assert a and b and len(a) + len(b) <= 29
    if label == 0:
      assert any(a + b in d for d in documents)
    elif len(a) > 1 and len(b) > 1:
      assert set(a) & set(LETTERS) != set(b) & set(LETTERS), "B comes from another document"
    covered += len(a) + len(b)
  pairable = [len(d) for d in documents if len(d) >= 2]
  lone_last = sum(n % 29 == 1 for n in pairable)  # a document's last token, when it would be a pair alone
  assert covered == sum(pairable) - lone_last, "every other token is in exactly one pair"


def test_pairs_are_seeded_checkpointable_and_batched_like_windows(pairs_config):
  cfg = pairs_config()
  iterator = pipeline.train_iterator(cfg)
  in_process = [next(iterator) for _ in range(4)]
  assert set(in_process[0]) == {"inputs", "segments", "weights", "nsp_label"}
  assert in_process[0]["inputs"].shape == (4, 32)
  with_worker = pipeline.train_iterator(pairs_config(**{"data.num_workers": 1}))  # pairs pickle to a worker
  next(with_worker), next(with_worker)
  restored = pipeline.train_iterator(pairs_config(**{"data.num_workers": 1}))
  restored.set_state(json.loads(json.dumps(with_worker.get_state())))
  for want, got, same in zip(in_process[2:], [next(restored) for _ in range(2)], [next(with_worker) for _ in range(2)]):
    jax.tree.map(np.testing.assert_array_equal, got, want)
    jax.tree.map(np.testing.assert_array_equal, same, want)
  with_worker.close()
  restored.close()
  other = PairSource.open(pairs_config(seed=1), "train").examples(np.arange(200))["nsp_label"]
  assert (other != PairSource.open(cfg, "train").examples(np.arange(200))["nsp_label"]).any()
  evaluation = list(pipeline.eval_batches(cfg))
  pairs = PairSource.open(cfg, "validation").num_windows
  assert len(evaluation) == math.ceil(pairs / 4)
  assert sum(b["weights"][:, 0].sum() for b in evaluation) == pairs, "padding rows have weight 0"


def test_pairs_need_documents():
  with pytest.raises(DataError, match="synthetic"):
    pipeline.window_source(tiny(objective="mlm_nsp", **{"data.dataset": "synthetic"}), "train")


# ---------------------------------------------------------------------------------------------------
# Training

def test_tiny_bert_mlm_loss_falls_on_the_built_in_corpus(tmp_path):
  cfg = config_lib.load("configs/bert.py:tiny", {
      "data.seq_len": 32, "train.batch_size": 16, "train.steps": 50, "train.log_every": 5,
      "train.eval_every": 25, "train.eval_batches": 4, "train.progress": False, "optim.lr": 3e-3,
      "optim.warmup_steps": 5})
  summary = train.train(cfg, str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  first = next(r for r in records if r["split"] == "train")
  evals = [r for r in records if r["split"] == "eval"]
  assert abs(first["loss"] - math.log(261)) < 0.5, "starts near ln(vocab)"
  assert evals[-1]["loss"] < math.log(261) - 2.0
  assert summary["eval"]["accuracy"] > 0.2, "masked-token accuracy"
  assert cfg.objective == "mlm_nsp" and 0.0 <= summary["eval"]["nsp_accuracy"] <= 1.0
  assert abs(summary["eval"]["nsp_loss"] - math.log(2)) < 0.3, "next-sentence loss near chance this early"
  assert "bits_per_byte" not in summary["eval"], "bits per byte is a causal-LM measure"
  assert summary["N"] == flops.param_counts(train.resolve(cfg)[0].model)["total"]
