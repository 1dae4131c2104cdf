"""The training loop end to end: loss falls, and summary.json, metrics.jsonl and TensorBoard agree."""

import glob
import json
import logging
import math
import signal
import socket
import subprocess
import sys
import time

import pytest

from scaling import config as config_lib
from scaling import bench, data, flops, optim, train

STEPS, BATCH, SEQ = 40, 8, 32


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  cfg = config_lib.load("configs/lm.py:100k", {
      "data.dataset": "synthetic", "data.seq_len": SEQ, "train.batch_size": BATCH, "train.steps": STEPS,
      "train.log_every": 5, "train.eval_every": 20, "train.eval_batches": 2, "optim.lr": 3e-3,
      "optim.warmup_steps": 5})
  summary = train.train(cfg, str(workdir))
  records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  return workdir, summary, records


def test_loss_falls_on_the_synthetic_task(run):
  _, summary, records = run
  losses = [r["loss"] for r in records if r["split"] == "train"]
  assert losses[0] > 5.0, "starts near ln(vocab) = ln(320)"
  assert losses[-1] < losses[0] - 1.0, losses
  assert summary["eval_loss"] < losses[0] - 1.0


def test_summary_records_n_d_c_and_losses(run):
  workdir, summary, records = run
  assert json.load(open(workdir / "summary.json")) == json.loads(json.dumps(summary, default=str))
  vocab = data.get_tokenizer(config_lib.load("configs/lm.py:100k").data).vocab_size
  m = config_lib.load("configs/lm.py:100k", {"model.vocab_size": vocab}).model
  counts = flops.param_counts(m)
  assert (summary["N"], summary["N_nonembed"]) == (counts["total"], counts["non_embedding"]) == (121_152, 100_672)
  assert summary["D"] == STEPS * BATCH * SEQ
  assert summary["epochs"] is None, "the synthetic source is endless"
  assert summary["C"] == flops.flops_per_token(m, SEQ) * summary["D"]
  assert summary["C_chinchilla"] == flops.chinchilla_flops_per_token(m, SEQ) * summary["D"]
  assert summary["steps"] == STEPS and summary["status"] == "ok" and summary["family"] == "lm"
  assert summary["config"]["model"]["vocab_size"] == vocab, "the resolved config, vocabulary from the tokenizer"
  assert summary["eval"]["bits_per_byte"] == pytest.approx(summary["eval_loss"] / math.log(2))
  assert summary["eval"]["perplexity"] == pytest.approx(math.exp(summary["eval_loss"]))
  last_train = [r for r in records if r["split"] == "train"][-1]
  assert summary["train_loss"] == pytest.approx(last_train["loss"])


def test_metrics_every_log_step_and_evals(run):
  workdir, _, records = run
  train_steps = [r["step"] for r in records if r["split"] == "train"]
  assert train_steps == list(range(5, STEPS + 1, 5))
  assert [r["step"] for r in records if r["split"] == "eval"] == [20, 40]
  schedule = optim.schedule(config_lib.load("configs/lm.py:100k", {
      "train.steps": STEPS, "optim.lr": 3e-3, "optim.warmup_steps": 5}))
  for r in records:
    if r["split"] == "train":
      assert {"loss", "lr", "grad_norm", "tokens_per_s", "step_time_ms"} <= set(r) and r["tokens_per_s"] > 0
      assert r["lr"] == pytest.approx(float(schedule(r["step"] - 1)), rel=1e-6), "the rate of the record's step"
  events = glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*"))
  assert len(events) == 1
  content = open(events[0], "rb").read()
  for tag in (b"train/loss", b"train/tokens_per_s", b"eval/loss", b"eval/bits_per_byte"):
    assert tag in content


def test_divergence_before_any_checkpoint_says_the_rerun_starts_over():
  class NoCheckpoints:
    def latest(self):
      return "none"

  cfg = config_lib.load("configs/lm.py:100k", {"data.dataset": "synthetic"})
  diverged = [{"loss": 5.0, "grad_norm": 1.0}, {"loss": float("nan"), "grad_norm": 1.0}]
  with pytest.raises(train.NonFiniteLoss) as e:
    train.check_finite(diverged, 1, 0, cfg, NoCheckpoints())
  assert str(e.value) == ("training diverged at step 2: loss nan, gradient norm 1.0; last checkpoint: none; "
                          "rerunning starts over: lower optim.lr, or raise checkpoint.skip_nonfinite")


@pytest.mark.parametrize("module,summary", [
    (train, "Train a Transformer language model."),
    (bench, "Throughput benchmark of the training step that `scaling.train` runs.")], ids=["train", "bench"])
