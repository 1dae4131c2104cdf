"""Datasets as TFDS array_record files, and their token caches.

  'pystdlib'  the running Python's standard library (*.py, site-packages excluded), built on first use
  'files'     config.data.files, a glob of .txt/.py/.md (one document per file) and .jsonl (one per line)
  any other   a TFDS dataset prepared as array_record in data_dir (tfds build NAME --file_format=array_record)

Both built-in datasets split by file: a file is in 'validation' when the hash of its path relative to
the root falls below config.data.val_fraction (at least one file, given two). A split is tokenized once
per tokenizer into a token cache: one stream doc EOS doc EOS ... (uint16/uint32) plus the document
ends; the training windows are slices of that stream, so the loader's speed does not depend on the
tokenizer. Builds take a file lock and write to a temporary name first, so concurrent processes are safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import functools
import hashlib
import io
import itertools
import json
import logging
import math
import os
import shutil
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator

import grain
import numpy as np
import tensorflow_datasets as tfds

from scaling import metrics
from scaling.data.errors import DataError
from scaling.data.tokenizer import get_tokenizer, token_dtype

log = logging.getLogger("scaling.data")
tfds.display_progress_bar(False)  # builds report in one log line each instead
EVAL_SPLITS = ("validation", "test")  # the first one a dataset has is evaluated
_READ_CHUNK = 1024  # documents read and tokenized at a time when building a token cache


def data_dir(data_config) -> str:
  return os.path.expanduser(data_config.data_dir or os.environ.get("SCALING_DATA_DIR")
                            or "~/.cache/scaling/tfds")


@contextlib.contextmanager
def _locked(path: str, what: str):
  """Hold an exclusive lock on `path` (created if need be): one builder of `what` at a time; a process that
  must wait says so."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      log.info("waiting for another process to build %s (it holds %s)", what, path)
      fcntl.flock(f, fcntl.LOCK_EX)
    yield


@contextlib.contextmanager
def _quiet():
  """Silence TFDS's banners and its absl warnings about custom configs and unprepared folders."""
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    absl_logger.setLevel(level)


# ---------------------------------------------------------------------------------------------------
# The built-in datasets: local text files as a TFDS dataset.

def _unit_hash(text: str) -> float:
  return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def validation_files(paths: list[str], val_fraction: float) -> set[str]:
  """The relative paths held out: hash below val_fraction; at least one when there are two or more."""
  held_out = {p for p in paths if _unit_hash(p) < val_fraction}
  if not held_out and val_fraction > 0 and len(paths) > 1:
    held_out = {min(paths, key=_unit_hash)}
  return held_out


@dataclasses.dataclass(eq=False)
class TextFilesConfig(tfds.core.BuilderConfig):
  """Which files (relative to root) make the dataset; `name` fingerprints all of it."""
  root: str = ""
  paths: tuple[str, ...] = ()
  text_field: str = "text"
  val_fraction: float = 0.01


def _read_text(path: str) -> str | None:
  """The file as text, or None when it is unreadable or not UTF-8."""
  try:
    with open(path, "rb") as f:
      return f.read().decode("utf-8")
  except (OSError, UnicodeDecodeError):
    return None


class TextFiles(tfds.core.GeneratorBasedBuilder):
  """Documents from local files: one per .txt/.py/.md file, one per line of a .jsonl file."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({"text": tfds.features.Text(), "path": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    c = self.builder_config
    readable = [p for p in c.paths if _read_text(os.path.join(c.root, p)) is not None]
    if skipped := sorted(set(c.paths) - set(readable)):
      log.warning("skipped %d unreadable or non-UTF-8 file(s) under %s: %s%s", len(skipped), c.root,
                  ", ".join(skipped[:5]), " ..." if len(skipped) > 5 else "")
    held_out = validation_files(readable, c.val_fraction)
    train = [p for p in readable if p not in held_out]
    if not train:
      raise DataError(f"no readable UTF-8 text to train on among the {len(c.paths)} file(s) under {c.root}")
    splits = {"train": train, "validation": sorted(held_out)}
    return {name: self._generate_examples(paths) for name, paths in splits.items() if paths}

  def _generate_examples(self, paths):
    c = self.builder_config
    for path in paths:
      text = _read_text(os.path.join(c.root, path))
      if not path.endswith(".jsonl"):
        yield path, {"text": text, "path": path}
        continue
      for line_number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
          continue
        try:
          document = json.loads(line)[c.text_field]
          if not isinstance(document, str):
            raise TypeError
        except (ValueError, KeyError, TypeError):
          raise DataError(f"{os.path.join(c.root, path)}:{line_number} is not a JSON object with a"
                          f" {c.text_field!r} field (set config.data.text_field)") from None
        yield f"{path}:{line_number}", {"text": document, "path": path}


class Pystdlib(TextFiles):
  """The source of the running Python's standard library: every machine has it, no download."""


