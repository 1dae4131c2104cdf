"""Segment pairs for BERT's next-sentence prediction: [CLS] A [SEP] B [SEP], padded to seq_len.

A split's documents (its token cache) are cut into consecutive windows of seq_len - 3 tokens, a
document's last window shorter; window i is pair i. Pair i cuts its window at a point drawn uniformly
from 1 .. n - 1: A is the part before the cut; B is the part after it (nsp_label 0), or with
probability 1/2 as many tokens from a random place in another document (nsp_label 1). Every draw is a
function of (seed, split, i), so the pipeline (scaling/data/pipeline.py) shuffles, shards, batches
and checkpoints pair numbers exactly as it does window numbers.
"""

from __future__ import annotations

import numpy as np

from scaling.data import sources
from scaling.data.errors import DataError
from scaling.data.tokenizer import get_tokenizer

_SPLIT_IDS = {"train": 0, "validation": 1}
SPECIALS = 3  # [CLS], [SEP], [SEP] in every pair


class PairSource:
  """A split's segment pairs, numbered 0 .. num_windows - 1 (the pipeline's name for a source's items)."""

  def __init__(self, cache: sources.TokenCache, seq_len: int, seed: int, split: str, tokenizer):
    self.cache, self.seq_len = cache, seq_len
    self.pad_id, self.cls_id, self.sep_id = tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id
    self.entropy = (seed % 2**32, _SPLIT_IDS[split])  # with the pair number: the seed of the pair's draws
    ends = cache.doc_ends()
    starts, lengths = np.concatenate([[0], ends[:-1]]), np.diff(ends, prepend=0) - 1  # without the EOS
    keep = lengths >= 2  # A and B need a token each
    self.doc_starts, self.doc_lengths = starts[keep], lengths[keep]
    self.window = seq_len - SPECIALS
    pairs_per_doc = (self.doc_lengths - 2) // self.window + 1
    self.first_pair = np.cumsum(pairs_per_doc) - pairs_per_doc
    self.num_windows = int(pairs_per_doc.sum())

  @classmethod
  def open(cls, config, split: str) -> PairSource | None:
    """The pairs of `split` ('train' | 'validation'; None: the dataset has no held-out split)."""
    d = config.data
    if d.dataset == "synthetic":
      raise DataError("config.objective='mlm_nsp' pairs segments of documents, which the synthetic dataset"
                      " lacks: set config.data.dataset to pystdlib, files or a TFDS dataset")
    tokenizer = get_tokenizer(d)
    if tokenizer.cls_id is None or tokenizer.sep_id is None:
      raise DataError(f"config.data.tokenizer={d.tokenizer!r} has no [CLS] or [SEP] piece, which segment pairs"
                      " need (train one with: python -m scaling.data.tokenizer train)")
    if d.seq_len < SPECIALS + 2:
      raise DataError(f"config.data.seq_len={d.seq_len} is too short for segment pairs [CLS] A [SEP] B [SEP]:"
                      f" use at least {SPECIALS + 2}")
    path = sources.token_cache(d, split)
    if path is None:
      return None
    source = cls(sources.TokenCache(path), d.seq_len, config.seed, split, tokenizer)
    if source.num_windows == 0:
      raise DataError(f"the {split} split of {d.dataset} has no document of 2 tokens or more to pair")
    return source

  def pair(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Pair i: (A, B, nsp_label), label 0 when B follows A in its document, 1 when B is random."""
    rng = np.random.default_rng((*self.entropy, i))
    doc = np.searchsorted(self.first_pair, i, side="right") - 1
    offset = (i - self.first_pair[doc]) * self.window
    n = min(self.window, self.doc_lengths[doc] - offset)
    start = self.doc_starts[doc] + offset
    cut = start + rng.integers(1, n)
    a = self.cache.tokens[start:cut]
    if rng.random() < 0.5:
      return a, self.cache.tokens[cut:start + n], 0
    num_docs = len(self.doc_starts)
    other = (doc + 1 + rng.integers(max(num_docs - 1, 1))) % num_docs  # itself only when it is the one document
    length = min(start + n - cut, self.doc_lengths[other])
    other_start = self.doc_starts[other] + rng.integers(self.doc_lengths[other] - length + 1)
    return a, self.cache.tokens[other_start:other_start + length], 1

  def examples(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Pairs `indices` (-1 = a padding row) as a batch {'inputs', 'segments': int32[b, seq_len],
    'weights': float32[b, seq_len] (1 at real tokens), 'nsp_label': int32[b, 1]} (2-D like every
    batch field, so that one sharding fits them all)."""
    b = len(indices)
    batch = {"inputs": np.full((b, self.seq_len), self.pad_id, np.int32),
             "segments": np.zeros((b, self.seq_len), np.int32),
             "weights": np.zeros((b, self.seq_len), np.float32), "nsp_label": np.zeros((b, 1), np.int32)}
    for row, i in enumerate(np.asarray(indices)):
      if i < 0:
        continue
      a, second, label = self.pair(int(i))
      tokens = np.concatenate([[self.cls_id], a, [self.sep_id], second, [self.sep_id]])
      batch["inputs"][row, :len(tokens)] = tokens
      batch["segments"][row, len(a) + 2:len(tokens)] = 1
      batch["weights"][row, :len(tokens)] = 1.0
      batch["nsp_label"][row] = label
    return batch
