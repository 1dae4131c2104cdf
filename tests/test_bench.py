"""The benchmark times scaling.train's own step and reports consistent figures."""

import pytest

from scaling import bench, flops
from scaling import config as config_lib
from scaling.steps import Trainer


def test_benchmark_times_the_training_step(monkeypatch):
  calls = []
  original = Trainer._train_step
  monkeypatch.setattr(Trainer, "_train_step", lambda self, *a: calls.append(1) or original(self, *a))
  cfg = config_lib.load("configs/gpt2.py:124m-bench", {"model.num_layers": 1, "model.d_model": 64, "model.num_heads": 2,
                                                       "model.d_ff": 128, "train.batch_size": 2, "data.seq_len": 64})
  r = bench.benchmark(cfg, steps=3, warmup=1)
  assert calls, "the benchmark traced Trainer._train_step, the step scaling.train runs"
  assert r["tokens_per_s"] == pytest.approx(2 * 64 / (r["ms_per_step"] / 1e3))
  assert r["flops_per_token"] == flops.flops_per_token(cfg.model, 64)
  assert r["N"] == 50304 * 64 + 1024 * 64 + flops.param_counts(cfg.model)["non_embedding"]
  assert r["mfu"] is None and r["device"] == "cpu"
  assert r["final_loss"] == pytest.approx(10.8, abs=0.3), "ln(50304) = 10.83 on random tokens"


def test_cli_prints_figures(capsys):
  code = bench.main(["--config=configs/lm.py:50k", "--batch=2", "--seq=32", "--steps=2", "--warmup=1"])
  out = capsys.readouterr().out
  assert code == 0 and "ms/step" in out and "tokens/s" in out and "MFU n/a" in out and "batch 2 x seq 32" in out
