"""A seeded synthetic language with learnable structure, for tests and benchmarks.

Tokens are bytes (0..255, the byte tokenizer's vocabulary) drawn from a fixed sparse Markov chain:
every byte has NUM_SUCCESSORS possible successors, taken with SUCCESSOR_PROBS. A uniform guess costs
ln(261) = 5.56 nats per token; the chain's entropy is 1.03 nats, so a small model's loss falls fast.
The chain is the same for every run; config.seed picks the sequences. Window i of a split is a pure
function of (seed, split, i), so the source is infinite, shardable and checkpointable by index.
"""

from __future__ import annotations

import numpy as np

CHAIN_SEED = 20240601  # fixes the chain itself: one task for every run
NUM_SUCCESSORS = 4
SUCCESSOR_PROBS = (0.6, 0.25, 0.1, 0.05)
VALIDATION_WINDOWS = 1024  # size of the held-out split (the train split is infinite)
_SPLIT_IDS = {"train": 0, "validation": 1}


def chain() -> np.ndarray:
  """int[256, NUM_SUCCESSORS]: the successors of every byte, distinct within a row."""
  rng = np.random.default_rng(CHAIN_SEED)
  return np.stack([rng.choice(256, NUM_SUCCESSORS, replace=False) for _ in range(256)])


def entropy() -> float:
  """Nats per token of the chain: the loss a perfect model reaches."""
  p = np.asarray(SUCCESSOR_PROBS)
  return float(-(p * np.log(p)).sum())


class SyntheticWindows:
  """Windows of seq_len + 1 tokens from the chain; see the module docstring."""

  def __init__(self, seq_len: int, seed: int, split: str):
    self.window = seq_len + 1
    self.seed = seed
    self.split_id = _SPLIT_IDS[split]
    self.num_windows = None if split == "train" else VALIDATION_WINDOWS
    self.successors = chain()

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """indices int[b] (-1 = a padding row) -> (tokens int32[b, seq_len + 1], valid bool[b, seq_len + 1])."""
    indices = np.asarray(indices, np.int64)
    counters = np.maximum(indices, 0)[:, None] * self.window + np.arange(self.window)
    u = _uniform(_mix(np.uint64(self.seed * len(_SPLIT_IDS) + self.split_id)) + counters.astype(np.uint64))
    choices = np.searchsorted(np.cumsum(SUCCESSOR_PROBS)[:-1], u[:, 1:], side="right")
    tokens = np.empty(u.shape, np.int32)
    tokens[:, 0] = u[:, 0] * 256
    for t in range(1, self.window):
      tokens[:, t] = self.successors[tokens[:, t - 1], choices[:, t - 1]]
    valid = np.repeat((indices >= 0)[:, None], self.window, axis=1)
    return tokens, valid


def _mix(z: np.ndarray) -> np.ndarray:
  """splitmix64's finaliser: a counter-based generator, so window i needs no sequential state."""
  with np.errstate(over="ignore"):
    z = np.asarray(z, np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(keys: np.ndarray) -> np.ndarray:
  """Uniform floats in [0, 1), one per key."""
  return (_mix(keys) >> np.uint64(11)).astype(np.float64) * 2.0**-53
