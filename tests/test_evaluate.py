"""scaling.evaluate: a checkpoint's parameters evaluated again, on the run's corpus or another."""

import json
import math
import os
import subprocess
import sys

import pytest
from common import free_port, xla_flags

from scaling import config as config_lib
from scaling import evaluate, metrics, train
from scaling.errors import UserError

STEPS = 10


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A run on the synthetic source with checkpoints at steps 5 and 10."""
  workdir = tmp_path_factory.mktemp("run")
  cfg = config_lib.load("configs/lm.py:50k", {
      "data.dataset": "synthetic", "data.seq_len": 32, "train.batch_size": 8, "train.steps": STEPS,
      "train.eval_every": 0, "train.eval_batches": 2, "checkpoint.every": 5, "optim.warmup_steps": 2,
      "train.progress": False})
  return workdir, train.train(cfg, str(workdir))


def test_the_newest_checkpoint_evaluates_as_the_run_did_at_its_end(run):
  workdir, summary = run
  record = evaluate.evaluate_checkpoint(str(workdir))
  assert record["eval"] == summary["eval"] and record["step"] == STEPS  # the same numbers, bit for bit
  assert (record["dataset"], record["eval_batches"], record["overrides"]) == ("synthetic", 2, {})
  saved = json.loads((workdir / "evals" / f"step{STEPS}-synthetic.json").read_text())
  assert saved == {k: v for k, v in record.items() if k != "path"} and record["path"].endswith("step10-synthetic.json")


def test_an_earlier_step_and_more_of_the_split(run, caplog, monkeypatch):
  workdir, summary = run
  earlier = evaluate.evaluate_checkpoint(str(workdir), step=5)
  assert earlier["step"] == 5 and earlier["eval"]["loss"] > summary["eval"]["loss"]  # 5 steps less trained
  monkeypatch.setattr(metrics, "PROGRESS_LOG_S", 0.0)  # without a terminal, a line a batch
  with caplog.at_level("INFO"):
    more = evaluate.evaluate_checkpoint(str(workdir), ["--config.train.eval_batches=4"])
  assert [m.split(" (")[0] for m in caplog.messages if m.startswith("evaluating")] == [
      f"evaluating step {STEPS} on synthetic: {k} of 4 batches" for k in range(1, 5)]
  assert more["eval_batches"] == 4 and more["overrides"] == {"train.eval_batches": "4"}
  assert more["eval"]["loss"] != summary["eval"]["loss"] and math.isfinite(more["eval"]["loss"])
  assert more["eval"]["perplexity"] == pytest.approx(math.exp(more["eval"]["loss"]))


def test_another_corpus(run, tmp_path):
  workdir, summary = run
  for i in range(6):
    (tmp_path / f"doc{i}.txt").write_text(f"document {i}: " + "the quick brown fox jumps over the lazy dog. " * 40)
  corpus = {"data.dataset": "files", "data.files": str(tmp_path / "*.txt"), "data.data_dir": str(tmp_path / "tfds"),
            "data.val_fraction": 0.5, "train.eval_batches": 0}
  record = evaluate.evaluate_checkpoint(str(workdir), corpus)
  assert record["dataset"].startswith("text_files/") and record["eval_batches"] == 0
  assert record["eval"]["loss"] != summary["eval"]["loss"]
  assert record["eval"]["bits_per_byte"] == pytest.approx(record["eval"]["loss"] / math.log(2))
  assert (workdir / "evals" / f"step{STEPS}-{record['dataset'].replace('/', '_').replace(':', '_')}.json").exists()
  # named: evals/step10-docs.json (a sweep's column eval_loss.docs); the name is that corpus's from then on
  named = evaluate.evaluate_checkpoint(str(workdir), corpus, name="docs")
  assert named["path"] == str(workdir / "evals" / f"step{STEPS}-docs.json") and named["eval"] == record["eval"]
  with pytest.raises(UserError) as mistake:
    evaluate.evaluate_checkpoint(str(workdir), name="docs")  # the run's own corpus under that name
  assert str(mistake.value) == (f"--corpus-name 'docs' names {record['dataset']} in {named['path']}, not synthetic: "
                                "give this corpus another name (or remove that record)")


def test_on_a_mesh_of_8_devices_as_on_one(run):
  """The parameters, read on the host, are laid out on a mesh the run never had (data=2 x fsdp=4)."""
  workdir, summary = run
  code = ("import json, sys; from scaling import evaluate; "
          "print(json.dumps(evaluate.evaluate_checkpoint(sys.argv[1], {'mesh.data': 2, 'mesh.fsdp': 4, "
          "'mesh.tensor': 1})['eval']))")
  env = {**os.environ, "XLA_FLAGS": xla_flags(8), "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-c", code, str(workdir)], capture_output=True, text=True, env=env,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  sharded = json.loads(result.stdout.splitlines()[-1])
  assert sharded["loss"] == pytest.approx(summary["eval"]["loss"], rel=1e-5)
  assert sharded["accuracy"] == pytest.approx(summary["eval"]["accuracy"], abs=1e-3)


def test_two_processes_evaluate_as_one(run):
  """Under jax.distributed (an explicit coordinator), 2 processes of 2 devices each: every process reads the
  parameters on its host and places its shards; process 0 alone prints and writes."""
  workdir, summary = run
  coordinator = f"127.0.0.1:{free_port()}"
  argv = [sys.executable, "-m", "scaling.evaluate", "--workdir", str(workdir), "--config.mesh.data=2",
          "--config.mesh.fsdp=2", "--config.mesh.tensor=1"]
  processes = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={
      **os.environ, "XLA_FLAGS": xla_flags(2), "JAX_PLATFORMS": "cpu", "SCALING_COORDINATOR": coordinator,
      "SCALING_NUM_PROCESSES": "2", "SCALING_PROCESS_ID": str(i)}) for i in range(2)]
  outputs = [p.communicate(timeout=300) for p in processes]
  assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
  said = [[line for line in out.splitlines() if line.startswith("step ")] for out, _ in outputs]  # not gloo's
  assert len(said[0]) == 1 and said[0][0].startswith(f"step {STEPS} on synthetic: loss ") and said[1] == []
  record = json.loads((workdir / "evals" / f"step{STEPS}-synthetic.json").read_text())
  assert record["eval"]["loss"] == pytest.approx(summary["eval"]["loss"], rel=1e-5)


@pytest.mark.parametrize("args, message", [
  (["--config.model.d_model=64"], "error: config.model.d_model: an evaluation changes only the corpus (config.data, "
   "but not data.tokenizer or data.seq_len), train.batch_size, train.eval_batches and the mesh; the rest is the "
   "run's own"),
  (["--config.data.seq_len=64"], "error: config.data.seq_len: an evaluation changes only the corpus"),
  (["--step", "7"], "error: --workdir {w}: {w}/checkpoints has no checkpoint of step 7 (steps: 5, 10)"),
  (["--config.data.no_such=1"], "error: unknown config field config.data.no_such (fields of config.data: "),
  (["--corpus-name", "my corpus"], "error: --corpus-name 'my corpus': use letters, digits, '.', '_' and '-' (it names "
   "a file and a results.csv column)\n"),
])
def test_mistakes_are_one_line(run, capsys, args, message):
  workdir, _ = run
  assert evaluate.main(["--workdir", str(workdir), *args]) == 2
  assert capsys.readouterr().err.startswith(message.format(w=workdir))


def test_the_command_prints_one_line(run, capsys):
  workdir, summary = run
  assert evaluate.main(["--workdir", str(workdir)]) == 0
  loss = summary["eval"]["loss"]
  assert capsys.readouterr().out == (
    f"step {STEPS} on synthetic: loss {loss:.4f}, perplexity {math.exp(loss):.4g}, bits per byte "
    f"{loss / math.log(2):.4f}, accuracy {summary['eval']['accuracy']:.4f}; written to "
    f"{workdir / 'evals' / 'step10-synthetic.json'}\n")
