"""Data for training and evaluation: datasets (TFDS), tokenizers and the Grain pipeline.

  get_tokenizer(config.data)                     -> tokenizer (vocab_size, eos_id, pad_id, encode, decode)
  train_iterator(config, process_index, count)   -> endless checkpointable iterator of numpy batches
  eval_batches(config, process_index, count)     -> the validation split once, as numpy batches
  dataset_identity(config)                       -> the corpus read, down to its version (for checkpoints)
  epoch_size(config)                             -> training examples in one pass over the split (None: endless)

Datasets (config.data.dataset): 'synthetic' (a seeded Markov chain, no files), 'pystdlib' (the running
Python's standard library, built on first use), 'files' (config.data.files, a glob) or any TFDS
dataset prepared as array_record in config.data.data_dir.
"""

import importlib

from scaling.data.errors import DataError

_LAZY = {"get_tokenizer": "tokenizer", "train_iterator": "pipeline", "eval_batches": "pipeline",
         "dataset_identity": "pipeline", "epoch_size": "pipeline"}


def __getattr__(name: str):
  """Import submodules on first use: `python -m scaling.data.tokenizer` then runs its module once,
  and `import scaling.data` stays cheap."""
  if name in _LAZY:
    return getattr(importlib.import_module(f"scaling.data.{_LAZY[name]}"), name)
  raise AttributeError(f"module 'scaling.data' has no attribute {name!r}")


def data_config(**fields):
  """The data section of configs/base.py with `fields` set (for the data CLIs and tests)."""
  from configs import base
  config = base.get_config().data
  config.update(fields)
  return config


__all__ = ["DataError", "data_config", "dataset_identity", "epoch_size", "eval_batches", "get_tokenizer",
           "train_iterator"]
