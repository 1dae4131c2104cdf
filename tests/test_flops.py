"""FLOPs per token, chip peaks and MFU against hand counts and the issue's published H100 figures."""

import jax
import numpy as np
import pytest
from common import make_trainer

from scaling import config as config_lib
from scaling import flops, metrics
from scaling.train import resolve


def test_palm_count_for_gpt2_124m_by_hand():
  m = config_lib.load_file("configs/gpt2.py:124m").model
  non_embedding = 12 * (4 * 768 * 768 + 4 * 768 + 2 * 768 * 3072 + 3072 + 768 + 4 * 768) + 2 * 768
  assert flops.param_counts(m)["non_embedding"] == non_embedding == 85_056_000
  assert flops.flops_per_token(m, 1024) == 6 * (non_embedding + 50257 * 768) + 12 * 12 * 12 * 64 * 1024


def test_chinchilla_appendix_f_count_by_hand():
  cfg = config_lib.load("configs/base.py", {"model.vocab_size": 1000, "model.d_model": 64, "model.num_heads": 4,
                                            "model.d_ff": 256, "model.mlp": "gelu", "model.num_layers": 3,
                                            "data.seq_len": 128})
  d, h, q, f, v, t, layers = 64, 4, 16, 256, 1000, 128, 3
  forward = (2 * v * d  # embeddings
             + layers * (2 * 3 * d * h * q  # q, k, v projections
                         + 2 * t * h * q  # QK^T
                         + 3 * h * t  # softmax
                         + 2 * t * h * q  # softmax @ V
                         + 2 * h * q * d  # output projection
                         + 2 * 2 * d * f)  # MLP
             + 2 * d * v)  # logits
  assert flops.chinchilla_flops_per_token(cfg.model, 128) == 3 * forward


def test_the_two_counts_agree_on_a_large_model():
  """Hoffmann et al. (table A4): 6N and the full count differ by a few percent at scale."""
  m = config_lib.load_file("configs/gpt2.py:1558m").model
  assert abs(flops.chinchilla_flops_per_token(m, 1024) / flops.flops_per_token(m, 1024) - 1) < 0.05


@pytest.mark.parametrize("size,tokens_per_s,published_mfu", [("124m", 463_000, 0.400), ("350m", 184_000, 0.450)])
def test_mfu_reproduces_nanogpt_h100_figures(size, tokens_per_s, published_mfu):
  m = config_lib.load_file(f"configs/gpt2.py:{size}-bench").model
  mfu = metrics.mfu(flops.flops_per_token(m, 1024), tokens_per_s, 1, "NVIDIA H100 80GB HBM3")
  assert mfu == pytest.approx(published_mfu, abs=0.001)


@pytest.mark.parametrize("kind,peak", [("NVIDIA H100 80GB HBM3", 989.4e12), ("NVIDIA A100-SXM4-80GB", 312e12),
                                       ("TPU v4", 275e12), ("TPU v5 lite", 197e12), ("TPU v5", 459e12),
                                       ("TPU v6 lite", 918e12), ("cpu", None)])
def test_peak_flops_table(kind, peak):
  assert flops.peak_flops(kind) == peak


def compiled_step_flops(cfg) -> float:
  """FLOPs XLA counts in the compiled train step of `cfg` (loops unrolled: XLA counts a scan body once)."""
  trainer = make_trainer(cfg)
  shape = (cfg.train.batch_size, cfg.data.seq_len)
  batch = {name: jax.ShapeDtypeStruct(shape, dtype, sharding=trainer.batch_sharding)
           for name, dtype in (("inputs", np.int32), ("targets", np.int32), ("weights", np.float32))}
  cost = trainer.train_step.lower(trainer.abstract_state(), batch).compile().cost_analysis()
  return (cost[0] if isinstance(cost, list) else cost)["flops"]


SMALL = {"train.batch_size": 2, "data.seq_len": 256, "model.attention": "xla"}


@pytest.mark.parametrize("name,overrides", [("configs/gpt2.py:124m-bench", {"model.num_layers": 2}),
                                            ("configs/lm.py:10m", {})])
def test_palm_count_matches_what_xla_computes(name, overrides):
  """The MFU numerator against XLA's own count of the compiled step (forward, backward, AdamW): the
  formula counts the matmuls, XLA also the elementwise work (norms, activations, softmax, the update)."""
  cfg, _ = resolve(config_lib.load(name, {**SMALL, **overrides}))
  tokens = cfg.train.batch_size * cfg.data.seq_len
  ratio = compiled_step_flops(cfg) / (flops.flops_per_token(cfg.model, cfg.data.seq_len) * tokens)
  assert 1.0 < ratio < 1.02


def test_remat_policies_recompute_what_they_say():
  """`full` recomputes each block's forward in the backward pass, at least the matmuls whose outputs the
  backward needs (q, k, v and the MLP's up projection: 7 of a GPT-2 block's 12 d^2); `dots` keeps the
  matmul outputs and recomputes only elementwise work."""
  counts = {remat: compiled_step_flops(config_lib.load("configs/gpt2.py:124m-bench",
                                                       {**SMALL, "model.num_layers": 2, "model.remat": remat}))
            for remat in ("none", "full", "dots")}
  tokens, d, layers = 2 * 256, 768, 2
  forward_inputs_of_backward = 2 * layers * 7 * d * d * tokens
  assert counts["full"] - counts["none"] > forward_inputs_of_backward
  assert counts["full"] - counts["none"] < 1.5 * forward_inputs_of_backward
  assert 0 <= counts["dots"] - counts["none"] < 0.01 * counts["none"]
