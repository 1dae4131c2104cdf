"""FLOPs per token, chip peaks and MFU against hand counts and the issue's published H100 figures."""

import pytest

from scaling import config as config_lib
from scaling import flops, metrics


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
