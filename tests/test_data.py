"""Data: tokenizers, the synthetic source, split determinism, packing, sharding, resumption, errors."""

import fcntl
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import base
from scaling import data, metrics
from scaling.data import DataError, pipeline, sources, synthetic
from scaling.data.tokenizer import ByteTokenizer, train_sentencepiece

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_config(batch_size=4, seed=0, eval_batches=0, **data_fields):
  c = base.get_config()
  c.data.update(data_fields)
  c.seed = seed
  c.train.batch_size = batch_size
  c.train.eval_batches = eval_batches
  return c


def rows(batches) -> list[tuple]:
  """Every row of `batches` as one window: its inputs followed by its last target."""
  return [tuple(np.append(b["inputs"][r], b["targets"][r, -1])) for b in batches for r in range(len(b["inputs"]))]


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def all_windows(config, split) -> list[tuple]:
  """Every window of the split, in order, as rows."""
  windows = pipeline.window_source(config, split)
  return rows([pipeline.examples(windows, np.arange(windows.num_windows), data.get_tokenizer(config.data).pad_id)])


@pytest.fixture(scope="session")
def text_files(tmp_path_factory):
  """24 small files of seeded random words, a .jsonl and a non-UTF-8 file."""
  root = tmp_path_factory.mktemp("text")
  rng = np.random.default_rng(0)
  words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "éta", "θ", "\t", "\n", "    "]
  texts = {}
  for i in range(24):
    name = f"doc{i:02d}.{['txt', 'py', 'md'][i % 3]}"
    texts[name] = f"# file {i}\n" + " ".join(rng.choice(words, size=int(rng.integers(20, 200))))
    (root / name).write_text(texts[name], encoding="utf-8")
  lines = [{"text": f"json line {j}: " + " ".join(rng.choice(words, size=30)), "id": j} for j in range(5)]
  (root / "lines.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n\n", encoding="utf-8")
  (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
  return {"root": root, "glob": str(root / "*"), "texts": texts, "jsonl": [r["text"] for r in lines]}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def files_config(text_files, data_dir):
  """A files dataset of text_files, built once; 25% of the files held out."""
  def config(batch_size=4, seed=0, eval_batches=0, **overrides):
    fields = {"dataset": "files", "files": text_files["glob"], "data_dir": data_dir, "val_fraction": 0.25,
              "seq_len": 16, **overrides}
    return make_config(batch_size, seed, eval_batches, **fields)
  sources.builder(config().data)
  return config


@pytest.fixture(scope="session")
def sp_model(files_config, tmp_path_factory):
  path = str(tmp_path_factory.mktemp("sp") / "tok.model")
  train_sentencepiece(files_config().data, vocab_size=300, out=path)
  return path


# ---------------------------------------------------------------------------------------------------
# Tokenizers

def test_byte_tokenizer_values():
  tok = data.get_tokenizer(make_config().data)
  assert isinstance(tok, ByteTokenizer) and tok.vocab_size == 261
  assert sorted({tok.pad_id, tok.eos_id, tok.mask_id, tok.cls_id, tok.sep_id}) == [256, 257, 258, 259, 260]
  np.testing.assert_array_equal(tok.encode("aé"), [97, 0xC3, 0xA9])
  np.testing.assert_array_equal(tok.encode(b"\xff\x00"), [255, 0])  # any bytes, UTF-8 or not
  assert tok.decode([104, 105, tok.eos_id, tok.pad_id]) == "hi"


def test_sentencepiece_round_trip(sp_model):
  tok = data.get_tokenizer(make_config(tokenizer=sp_model).data)
  assert tok.vocab_size == 300
  assert (tok.pad_id, tok.eos_id, tok.mask_id, tok.cls_id, tok.sep_id) == (0, 2, 3, 4, 5)
  for text in ["alpha beta\n\tgamma  θ", "  two leading spaces\r\n", "unseen: 🎉 ünïcödé \x00"]:
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == text
  assert len(tok.encode("alpha beta gamma")) < len("alpha beta gamma")  # it learned pieces


def test_tokenizer_cli_writes_a_model(files_config, text_files, tmp_path):
  out = tmp_path / "cli.model"
  from scaling.data import tokenizer
  tokenizer.main(["train", "--dataset", "files", "--files", text_files["glob"], "--data-dir",
                  files_config().data.data_dir, "--vocab-size", "320", "--out", str(out)])
  assert data.get_tokenizer(make_config(tokenizer=str(out)).data).vocab_size == 320


def test_tokenizer_cli_errors_are_one_line_in_its_own_terms(files_config, text_files, tmp_path, capsys):
  """--out is checked before training; SentencePiece's advice (--character_coverage) becomes ours."""
  from scaling.data import tokenizer

  def run(*args, out=str(tmp_path / "tok.model")):
    code = tokenizer.main(["train", "--dataset", "files", "--files", text_files["glob"], "--data-dir",
                           files_config().data.data_dir, *args, "--out", out])
    return code, capsys.readouterr().err.strip()

  missing = tmp_path / "nonexistent" / "dir"
  assert run("--vocab-size", "400", out=str(missing / "tok.model")) == (
      2, f"error: --out {missing / 'tok.model'}: no such directory {missing}")
  assert run("--vocab-size", "400", out=str(tmp_path)) == (
      2, f"error: --out {tmp_path} is a directory; give the path of the .model file to write, e.g. "
         f"{tmp_path / 'tok.model'}")
  assert run("--vocab-size", "10") == (
      2, "error: --vocab-size=10 is too small: a model needs 262 pieces (the 256 bytes and 6 special pieces) plus"
         " one per character of the text; pass a larger --vocab-size")
  assert run("--vocab-size", "270") == (  # 262 + the text's characters
      2, "error: --vocab-size=270 is too small for this text: it needs 293 pieces at least (the 256 bytes, 6 special"
         " pieces and the text's characters); pass --vocab-size 293 or more")
  assert run("--vocab-size", "100000") == (
      2, "error: --vocab-size=100000 is more pieces than this text yields (382 at most); pass --vocab-size 382 or"
         " less, or train on more text (--max-chars, a larger dataset)")
  assert not list(tmp_path.iterdir())
  assert run("--vocab-size", "293") == (0, "") and (tmp_path / "tok.model").is_file()


def test_tokenizer_cli_exits_2_before_training():
  argv = [sys.executable, "-m", "scaling.data.tokenizer", "train", "--vocab-size", "400", "--max-chars", "200000",
          "--out", "/nonexistent/dir/tok.model"]
  proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
  assert (proc.returncode, proc.stderr.strip()) == (2, "error: --out /nonexistent/dir/tok.model: no such directory"
                                                       " /nonexistent/dir")


# ---------------------------------------------------------------------------------------------------
# The synthetic source

def test_synthetic_follows_its_chain_and_is_seeded():
  successors = synthetic.chain()
  windows = synthetic.SyntheticWindows(seq_len=256, seed=3, split="train")
  tokens, valid = windows.read(np.arange(64))
  assert tokens.shape == (64, 257) and valid.all() and tokens.max() < 256
  assert all(tokens[r, t + 1] in successors[tokens[r, t]] for r in range(64) for t in range(256))
  np.testing.assert_array_equal(windows.read(np.array([9, 2]))[0], tokens[[9, 2]])  # window i is fixed
  assert not np.array_equal(synthetic.SyntheticWindows(256, 4, "train").read(np.arange(2))[0], tokens[:2])
  assert not np.array_equal(synthetic.SyntheticWindows(256, 3, "validation").read(np.arange(2))[0], tokens[:2])
  pairs = Counter(zip(tokens[:, :-1].ravel(), tokens[:, 1:].ravel()))
  firsts = Counter(tokens[:, :-1].ravel())
  conditional_entropy = -sum(n * np.log(n / firsts[a]) for (a, _), n in pairs.items()) / tokens[:, 1:].size
  assert abs(conditional_entropy - synthetic.entropy()) < 0.05 and synthetic.entropy() < np.log(261) / 4


def test_synthetic_batches_and_eval():
  config = make_config(dataset="synthetic", seq_len=32, batch_size=8, eval_batches=3)
  batch = next(data.train_iterator(config))
  assert batch["inputs"].shape == batch["targets"].shape == batch["weights"].shape == (8, 32)
  assert batch["inputs"].dtype == np.int32 and batch["weights"].dtype == np.float32
  np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
  assert (batch["weights"] == 1).all()
  evals = list(data.eval_batches(config))
  assert len(evals) == 3 and all((e["weights"] == 1).all() for e in evals)
  config.train.eval_batches = 0
  assert len(list(data.eval_batches(config))) == len(data.eval_batches(config)) == synthetic.VALIDATION_WINDOWS // 8


# ---------------------------------------------------------------------------------------------------
# Splits

def test_split_is_deterministic_and_about_the_fraction():
  paths = [f"pkg/module_{i}.py" for i in range(20_000)]
  held_out = sources.validation_files(paths, 0.01)
  assert held_out == sources.validation_files(list(reversed(paths)), 0.01)
  assert 160 < len(held_out) < 240
  assert held_out < sources.validation_files(paths, 0.02)  # a larger fraction only adds files
  assert len(sources.validation_files(paths[:3], 0.01)) == 1  # at least one, given two or more
  assert sources.validation_files(paths[:1], 0.5) == set() and sources.validation_files(paths, 0.0) == set()


def test_pystdlib_split_by_file(tmp_path_factory):
  config = make_config(dataset="pystdlib", data_dir=str(tmp_path_factory.mktemp("stdlib")))
  ds_builder = sources.builder(config.data)
  paths = {split: {r["path"].decode() for r in ds_builder.as_data_source(split)} for split in ("train", "validation")}
  assert not paths["train"] & paths["validation"]
  every = set(sources._pystdlib_config(config.data).paths)
  assert paths["train"] | paths["validation"] <= every and len(every - paths["train"] - paths["validation"]) < 10
  assert paths["validation"] == sources.validation_files(sorted(paths["train"] | paths["validation"]), 0.01)
  assert 0.005 < len(paths["validation"]) / len(every) < 0.02
  assert "json/decoder.py" in paths["train"] | paths["validation"]
  assert not any(p.startswith("site-packages") for p in every)
  windows = pipeline.window_source(config, "train")
  assert windows.cache.num_tokens > 25_000_000  # ~31 MB of source, one byte per token plus EOS
  built = sources._pystdlib_config(config.data).name
  assert built.startswith("py{}.{}.{}-".format(*sys.version_info[:3]))  # another Python, another corpus
  assert pipeline.dataset_identity(config) == f"pystdlib/{built}:{ds_builder.version}"


def test_dataset_identity_follows_the_files(tmp_path):
  """A files dataset is another corpus once a file changes: its identity (kept in checkpoints) says so."""
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs/a.txt").write_text("one document\n")
  config = make_config(dataset="files", files=str(tmp_path / "docs/*.txt"), data_dir=str(tmp_path / "tfds"))
  first = pipeline.dataset_identity(config)
  assert first.startswith("text_files/") and first == pipeline.dataset_identity(config)
  (tmp_path / "docs/a.txt").write_text("one document, edited\n")
  assert pipeline.dataset_identity(config) != first
  assert pipeline.dataset_identity(make_config(dataset="synthetic")) == "synthetic"


def test_files_dataset_documents_and_split(files_config, text_files):
  ds_builder = sources.builder(files_config().data)
  by_split = {s: [(r["path"].decode(), r["text"].decode()) for r in ds_builder.as_data_source(s)]
              for s in ("train", "validation")}
  documents = dict(by_split["train"] + by_split["validation"])
  for name, text in text_files["texts"].items():
    assert documents[name] == text
  jsonl = sorted(t for s in by_split.values() for p, t in s if p == "lines.jsonl")
  assert jsonl == sorted(text_files["jsonl"])  # one document per line, in the split of its file
  assert "latin1.txt" not in documents
  held_out = {p for p, _ in by_split["validation"]}
  assert held_out == sources.validation_files(sorted(set(text_files["texts"]) | {"lines.jsonl"}), 0.25)


# ---------------------------------------------------------------------------------------------------
# Packing, shuffling, sharding, resumption

def stream(config, split):
  """The split's documents, tokenized, each followed by EOS: what the windows must hold, in order."""
  tok = data.get_tokenizer(config.data)
  return np.concatenate([np.append(tok.encode(d), tok.eos_id) for d in sources.documents(config.data, split)])


@pytest.mark.parametrize("tokenizer", ["byte", "sp"])
def test_packing_keeps_every_token_once_with_eos_between_documents(files_config, sp_model, tokenizer):
  config = files_config(tokenizer=sp_model if tokenizer == "sp" else "byte", seq_len=16)
  expected = stream(config, "train")
  windows = pipeline.window_source(config, "train")
  assert windows.num_windows == -(-len(expected) // 17)
  batch = pipeline.examples(windows, np.arange(windows.num_windows), pad_id=0)
  real = [np.append(inputs[0], targets[weights > 0]) for inputs, targets, weights in
          zip(batch["inputs"], batch["targets"], batch["weights"])]
  np.testing.assert_array_equal(np.concatenate(real), expected)  # in order, nothing lost, nothing twice
  assert (batch["weights"][:-1] == 1).all() and 0 < batch["weights"][-1].sum() < 16  # only the tail is padding
  eos = data.get_tokenizer(config.data).eos_id
  documents = list(sources.tokenized_documents(config.data, "train"))
  assert sum(len(d) + 1 for d in documents) == len(expected) and (expected == eos).sum() == len(documents)
  np.testing.assert_array_equal(np.concatenate([np.append(d, eos) for d in documents]), expected)


def test_training_epochs_are_seeded_permutations_of_the_windows(files_config):
  config = files_config(seq_len=8, batch_size=4)
  every = all_windows(config, "train")
  n = len(every)
  seen = rows(_take(data.train_iterator(config), 2 * n // 4 + 1))
  first, second = seen[:n], seen[n:2 * n]
  assert Counter(first) == Counter(every) == Counter(second)  # every window once per epoch
  assert first != every and first != second  # shuffled, and differently each epoch
  assert rows(_take(data.train_iterator(config), 3)) == first[:12]  # the same seed, the same order
  assert rows(_take(data.train_iterator(files_config(seq_len=8, batch_size=4, seed=1)), 3)) != first[:12]


def test_two_processes_get_disjoint_covering_shares(files_config):
  config = files_config(seq_len=8, batch_size=8)
  n = pipeline.window_source(config, "train").num_windows
  steps = -(-n // 8)
  single = _take(data.train_iterator(config), steps)
  shares = [_take(data.train_iterator(config, p, 2), steps) for p in range(2)]
  for p in range(2):
    assert all(b["inputs"].shape == (4, 8) for b in shares[p])
  for step in range(steps):  # each global batch holds the same windows whatever the process count
    assert Counter(rows([shares[0][step]]) + rows([shares[1][step]])) == Counter(rows([single[step]]))
  every = Counter(all_windows(config, "train"))
  first_epoch = rows(shares[0])[:(n + 1) // 2] + rows(shares[1])[:n // 2]  # process p: windows p, p+2, ...
  assert Counter(first_epoch) == every  # the shares are disjoint and cover the epoch


@pytest.mark.parametrize("dataset,workers", [("files", 0), ("synthetic", 0), ("synthetic", 2)])
def test_restoring_the_iterator_state_yields_the_next_batch(files_config, dataset, workers):
  config = files_config(dataset=dataset, seq_len=8, batch_size=4, num_workers=workers)
  iterator = data.train_iterator(config)
  _take(iterator, 5)
  state = json.loads(json.dumps(iterator.get_state()))
  expected = _take(iterator, 2)
  restored = data.train_iterator(config)
  restored.set_state(state)
  in_process = _take(data.train_iterator(files_config(dataset=dataset, seq_len=8, batch_size=4)), 7)[5:]
  for want, got, same in zip(expected, _take(restored, 2), in_process):  # workers change nothing
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])
      np.testing.assert_array_equal(want[key], same[key])
  iterator.close()
  restored.close()


def test_eval_reads_the_validation_split_once_on_every_process(files_config):
  config = files_config(seq_len=8, batch_size=6)
  every = all_windows(config, "validation")
  single = list(data.eval_batches(config))
  assert len(single) == -(-len(every) // 6)
  assert rows(single)[:len(every)] == every and rows(single) == rows(list(data.eval_batches(config)))
  assert sum(b["weights"].sum() for b in single) == len(stream(config, "validation")) - len(every)
  shares = [list(data.eval_batches(config, p, 3)) for p in range(3)]
  assert {len(s) for s in shares} == {len(single)}
  for step in range(len(single)):
    np.testing.assert_array_equal(np.concatenate([s[step]["inputs"] for s in shares]), single[step]["inputs"])
    np.testing.assert_array_equal(np.concatenate([s[step]["weights"] for s in shares]), single[step]["weights"])
  config.train.eval_batches = 1
  assert len(list(data.eval_batches(config))) == 1


# ---------------------------------------------------------------------------------------------------
# Other TFDS datasets, concurrency, errors

class ToyCorpus(tfds.core.GeneratorBasedBuilder):
  """A stand-in for a catalog dataset (lm1b, c4) prepared as array_record."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"sentence": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(0, 40), "test": self._generate_examples(40, 45)}

  def _generate_examples(self, start, stop):
    for i in range(start, stop):
      yield str(i), {"sentence": f"sentence number {i} " * 3}


def test_any_tfds_dataset_by_name(tmp_path):
  ToyCorpus(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  config = make_config(dataset="toy_corpus", data_dir=str(tmp_path), text_field="sentence", seq_len=16)
  assert sorted(d.decode() for d in sources.documents(config.data, "train")) == \
      sorted(f"sentence number {i} " * 3 for i in range(40))
  evals = list(data.eval_batches(config))  # no validation split: the test split is evaluated
  test_tokens = sum(len(f"sentence number {i} " * 3) + 1 for i in range(40, 45))
  assert sum(b["weights"].sum() for b in evals) == test_tokens - pipeline.window_source(config, "validation").num_windows
  batch = next(data.train_iterator(config))
  assert batch["inputs"].shape == (4, 16)
  with pytest.raises(DataError, match="text_field='text' is not a feature of toy_corpus"):
    data.train_iterator(make_config(dataset="toy_corpus", data_dir=str(tmp_path)))


def test_two_processes_building_at_once(text_files, tmp_path):
  script = ("import logging; from scaling.data import data_config, sources; logging.basicConfig(level='INFO', force=True);"
            f"d = data_config(dataset='files', files={text_files['glob']!r}, data_dir={str(tmp_path)!r});"
            "print(sources.TokenWindows.open(d, 'train').cache.num_tokens)")
  runs = [subprocess.Popen([sys.executable, "-W", "ignore", "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for _ in range(2)]
  outputs = [r.communicate(timeout=120) for r in runs]
  assert [r.returncode for r in runs] == [0, 0], outputs
  assert outputs[0][0] == outputs[1][0] and int(outputs[0][0]) > 0
  assert sum("building dataset" in err for _, err in outputs) == 1  # one built, the other waited
  assert sum("tokenized" in err for _, err in outputs) == 1


def test_a_stopped_tokenizations_leftovers_are_removed_by_the_next(text_files, tmp_path, caplog):
  config = make_config(dataset="files", files=text_files["glob"], data_dir=str(tmp_path))
  path = sources.token_cache(config.data, "train")
  tokens = (Path(path) / "tokens.bin").read_bytes()
  shutil.rmtree(path)  # as a process stopped while it wrote the cache leaves it: its temporary directory alone
  stale = Path(f"{path}.tmp-0123abcd")
  stale.mkdir()
  (stale / "tokens.bin").write_bytes(tokens[:100])
  with caplog.at_level("INFO"):
    assert sources.token_cache(config.data, "train") == path
  assert not stale.exists() and (Path(path) / "tokens.bin").read_bytes() == tokens
  assert f"removing {stale}, left by a tokenization that was stopped" in caplog.messages
  assert glob.glob(f"{path}.tmp-*") == []


def test_tokenization_logs_its_progress_and_a_process_waiting_for_it_says_so(text_files, tmp_path, caplog,
                                                                              monkeypatch):
  monkeypatch.setattr(metrics, "PROGRESS_LOG_S", 0.0)  # a line for every chunk of documents
  config = make_config(dataset="files", files=text_files["glob"], data_dir=str(tmp_path))
  path = sources.token_cache(config.data, "train")
  meta = json.loads((Path(path) / "meta.json").read_text())
  shutil.rmtree(path)
  with open(f"{path}.lock", "a") as held, caplog.at_level("INFO"):
    fcntl.flock(held, fcntl.LOCK_EX)  # another process building the cache
    builder = threading.Thread(target=sources.token_cache, args=(config.data, "train"))
    builder.start()
    waiting = (f"waiting for another process to build the token cache of the train split of text_files (it holds "
               f"{path}.lock)")
    for _ in range(600):
      if waiting in caplog.messages:
        break
      time.sleep(0.1)
    assert waiting in caplog.messages and not os.path.isdir(path)
    fcntl.flock(held, fcntl.LOCK_UN)
    builder.join(timeout=60)
  docs, tokens = meta["num_documents"], meta["num_tokens"]
  assert (f"tokenizing the train split of text_files: {docs:,} of {docs:,} documents (100.0%), {tokens:,} tokens, "
          "about 0 min left") in caplog.messages
  assert json.loads((Path(path) / "meta.json").read_text())["num_tokens"] == tokens


def test_a_stopped_dataset_builds_leftovers_are_removed_by_the_next(tmp_path, caplog):
  """A build stopped by a signal leaves TFDS's temporary directory beside the version's, which TFDS never reads
  nor removes; the next build (under the lock) removes it."""
  files = tmp_path / "texts"
  files.mkdir()
  (files / "a.txt").write_text("some text\n" * 50)
  config = make_config(dataset="files", files=str(files / "*.txt"), data_dir=str(tmp_path / "data"))
  version = Path(sources.builder(config.data).data_dir)
  shutil.rmtree(version)  # as a build stopped part-way leaves it:
  stale = version.parent / f"incomplete.AB12CD_{version.name}"
  stale.mkdir()
  (stale / "files-train.array_record-00000-of-00001").write_bytes(b"partial")
  with caplog.at_level("INFO"):
    assert sources.builder(config.data).is_prepared()
  assert sorted(p.name for p in version.parent.iterdir()) == [version.name]
  assert f"removing {stale}, left by a dataset build that was stopped" in caplog.messages


def test_non_utf8_file_is_warned_and_skipped(text_files, tmp_path, caplog):
  config = make_config(dataset="files", files=text_files["glob"], data_dir=str(tmp_path))
  sources.builder(config.data)
  assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == \
      [f"skipped 1 unreadable or non-UTF-8 file(s) under {text_files['root']}: latin1.txt"]


@pytest.mark.parametrize("fields,message", [
    ({"dataset": "no_such_dataset"}, "config.data.dataset='no_such_dataset': no such dataset"),
    ({"dataset": "lm1b"}, "config.data.dataset='lm1b' is not prepared in .*tfds build lm1b"),
    ({"dataset": "lm1b", "data_dir": "/nonexistent/dir"}, "config.data.data_dir='/nonexistent/dir' does not exist"),
    ({"dataset": "files", "files": ""}, "needs config.data.files"),
    ({"dataset": "files", "files": "/nonexistent/*.txt"}, "config.data.files='/nonexistent/\\*.txt' matches no files"),
    ({"tokenizer": "/nonexistent/tok.model"}, "no such SentencePiece model file"),
])
def test_errors_are_one_line(fields, message, tmp_path):
  config = make_config(**{"data_dir": str(tmp_path), **fields})
  with pytest.raises(DataError, match=message) as error:
    data.train_iterator(config)
  assert "\n" not in str(error.value)


def test_seq_len_longer_than_the_split(files_config):
  with pytest.raises(DataError, match=r"config.data.seq_len=100000 needs 100001 tokens, but the train split"):
    data.train_iterator(files_config(seq_len=100_000))


def test_batch_not_divisible_by_processes():
  with pytest.raises(DataError, match="batch_size=4 must be divisible by the 3 processes"):
    data.train_iterator(make_config(dataset="synthetic", batch_size=4), 0, 3)


def test_one_file_trains_without_evaluation(text_files, tmp_path, caplog):
  config = make_config(dataset="files", files=str(text_files["root"] / "doc00.txt"), data_dir=str(tmp_path),
                       seq_len=8)
  assert next(data.train_iterator(config))["inputs"].shape == (4, 8)
  assert list(data.eval_batches(config)) == []
  assert "has no validation or test split" in caplog.text


def test_short_validation_split_is_one_padded_window(tmp_path):
  held_out, kept = sorted(["a.txt", "b.txt"], key=sources._unit_hash)  # val_fraction ~0 holds out the first
  (tmp_path / held_out).write_text("short")
  (tmp_path / kept).write_text("long " * 100)
  config = make_config(dataset="files", files=str(tmp_path / "*.txt"), data_dir=str(tmp_path / "tfds"),
                       val_fraction=1e-9, seq_len=64)
  [batch] = data.eval_batches(config)
  assert data.get_tokenizer(config.data).decode(batch["inputs"][0]) == "short"
  assert batch["weights"].sum() == len("short") and batch["weights"][1:].sum() == 0  # 5 targets: hort + EOS


def test_jsonl_without_the_text_field(text_files, tmp_path):
  config = make_config(dataset="files", files=str(text_files["root"] / "*.jsonl"), data_dir=str(tmp_path),
                       text_field="body")
  with pytest.raises(DataError, match=r"lines.jsonl:1 is not a JSON object with a 'body' field"):
    data.train_iterator(config)


def test_a_run_records_its_epochs_and_warns_when_it_repeats_its_data(files_config, tmp_path, caplog):
  from scaling import train
  config = files_config(batch_size=32)
  windows = pipeline.window_source(config, "train").num_windows
  assert data.epoch_size(config) == windows and data.epoch_size(make_config(dataset="synthetic")) is None
  steps = windows // 32 + 3  # a little over one pass
  config.train.update(steps=steps, log_every=steps, eval_every=0, progress=False)
  config.checkpoint.every = steps
  with caplog.at_level("INFO", logger="scaling"):
    summary = train.train(config, str(tmp_path))
  passes = steps * 32 / windows
  assert summary["epochs"] == passes and 1 < passes < 1.2
  assert f"training split: {windows:,} sequences a pass; {steps} steps of 32 read {passes:.3g} passes" in caplog.text
  [warning] = [r for r in caplog.records if r.levelname == "WARNING" and "training split" in r.getMessage()]
  assert "reads the training split of text_files/" in warning.getMessage()
  assert f" {passes:.3g} times: a repeated token" in warning.getMessage()
