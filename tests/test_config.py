"""Configs: loading, overrides, and one-line errors for every kind of user mistake."""

import subprocess
import sys

import pytest

from scaling import config as config_lib
from scaling import sweep, train


def test_overrides_keep_types_and_reach_nested_fields():
  cfg = config_lib.load("configs/gpt2.py:124m", ["--config.optim.lr=3e-4", "--config.model.use_bias=false",
                                                 "--config.train.steps=1000", "--config.mesh.rules.embed="])
  assert cfg.optim.lr == 3e-4 and cfg.model.use_bias is False and cfg.train.steps == 1000
  assert cfg.mesh.rules.embed == "" and cfg.model.num_layers == 12 and cfg.family == "gpt2"
  with pytest.raises(AttributeError):
    cfg.model.new_field = 1  # loaded configs are locked


def test_every_base_field_has_a_comment():
  lines = open("configs/base.py").read().splitlines()
  fields = [l for l in lines if l.strip().startswith(("c.", "m.", "d.", "o.", "t.", "k.", "h.", "r.", "j."))
            and " = " in l and "ConfigDict()" not in l]
  assert len(fields) > 60
  assert all("#" in l for l in fields if not l.strip().startswith("r.")), "every field: one-line comment"


BAD = [
    (["--config.model.d_modle=64"], "config.model.d_modle"),
    (["--config.optim.lr=fast"], "config.optim.lr"),
    (["--config.model.d_model=66"], "config.model.num_heads"),
    (["--config.optim.warmup_steps=500", "--config.train.steps=100"], "config.optim.warmup_steps"),
    (["--config.optim.lr=-1e-3"], "config.optim.lr"),
    (["--config.model.mlp=swish"], "config.model.mlp"),
    (["--config.model.num_kv_heads=3"], "config.model.num_kv_heads"),
    (["--config.mesh.tensor=0"], "config.mesh.tensor"),
    (["--config.train.batch_size=10", "--config.optim.accum_steps=4"], "config.optim.accum_steps"),
    (["--config.unknown.x=1"], "config.unknown"),
]


def test_an_override_of_the_wrong_type_says_what_the_field_takes():
  for override, message in [("train.steps=abc", "config.train.steps='abc': expected an integer"),
                            ("train.steps=2.5", "config.train.steps='2.5': expected an integer"),
                            ("optim.lr=fast", "config.optim.lr='fast': expected a number"),
                            ("train.progress=maybe", "config.train.progress='maybe': expected true or false")]:
    with pytest.raises(config_lib.ConfigError) as error:
      config_lib.load("configs/lm.py:100k", [f"--config.{override}"])
    assert str(error.value) == message
  cfg = config_lib.load("configs/lm.py:100k", ["--config.train.steps=1e4", "--config.optim.lr=1"])
  assert (cfg.train.steps, cfg.optim.lr) == (10_000, 1.0) and type(cfg.optim.lr) is float


@pytest.mark.parametrize("overrides,culprit", BAD, ids=[c for _, c in BAD])
def test_bad_config_is_one_line_naming_the_field(overrides, culprit, capsys, tmp_path):
  code = train.main(["--config=configs/lm.py:100k", f"--workdir={tmp_path}", *overrides])
  err = capsys.readouterr().err.strip()
  assert code == 2 and err.startswith("error: ") and culprit in err and "\n" not in err, err
  assert not list(tmp_path.iterdir()), "nothing is written for a rejected config"


def test_unknown_size_and_missing_file(capsys, tmp_path):
  assert train.main(["--config=configs/gpt2.py:7b", f"--workdir={tmp_path}"]) == 2
  assert "124m" in capsys.readouterr().err
  assert train.main(["--config=configs/nope.py:1", f"--workdir={tmp_path}"]) == 2
  assert "no such config file" in capsys.readouterr().err


def test_cli_exit_code_and_single_line_without_traceback(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "scaling.train", "--config=configs/lm.py:1m",
                         f"--workdir={tmp_path}", "--config.model.activation=gelu"],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: unknown config field config.model.activation (fields of config.model: " +
      ", ".join(sorted(config_lib.load_file("configs/base.py").model)) + ")"]


def test_path_mistakes_are_one_line(capsys, tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  for args, message in [
      (["--config=README.md", f"--workdir={tmp_path / 'w'}"],
       "--config: README.md is not a Python config file (expected e.g. configs/lm.py:1m)"),
      (["--config=configs/base.py", f"--workdir={a_file}"],
       f"--workdir={a_file} is a file, not a directory: name a directory for the run"),
      (["--config=configs/base.py", "--workdir="],
       "--workdir is empty: name a directory for the run's metrics, checkpoints and summary.json"),
      (["--config=configs/base.py", f"--workdir={a_file / 'w'}", "--config.data.dataset=synthetic"],
       f"--workdir={a_file / 'w'}: Not a directory")]:
    assert train.main(args) == 2, args
    assert capsys.readouterr().err.strip() == f"error: {message}"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


LATE = {  # mistakes the data or the objective reveal: still one line, before any log line and directory
    "no-files": (["--config.data.dataset=files"],
                 "config.data.dataset='files' needs config.data.files, a glob such as 'notes/**/*.md'"),
    "empty-glob": (["--config.data.dataset=files", "--config.data.files=nosuch/*.txt"],
                   "config.data.files='nosuch/*.txt' matches no files"),
    "no-data-dir": (["--config.data.dataset=nosuch", "--config.data.data_dir=nosuch"],
                    "config.data.data_dir='nosuch' does not exist (the TFDS data_dir holding nosuch)"),
    "no-dataset": (["--config.data.dataset=nosuch", "--config.data.data_dir=configs"],
                   "config.data.dataset='nosuch': no such dataset in the TFDS catalog or in configs "
                   "(built-ins: synthetic, pystdlib, files)"),
    "nsp-without-pooler": (["--config.objective=mlm_nsp"], "config.objective='mlm_nsp' needs the next-sentence "
                           "classifier: set config.model.pooler=True"),
}


@pytest.mark.parametrize("overrides,message", LATE.values(), ids=LATE.keys())
def test_data_and_objective_mistakes_end_before_anything_runs(overrides, message, capsys, tmp_path):
  assert train.main(["--config=configs/base.py", f"--workdir={tmp_path / 'w'}", *overrides]) == 2
  assert capsys.readouterr().err.strip() == f"error: {message}"
  assert not (tmp_path / "w").exists(), "no workdir, no checkpoints/"


def test_shipped_configs_and_experiments_are_found_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert config_lib.load("configs/gpt2.py:124m").model.d_model == 768
  assert len(sweep.load_experiment("experiments/cpu_isoflop.py")) == 16
  with pytest.raises(config_lib.ConfigError, match="no such config file 'configs/nope.py'"):
    config_lib.load("configs/nope.py")
