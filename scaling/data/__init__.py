"""Data for training and evaluation: datasets (TFDS), tokenizers and the Grain pipeline.

  get_tokenizer(config.data)                     -> tokenizer (vocab_size, eos_id, pad_id, encode, decode)
  train_iterator(config, process_index, count)   -> endless checkpointable iterator of numpy batches
  eval_batches(config, process_index, count)     -> the validation split once, as numpy batches

Datasets (config.data.dataset): 'synthetic' (a seeded Markov chain, no files), 'pystdlib' (the running
Python's standard library, built on first use), 'files' (config.data.files, a glob) or any TFDS
dataset prepared as array_record in config.data.data_dir.
"""

from scaling.data.errors import DataError
from scaling.data.pipeline import eval_batches, train_iterator
from scaling.data.tokenizer import get_tokenizer


def data_config(**fields):
  """The data section of configs/base.py with `fields` set (for the data CLIs)."""
  from configs import base
  config = base.get_config().data
  config.update(fields)
  return config


__all__ = ["DataError", "data_config", "eval_batches", "get_tokenizer", "train_iterator"]