def test_help_describes_the_command_by_its_docstrings_first_line(module, summary, capsys):
  with pytest.raises(SystemExit) as e:
    (train.parse_args if module is train else bench.main)(["--help"])
  lines = capsys.readouterr().out.splitlines()
  assert e.value.code == 0 and lines[lines.index("") + 1] == summary == module.__doc__.splitlines()[0]


def test_a_workdir_in_use_is_refused_and_freed_when_its_run_ends(tmp_path):
  """A second run in a workdir whose run is still going ends in one line naming that run; once it has
  stopped (preempted, exit 75), the same command resumes it."""
  workdir = tmp_path / "w"
  command = [sys.executable, "-m", "scaling.train", "--config=configs/lm.py:10k", f"--workdir={workdir}",
             "--config.data.dataset=synthetic", "--config.optim.warmup_steps=1", "--config.train.log_every=1",
             "--config.train.progress=false", "--config.checkpoint.every=0", "--config.optim.schedule=constant"]
  long = command + ["--config.train.steps=100000"]  # cut short on resume: the constant schedule allows it
  log = tmp_path / "first.log"  # a file, not a pipe: a full pipe would block its logging, and its training
  first = subprocess.Popen(long, stdout=subprocess.DEVNULL, stderr=log.open("w"))
  try:
    deadline = time.time() + 120
    while not (workdir / "metrics.jsonl").exists() and first.poll() is None and time.time() < deadline:
      time.sleep(0.1)
    second = subprocess.run(long, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    assert second.stderr == (f"error: --workdir={workdir} is in use by another run (pid {first.pid} on "
                             f"{socket.gethostname()}): wait for it to end, or use another --workdir\n")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 75, log.read_text()[-2000:]
  finally:
    if first.poll() is None:
      first.kill()
  (saved,) = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
  again = subprocess.run(command + [f"--config.train.steps={saved + 2}"], capture_output=True, text=True, timeout=120)
  assert again.returncode == 0 and f"resumed from the checkpoint of step {saved}" in again.stderr, again.stderr


def test_rewind_drops_later_records_and_a_line_cut_short(tmp_path, caplog):
  """A run killed while writing metrics.jsonl leaves a torn last line: the rerun drops it (and the records
  past its checkpoint) instead of failing to parse it on every restart."""
  lines = [json.dumps({"step": s, "split": "train", "loss": 1.0 / s}) + "\n" for s in (1, 2, 3)]
  (tmp_path / "metrics.jsonl").write_text("".join(lines) + '{"step": 4, "split": "train", "lo')
  with caplog.at_level(logging.WARNING, logger="scaling"):
    train.rewind_metrics(str(tmp_path), 2)
  assert (tmp_path / "metrics.jsonl").read_text() == "".join(lines[:2])
  assert "dropped 1 line(s) cut short" in caplog.text and not (tmp_path / "metrics.jsonl.tmp").exists()


def test_ctrl_c_while_the_command_starts_ends_it_at_once_by_the_signal(tmp_path):
  """Until the training loop takes Ctrl-C over (to save a checkpoint), it ends `python -m scaling.train` at once,
  by SIGINT (a sweep reads that as stopped while starting: interrupted), with no traceback. Python's
  KeyboardInterrupt used to print one from the imports; in JAX's import it could vanish in a garbage-collector
  callback, the run going on; in the first compilation it came with a segfault. The workdir is left usable."""
  with_ctrl_c = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
  command = [sys.executable, "-c", with_ctrl_c,  # a test runner may start us with SIGINT ignored
             sys.executable, "-X", "importtime", "-m", "scaling.train", "--config=configs/lm.py:10k",
             f"--workdir={tmp_path / 'w'}", "--config.data.dataset=synthetic", "--config.train.steps=2",
             "--config.optim.warmup_steps=1", "--config.train.progress=false"]
  # -X importtime writes a line as each module's import ends: "... | scaling" once the package's has (the
  # command then imports JAX); the mesh is logged during set-up, before the parameters' initialisation compiles
  for marker in ("| scaling\n", " mesh {"):
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = [""]
    while marker not in lines[-1]:
      lines.append(process.stderr.readline())
      assert lines[-1], "".join(lines)  # ended before the marker
    process.send_signal(signal.SIGINT)
    err = "".join(lines) + process.stderr.read()
    assert process.wait(timeout=60) == -signal.SIGINT, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
  finished = subprocess.run([sys.executable, *command[6:]], capture_output=True, text=True, timeout=120)
  assert finished.returncode == 0 and "done: 2 steps" in finished.stderr, finished.stderr
