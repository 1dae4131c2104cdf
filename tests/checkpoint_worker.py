"""The subprocess side of tests/test_checkpoint.py, and the helpers both sides share.

  python tests/checkpoint_worker.py WORKDIR MESH[:STOP] [MESH[:STOP] ...]

runs the tests' run in WORKDIR once per argument, one after the other in this process, on MESH
('fsdp=8', 'data=2,tensor=4'; the devices come from the test's XLA_FLAGS), sending itself SIGTERM as
batch STOP is read: a preemption at exactly step STOP. Prints the exit codes as a JSON list (those of
`python -m scaling.train`: 0 done, 75 preempted).
"""

import json
import os
import signal
import sys

from scaling import config as config_lib
from scaling import data, sharding, train

STEPS = 10
RUN = {"data.dataset": "synthetic", "data.seq_len": 32, "model.vocab_multiple": 8, "train.batch_size": 8,
       "train.steps": STEPS, "train.log_every": 1, "train.eval_every": 0, "train.eval_batches": 2,
       "train.progress": False, "optim.warmup_steps": 2, "checkpoint.every": 3}


def load(**overrides):
  """The tests' run: configs/base.py's model (vocabulary padded to 264, which tensor=4 divides), the
  synthetic data, short sequences, every step logged, a checkpoint every 3 steps."""
  return config_lib.load("configs/base.py", {**RUN, **overrides})


def argv(workdir, **overrides) -> list[str]:
  """The command-line arguments of the tests' run."""
  return ["--config=configs/base.py", f"--workdir={workdir}",
          *(f"--config.{k}={v}" for k, v in {**RUN, **overrides}.items())]


class Batches:
  """A training iterator that, as each batch numbered in `at` (from 1) is read, sends this process
  `signum` or, with signum=None, makes the batch's weights NaN (so the step's loss and gradients)."""

  def __init__(self, iterator, at, signum=None):
    self.iterator, self.at, self.signum, self.read = iterator, set(at), signum, 0

  def __iter__(self):
    return self

  def __next__(self):
    batch = next(self.iterator)
    self.read += 1
    if self.read in self.at:
      if self.signum is None:
        batch = {**batch, "weights": batch["weights"] * float("nan")}
      else:
        os.kill(os.getpid(), self.signum)
    return batch

  def get_state(self):
    return self.iterator.get_state()

  def set_state(self, state):
    self.iterator.set_state(state)


def patch_batches(set_attr, at, signum=None) -> None:
  """Make train() read its batches through Batches(..., at, signum); `set_attr` is setattr or
  pytest's monkeypatch.setattr."""
  make = data.train_iterator
  set_attr(data, "train_iterator", lambda *args: Batches(make(*args), at, signum))


def main(workdir: str, phases: list[str]) -> None:
  make, codes = data.train_iterator, []
  for phase in phases:
    mesh, _, stop = phase.partition(":")
    data.train_iterator = make
    if stop:
      patch_batches(setattr, [int(stop)], signal.SIGTERM)
    axes = dict(a.split("=") for a in mesh.split(","))
    codes.append(train.main(argv(workdir, **{f"mesh.{a}": axes.get(a, 1) for a in sharding.MESH_AXES})))
  print(json.dumps(codes))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2:])
