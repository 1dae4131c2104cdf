"""From a window source to per-process batches: the Grain training iterator and the evaluation pass.

A window source (synthetic.SyntheticWindows, sources.TokenWindows) holds a split as numbered windows
of seq_len + 1 tokens and reads any set of them at once. Training shuffles window numbers with the
seed (a new order every epoch), gives process p every process_count-th of them, batches the numbers
and reads each batch in one vectorised gather. The iterator's state is therefore one integer, and
restoring it yields exactly the next batch. Evaluation walks the split's windows in order.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import sys
from collections.abc import Callable, Iterator

import grain
import numpy as np
from absl import flags

from scaling.data import synthetic
from scaling.data.errors import DataError
from scaling.data.tokenizer import get_tokenizer

log = logging.getLogger("scaling.data")


def window_source(config, split: str):
  """The window source of `split` ('train' | 'validation') of config.data.dataset (None: the dataset
  has no held-out split); for next-sentence prediction, segment pairs (scaling/data/pairs.py)."""
  d = config.data
  if config.objective == "mlm_nsp":
    from scaling.data import pairs
    return pairs.PairSource.open(config, split)
  if d.dataset == "synthetic":
    return synthetic.SyntheticWindows(d.seq_len, config.seed, split)
  from scaling.data import sources  # TFDS is only imported for real data
  return sources.TokenWindows.open(d, split)


def epoch_size(config) -> int | None:
  """How many training examples (windows of seq_len + 1 tokens, or segment pairs) one pass over the
  training split holds; None for an endless source (synthetic). A run reads steps x batch_size of them."""
  return window_source(config, "train").num_windows


def dataset_identity(config) -> str:
  """Which corpus a run reads, down to its version: 'synthetic', or the TFDS dataset, its builder config
  (for pystdlib the Python version and a fingerprint of its files; for files one of their paths, sizes
  and times) and version. A checkpoint keeps it: a run resumes only on the same corpus."""
  d = config.data
  if d.dataset == "synthetic":
    return "synthetic"
  from scaling.data import sources
  ds_builder = sources.builder(d)
  variant = f"/{ds_builder.builder_config.name}" if ds_builder.builder_config else ""
  return f"{ds_builder.name}{variant}:{ds_builder.version}"


def examples(source, indices: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
  """Read windows `indices` (-1 = padding row) as a batch: targets are inputs shifted by one, and a
  target that is padding (past the end of the split) has weight 0."""
  tokens, valid = source.read(np.asarray(indices))
  tokens = np.where(valid, tokens, pad_id).astype(np.int32)
  return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": valid[:, 1:].astype(np.float32)}


def batch_reader(config, source):
  """Window numbers -> a batch: the source's own examples() (segment pairs), else packed windows."""
  if hasattr(source, "examples"):
    return source.examples
  return functools.partial(examples, source, pad_id=get_tokenizer(config.data).pad_id)


def local_batch_size(config, process_count: int) -> int:
  batch = config.train.batch_size
  if batch % process_count:
    raise DataError(f"config.train.batch_size={batch} must be divisible by the {process_count} processes")
  return batch // process_count


def train_iterator(config, process_index: int = 0, process_count: int = 1) -> grain.DatasetIterator:
  """An endless, checkpointable iterator over this process's training batches
  {'inputs', 'targets': int32[b, seq_len], 'weights': float32[b, seq_len]}, b = batch / processes."""
  b = local_batch_size(config, process_count)
  source = window_source(config, "train")
  if source.num_windows is None:  # an endless source: its window numbers need no shuffle
    numbers = grain.MapDataset.range(sys.maxsize)
  else:
    numbers = grain.MapDataset.range(source.num_windows).shuffle(seed=config.seed % 2**32).repeat()
  read = batch_reader(config, source)
  batches = numbers[process_index::process_count].batch(b, drop_remainder=True).map(read)
  d = config.data
  threads = 1 if d.prefetch else 0  # one thread prepares batches while the step runs; a batch is one gather
  ds = batches.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=d.prefetch))
  if d.num_workers:
    if not flags.FLAGS.is_parsed():  # Grain's worker processes read its absl flags; the defaults do
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=d.num_workers,
                                                     per_worker_buffer_size=max(1, d.prefetch)))
  return iter(ds)


@dataclasses.dataclass(frozen=True)
class EvalBatches:
  """A process's batches of the validation split, read in order as they are iterated; len() is their number."""

  count: int
  read: Callable[[int], dict[str, np.ndarray]]  # batch k

  def __len__(self) -> int:
    return self.count

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return map(self.read, range(self.count))


def eval_batches(config, process_index: int = 0, process_count: int = 1) -> EvalBatches:
  """The validation split once, in order, as this process's batches (same format as training).

  Global batch k holds windows k*B .. k*B + B - 1; process p gets rows p*b .. p*b + b - 1 of it.
  Rows past the end of the split are padding with weight 0, so every process yields the same number
  of batches: ceil(windows / B), at most config.train.eval_batches when that is > 0.
  """
  b = local_batch_size(config, process_count)
  batch = config.train.batch_size
  source = window_source(config, "validation")
  if source is None:
    log.warning("config.data.dataset=%r has no validation or test split (too few files, or"
                " config.data.val_fraction=0?): no evaluation", config.data.dataset)
    return EvalBatches(0, dict)
  num_batches = math.ceil(source.num_windows / batch)
  if config.train.eval_batches:
    num_batches = min(num_batches, config.train.eval_batches)
  read = batch_reader(config, source)
  rows = process_index * b + np.arange(b)
  return EvalBatches(num_batches, lambda k: read(np.where(k * batch + rows < source.num_windows, k * batch + rows, -1)))