def _fingerprint(*parts) -> str:
  return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _pystdlib_config(data_config) -> TextFilesConfig:
  root = sysconfig.get_paths()["stdlib"]
  paths = []
  for directory, subdirs, names in os.walk(root):
    subdirs[:] = sorted(s for s in subdirs if s not in ("site-packages", "dist-packages", "__pycache__"))
    paths += [os.path.relpath(os.path.join(directory, n), root) for n in sorted(names) if n.endswith(".py")]
  sizes = [os.path.getsize(os.path.join(root, p)) for p in paths]
  version = "{}.{}.{}".format(*sys.version_info[:3])
  return TextFilesConfig(name=f"py{version}-{_fingerprint(paths, sizes, data_config.val_fraction)}",
                         description=f"Python {version} standard library", root=root, paths=tuple(paths),
                         val_fraction=data_config.val_fraction)


def _glob_root(pattern: str) -> str:
  """The directory part of a glob before its first wildcard: paths are taken relative to it."""
  parts = pattern.split(os.sep)
  fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts) - 1)
  return os.sep.join(parts[:fixed]) or ("/" if pattern.startswith("/") else ".")


def _files_config(data_config) -> TextFilesConfig:
  pattern = os.path.abspath(os.path.expanduser(data_config.files)) if data_config.files else ""
  if not pattern:
    raise DataError("config.data.dataset='files' needs config.data.files, a glob such as 'notes/**/*.md'")
  root = _glob_root(pattern)
  paths = sorted(os.path.relpath(p, root) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
  if not paths:
    raise DataError(f"config.data.files={data_config.files!r} matches no files")
  stats = [(st.st_size, st.st_mtime_ns) for st in (os.stat(os.path.join(root, p)) for p in paths)]
  name = _fingerprint(root, paths, stats, data_config.text_field, data_config.val_fraction)
  return TextFilesConfig(name=name, description=pattern, root=root, paths=tuple(paths),
                         text_field=data_config.text_field, val_fraction=data_config.val_fraction)


def _remove_stale(pattern: str, what: str) -> None:
  """Remove the directories matching `pattern` that a stopped `what` left; called under the build's lock, so
  none is in use."""
  for stale in glob.glob(pattern):
    log.info("removing %s, left by a %s that was stopped", stale, what)
    shutil.rmtree(stale, ignore_errors=True)


def _build_text_files(cls, config: TextFilesConfig, directory: str) -> tfds.core.DatasetBuilder:
  """The prepared builder of `config`, building it first (under a lock) if no process has."""
  def make():
    with _quiet():
      made = cls(data_dir=directory, config=config, file_format="array_record")
      return made, made.is_prepared()
  builder, prepared = make()
  if prepared:
    return builder
  with _locked(os.path.join(directory, "locks", f"{builder.name}-{config.name}.lock"), f"dataset {builder.name}"):
    builder, prepared = make()  # another process may have built it while this one waited
    if not prepared:
      parent, version = os.path.split(os.fspath(builder.data_dir))  # TFDS builds into parent/incomplete.*_version
      _remove_stale(os.path.join(glob.escape(parent), f"incomplete.*_{glob.escape(version)}"), "dataset build")
      start = time.time()
      log.info("building dataset %s (%d files under %s) into %s", builder.name, len(config.paths),
               config.root, builder.data_dir)
      with _quiet():
        builder.download_and_prepare()
      log.info("built %s in %.1fs", builder.name, time.time() - start)
  return make()[0]


def _catalog_builder(data_config, directory: str) -> tfds.core.DatasetBuilder:
  name = data_config.dataset
  if not os.path.isdir(directory) and "://" not in directory:
    raise DataError(f"config.data.data_dir={directory!r} does not exist (the TFDS data_dir holding {name})")
  try:
    with _quiet():
      builder = tfds.builder(name, data_dir=directory)
      prepared = builder.is_prepared()
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(f"config.data.dataset={name!r}: no such dataset in the TFDS catalog or in {directory}"
                    " (built-ins: synthetic, pystdlib, files)") from None
  build = f"tfds build {name} --data_dir={directory} --file_format=array_record"
  if not prepared:
    raise DataError(f"config.data.dataset={name!r} is not prepared in {directory}; prepare it with `{build}`")
  if builder.info.file_format != tfds.core.file_adapters.FileFormat.ARRAY_RECORD:
    raise DataError(f"config.data.dataset={name!r} in {directory} is stored as {builder.info.file_format.value},"
                    f" but the loader reads array_record; rebuild it with `{build}`")
  if data_config.text_field not in builder.info.features:
    raise DataError(f"config.data.text_field={data_config.text_field!r} is not a feature of {name}"
                    f" (features: {', '.join(builder.info.features)})")
  return builder


_BUILT_IN = {
    "pystdlib": lambda d, directory: _build_text_files(Pystdlib, _pystdlib_config(d), directory),
    "files": lambda d, directory: _build_text_files(TextFiles, _files_config(d), directory),
}


def builder(data_config) -> tfds.core.DatasetBuilder:
  """The prepared TFDS builder of config.data.dataset (the built-in ones are built on first use)."""
  make = _BUILT_IN.get(data_config.dataset, _catalog_builder)
  return make(data_config, data_dir(data_config))


def split_name(ds_builder: tfds.core.DatasetBuilder, split: str) -> str | None:
  """'train' (which must exist), or for 'validation' the first of EVAL_SPLITS the dataset has (None: none)."""
  available = ds_builder.info.splits
  if split != "train":
    return next((s for s in EVAL_SPLITS if s in available), None)
  if "train" not in available:
    raise DataError(f"dataset {ds_builder.name} has no train split; it has: {', '.join(available) or 'none'}")
  return "train"


def _document_chunks(ds_builder: tfds.core.DatasetBuilder, data_config, split: str) -> Iterator[list[bytes]]:
  """The raw documents (UTF-8 bytes) of the dataset's split named `split`, in storage order, in chunks."""
  source = ds_builder.as_data_source(split)
  field = "text" if isinstance(ds_builder, TextFiles) else data_config.text_field
  for start in range(0, len(source), _READ_CHUNK):
    yield [record[field] for record in source.__getitems__(range(start, min(start + _READ_CHUNK, len(source))))]


def documents(data_config, split: str) -> Iterator[bytes]:
  """The raw documents (UTF-8 bytes) of `split` ('train' | 'validation'), in storage order."""
  ds_builder = builder(data_config)
  name = split_name(ds_builder, split)
  return itertools.chain.from_iterable(_document_chunks(ds_builder, data_config, name) if name else ())


# ---------------------------------------------------------------------------------------------------
# Token caches: a split tokenized once into one stream.

def _cache_root(directory: str) -> str:
  """Token caches live beside the TFDS data when that is local, else in the local cache."""
  if "://" in directory:
    return os.path.expanduser("~/.cache/scaling/tokens")
  return os.path.join(directory, "tokens")


def _write_tokens(chunks: Iterator[list[bytes]], tokenizer, path: str, progress: metrics.WorkProgress) -> None:
  """Tokenize documents into `path`/{tokens.bin, doc_ends.npy, meta.json}, atomically."""
  start = time.time()
  tmp = f"{path}.tmp-{uuid.uuid4().hex}"
  os.makedirs(tmp)
  dtype = token_dtype(tokenizer.vocab_size)
  ends, total = [], 0
  with open(os.path.join(tmp, "tokens.bin"), "wb") as out:
    try:
      for chunk in chunks:
        for ids in tokenizer.encode_batch(chunk):
          out.write(np.append(ids, tokenizer.eos_id).astype(dtype).tobytes())
          total += len(ids) + 1
          ends.append(total)
        progress.update(len(ends), f"{total:,} tokens")
    finally:
      progress.close()
  np.save(os.path.join(tmp, "doc_ends.npy"), np.asarray(ends, np.int64))
  with open(os.path.join(tmp, "meta.json"), "w") as f:
    json.dump({"num_tokens": total, "num_documents": len(ends), "dtype": dtype.name,
               "tokenizer": tokenizer.key, "seconds": time.time() - start}, f)
  os.rename(tmp, path)
  log.info("tokenized %d documents, %d tokens (%s) in %.1fs into %s", len(ends), total, tokenizer.key,
           time.time() - start, path)


def token_cache(data_config, split: str) -> str | None:
  """The directory of `split`'s token cache for config.data.tokenizer, built if need be (None: the
  dataset has no such split)."""
  ds_builder = builder(data_config)
  tokenizer = get_tokenizer(data_config)
  split = split_name(ds_builder, split)
  if split is None:
    return None
  dataset_id = hashlib.sha256(str(ds_builder.data_path).encode()).hexdigest()[:12]
  path = os.path.join(_cache_root(data_dir(data_config)), f"{ds_builder.name}-{dataset_id}-{split}-{tokenizer.key}")
  if not os.path.isdir(path):
    what = f"the {split} split of {ds_builder.name}"
    with _locked(f"{path}.lock", f"the token cache of {what}"):
      if not os.path.isdir(path):
        _remove_stale(f"{glob.escape(path)}.tmp-*", "tokenization")
        _write_tokens(_document_chunks(ds_builder, data_config, split), tokenizer, path,
                      metrics.WorkProgress(f"tokenizing {what}", ds_builder.info.splits[split].num_examples,
                                           "documents"))
  return path


class TokenCache:
  """A split's tokens on disk: the stream (memory-mapped on first use) and where each document ends."""

  def __init__(self, path: str):
    self.path = path
    with open(os.path.join(path, "meta.json")) as f:
      meta = json.load(f)
    self.num_tokens, self.dtype = meta["num_tokens"], np.dtype(meta["dtype"])
    self._tokens = None

  @property
  def tokens(self) -> np.ndarray:
    if self._tokens is None:  # opened lazily, so that pickling (to Grain workers) ships only the path
      self._tokens = np.memmap(os.path.join(self.path, "tokens.bin"), self.dtype, mode="r")
    return self._tokens

  def __getstate__(self):
    return {**self.__dict__, "_tokens": None}

  def doc_ends(self) -> np.ndarray:
    """int64[documents]: the stream offset just past each document's EOS."""
    return np.load(os.path.join(self.path, "doc_ends.npy"))


class TokenWindows:
  """A split's token stream cut into consecutive windows of seq_len + 1 tokens; the last window is
  padded, so an epoch of windows holds every token exactly once."""

  def __init__(self, cache: TokenCache, seq_len: int):
    self.cache = cache
    self.window = seq_len + 1
    self.num_windows = math.ceil(cache.num_tokens / self.window)

  @classmethod
  def open(cls, data_config, split: str) -> TokenWindows | None:
    """The windows of `split` (None: the dataset has no held-out split); a training split must fill
    one window, a held-out split may be shorter (its one window is padded)."""
    path = token_cache(data_config, split)
    if path is None:
      return None
    cache = TokenCache(path)
    if split == "train" and cache.num_tokens < data_config.seq_len + 1:
      raise DataError(f"config.data.seq_len={data_config.seq_len} needs {data_config.seq_len + 1} tokens, but"
                      f" the {split} split of {data_config.dataset} has {cache.num_tokens}; lower seq_len or add data")
    return cls(cache, data_config.seq_len)

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """indices int[b] (-1 = a padding row) -> (tokens int32[b, seq_len + 1], valid bool[b, seq_len + 1])."""
    positions = indices[:, None] * self.window + np.arange(self.window)
    valid = (indices[:, None] >= 0) & (positions < self.cache.num_tokens)
    return self.cache.tokens[np.where(valid, positions, 0)].astype(np.int32), valid


def tokenized_documents(data_config, split: str) -> grain.MapDataset:
  """The split's documents as token arrays (without their EOS), in storage order: the input of
  objectives that need document boundaries (e.g. BERT's segments)."""
  cache = TokenCache(token_cache(data_config, split))
  ends = cache.doc_ends()
  starts = np.concatenate([[0], ends[:-1]])
  return grain.MapDataset.range(len(ends)).map(functools.partial(_document, cache, starts, ends))


def _document(cache: TokenCache, starts: np.ndarray, ends: np.ndarray, i: int) -> np.ndarray:
  return np.asarray(cache.tokens[starts[i]:ends[i] - 1], np.int32)
