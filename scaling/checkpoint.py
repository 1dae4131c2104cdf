"""Checkpoints under workdir/checkpoints (orbax): periodic saves, resume, preemption, export.

A checkpoint at step S holds all that continuing exactly needs, one orbax item each:
  state  parameters, optimizer state and step, restored against Trainer.abstract_state(): its shardings
         lay the arrays out, so a run resumes on another mesh or device count just as on the same one
  data   the training iterator's state after S batches (JSON)
  meta   the resolved config, time spent so far, the skipped-step count, the last train metrics logged and
         the metrics of the steps since (the next record averages them too), and a checksum of each array
         of the state (JSON)
There is no RNG state to save: dropout keys derive from (config.seed, step) inside the step. A run
resumes only with the config it was saved with, up to the fields in RESUMABLE.

Orbax writes a step into `S.orbax-checkpoint-tmp` and renames it when every item is written, so a
run killed mid-save leaves no directory that looks complete; `all_steps()` ignores the remains, and
the next start deletes them. A complete-looking step that does not read back (truncated or corrupt
files) is reported in one line, moved aside to `S.unreadable-<time>`, and the step before it used. So is
one whose arrays read back with other values than were saved (a bit flipped on disk or in transit, which
orbax's compressed files mostly do not detect): meta holds a checksum of every array (fingerprints), and a
restore recomputes them.

  python -m scaling.checkpoint verify --workdir W

reads every checkpoint of a workdir back (say, after copying it) and checks it against its checksums, a
line per step; it exits with 1 when one does not read back as saved.

  python -m scaling.checkpoint export --workdir W --out DIR [--step S]

writes the parameters alone (DIR/params, orbax), the resolved config (DIR/config.json) and the
parameters' checksums (DIR/fingerprints.json); `load_params(DIR, trainer)` checks and places them for
evaluation or fine-tuning.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax import lax
from jax.experimental import multihost_utils

from scaling import optim
from scaling.errors import UserError

log = logging.getLogger("scaling")
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the run stopped early, saved, and continues when started again


class CheckpointError(UserError):
  """A workdir whose checkpoints do not fit this run, or an export that cannot be written or read."""


class ChangedAfterSave(ValueError):
  """A checkpoint's arrays read back with other values than were saved (their fingerprints differ)."""


class Preempted(Exception):
  """SIGTERM or SIGINT stopped the run at a step boundary, after a checkpoint of that step."""


def _handlers() -> dict:
  return {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
          "meta": ocp.JsonCheckpointHandler()}


@contextlib.contextmanager
def _reads_settle():
  """Within this context, a failed restore leaves no reads behind. Orbax runs a restore on an event loop
  of its own (asyncio_utils.run_sync), reading every array at once (asyncio.gather), and closes that loop
  as soon as the restore returns or raises, its pending tasks with it. When an array does not read back
  (a corrupt checkpoint), gather raises at once, and the other arrays' reads, still in flight, are left
  on the closed loop: whenever the garbage collector finds them, Python reports each ("coroutine
  '_read_array_index_and_device_put' was never awaited", "Exception ignored in ...", "Event loop is
  closed") on stderr. Here the loops made settle their tasks before closing, as asyncio.run's do, but by
  letting the abandoned step's reads finish (or fail): no more than its restore would have read."""
  policy = asyncio.get_event_loop_policy()  # asyncio.new_event_loop() asks it for each loop
  own = vars(policy).get("new_event_loop")  # an instance attribute to put back, if any
  make = policy.new_event_loop

  def new_event_loop():
    loop = make()
    close = loop.close

    def settle_then_close():
      interrupted = isinstance(sys.exc_info()[1], (KeyboardInterrupt, SystemExit))  # then stop at once
      pending = () if interrupted or loop.is_closed() or loop.is_running() else asyncio.all_tasks(loop)
      if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
      close()

    loop.close = settle_then_close
    return loop

  policy.new_event_loop = new_event_loop
  try:
    yield
  finally:
    if own is None:
      del policy.new_event_loop
    else:
      policy.new_event_loop = own


@contextlib.contextmanager
def _absl_quiet():
  """Within this context, orbax's own logging (through absl) is silent: on a checkpoint that does not
  read back, or lacks a metadata file it can do without, it warns of missing files and handlers, where
  our one line (or nothing) says what happened."""
  absl = logging.getLogger("absl")
  level = absl.level
  absl.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    absl.setLevel(level)


def _first_line(error: BaseException) -> str:
  """The first line of the root cause (orbax wraps a read's error in one that prints the whole
  TensorStore spec, a bound method's repr first)."""
  while error.__cause__ is not None:
    error = error.__cause__
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _fingerprint(x: jax.Array) -> jax.Array:
  """A uint32 checksum of x's bits: the sum of each element's bits times an odd weight (2i + 1, i its index
  in x flattened) modulo 2^32. Any change to one element changes it (an odd weight is invertible modulo
  2^32), and it is the same on any mesh: a sum of integers does not depend on its order."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  bits = lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}")).astype(jnp.uint32)
  index, stride = jnp.zeros(x.shape, jnp.uint32), 1
  for axis in reversed(range(x.ndim)):  # the flat index from per-axis iotas, which shard like x
    index += lax.broadcasted_iota(jnp.uint32, x.shape, axis) * np.uint32(stride % 2**32)
    stride *= x.shape[axis]
  return jnp.sum(bits * (2 * index + 1), dtype=jnp.uint32)


_fingerprints = jax.jit(lambda tree: jax.tree.map(_fingerprint, tree))


def fingerprints(tree) -> dict[str, int]:
  """{'params/blocks/0/attn/q/kernel': checksum, ...} of the arrays of `tree` (see _fingerprint), computed
  where the arrays lie."""
  return {"/".join(k): int(v) for k, v in ocp.tree.to_flat_dict(jax.device_get(_fingerprints(tree))).items()}


def check_fingerprints(tree, saved: dict | None) -> None:
  """Raise ChangedAfterSave when an array of `tree` has another fingerprint than `saved` records for it
  (checkpoints saved before fingerprints were recorded have none: nothing to check)."""
  if not saved:
    return
  now = fingerprints(tree)
  changed = [k for k in now if k in saved and now[k] != saved[k]]
  if changed:
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    raise ChangedAfterSave(f"{changed[0]}{more} read back with other values than were saved (their checksums "
                           "differ): the files were damaged or changed after the save")


def check_same_shapes(saved_tree, target, saved_config: dict, config, where: str,
                      fix: str = "use a fresh --workdir, or the config and version it was saved with") -> None:
  """Raise a one-line CheckpointError, ending in `fix`, when the arrays of `saved_tree` (orbax metadata)
  and `target` differ in name or shape, naming the model fields that differ and one such array."""
  saved = {"/".join(k): tuple(v.shape) for k, v in ocp.tree.to_flat_dict(saved_tree).items()}
  wanted = {"/".join(k): tuple(v.shape) for k, v in ocp.tree.to_flat_dict(target).items()}
  if saved == wanted:
    return
  differ = sorted(set(saved) ^ set(wanted)) or sorted(k for k in saved if saved[k] != wanted[k])
  model = any(not k.startswith("opt_state") for k in differ)  # else only the optimizer state's layout
  section = "model" if model else "optim"
  fields = [f"{section}.{k}={v!r} there, {config[section][k]!r} here"
            for k, v in sorted(saved_config[section].items()) if k in config[section] and config[section][k] != v]
  fields.append(f"{differ[0]}: {saved.get(differ[0], 'absent')} there, {wanted.get(differ[0], 'absent')} here")
  what = ("a different model" if model else
          "optimizer state of another layout (another optim config, or an older scaling)")
  raise CheckpointError(f"{where} holds {what} ({'; '.join(fields)}); {fix}")


# The config fields a run may resume with changed; every other field decides which tokens a step sees
# or what it computes (and so the run's D, C and losses) and must be as saved:
#   bookkeeping: the family and size labels; train.steps (never below the checkpoint's step, nor changing the
#     learning rates of the steps trained: check_same_schedule); how often
#     it logs, evaluates and saves, and how much it evaluates (train.log_every, eval_every, eval_batches,
#     progress, checkpoint.*); where the data lies and how it is loaded (data.data_dir, num_workers, prefetch)
#   how a step is laid out and executed: mesh.*, distributed.*, model.attention, remat, scan_unroll,
#     logits_chunk, optim.accum_steps (the same step on other devices or in pieces, up to rounding and,
#     with accumulation, other dropout and masking draws), so that it fits the devices it resumes on
#   optim.lr: lowered to resume a diverged run, as NonFiniteLoss's message advises
RESUMABLE = ("family", "size", "train.steps", "train.log_every", "train.eval_every", "train.eval_batches",
             "train.progress", "checkpoint.*", "data.data_dir", "data.num_workers", "data.prefetch", "mesh.*",
             "distributed.*", "model.attention", "model.remat", "model.scan_unroll", "model.logits_chunk",
             "optim.accum_steps", "optim.lr")


def _flat(tree: dict, prefix: str = "") -> dict:
  """Nested dicts -> {'section.field': value}."""
  flat = {}
  for k, v in tree.items():
    flat.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
  return flat


def _unread(dataset: str) -> set[str]:
  """The data fields that `dataset` does not read: changing them changes no token."""
  unread = set() if dataset == "files" else {"data.files"}
  if dataset in ("pystdlib", "synthetic"):
    unread.add("data.text_field")
  if dataset == "synthetic":
    unread.add("data.val_fraction")
  return unread


def check_same_schedule(saved_config: dict, config, step: int, where: str) -> None:
  """Raise a one-line CheckpointError when another train.steps changes the learning-rate schedule, relative
  to its peak (optim.lr may be lowered), of the `step` steps already trained: cosine and linear decay over
  train.steps, so a longer run would have trained differently; constant, and wsd before its decay, do not."""
  saved = ml_collections.ConfigDict(saved_config)
  if saved.train.steps == config.train.steps:
    return
  steps = np.arange(step)
  before = np.asarray(optim.schedule(saved)(steps)) / saved.optim.lr
  here = np.asarray(optim.schedule(config)(steps)) / config.optim.lr
  differ = np.flatnonzero(~np.isclose(before, here, rtol=1e-5, atol=1e-9))
  if differ.size:
    k = int(differ[0])
    raise CheckpointError(
        f"{where}: train.steps={saved.train.steps} there, {config.train.steps} here changes the {config.optim.schedule} "
        f"learning-rate schedule of the steps already trained (step {k}: {before[k]:.4g} x lr there, {here[k]:.4g} x "
        "lr here), so the run would not be the one its summary describes; keep train.steps, or use a fresh --workdir "
        "(a schedule that allows longer runs: optim.schedule=wsd, resumed before its decay)")


def check_same_run(saved_config: dict, config, where: str) -> None:
  """Raise a one-line CheckpointError naming every field outside RESUMABLE whose value in `config`
  differs from `saved_config` (fields only one of them has, from another version, are not compared, nor
  data fields the dataset does not read)."""
  saved, here = _flat(saved_config), _flat(config.to_dict())
  resumable = lambda k: any(k == r or (r.endswith("*") and k.startswith(r[:-1])) for r in RESUMABLE)
  unread = _unread(config.data.dataset)
  differ = [f"{k}={saved[k]!r} there, {here[k]!r} here" for k in sorted(saved.keys() & here.keys())
            if saved[k] != here[k] and not resumable(k) and k not in unread]
  if differ:
    raise CheckpointError(f"{where} was saved by a run of another config ({'; '.join(differ)}); "
                          "use a fresh --workdir, or the values it was saved with")


class Checkpoints:
  """workdir/checkpoints: saves every `checkpoint.every` steps and at the end, keeps the last
  `checkpoint.keep`, resumes from the newest readable step. Without a config, read-only (export)."""

  def __init__(self, workdir: str, config=None, dataset: str = ""):
    self.directory = Path(workdir).absolute() / "checkpoints"
    self.config, self.dataset = config, dataset  # dataset: data.dataset_identity, which a resume must match
    k = config.checkpoint if config is not None else None
    if k is not None and jax.process_index() == 0:
      for partial in sorted(self.directory.glob("*.orbax-checkpoint-tmp*")):  # the manager deletes them
        log.warning("%s is an incomplete checkpoint (its save was cut short): ignored and removed", partial)
    options = ocp.CheckpointManagerOptions(
        read_only=k is None, max_to_keep=k and k.keep, enable_async_checkpointing=bool(k and k.async_save),
        cleanup_tmp_directories=k is not None, save_root_metadata=False)
    with _absl_quiet():  # a step without its _CHECKPOINT_METADATA is warned of, though it reads back
      self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=_handlers())

  def due(self, step: int) -> bool:
    every = self.config.checkpoint.every
    return step == self.config.train.steps or bool(every and step % every == 0)

  def latest(self) -> str:
    """The newest checkpoint saved, for messages."""
    self.manager.wait_until_finished()
    step = self.manager.latest_step()
    return "none" if step is None else f"step {step} ({self.directory / str(step)})"

  def save(self, step: int, state, data_state: dict, meta: dict, wait: bool = False) -> None:
    """Save (in the background when checkpoint.async_save, unless `wait`). The iterator's state must
    be taken after exactly `step` batches: `data_state` is written as given."""
    meta = {**meta, "fingerprints": fingerprints(state)}
    with self._writing():
      self.manager.save(step, force=True, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state), meta=ocp.args.JsonSave(meta)))
      if wait:
        self.manager.wait_until_finished()

  def check(self) -> None:
    """Raise the CheckpointError of a background save that failed (a full disk), without waiting for one."""
    with self._writing():
      self.manager.check_for_errors()

  @contextlib.contextmanager
  def _writing(self):
    """A save that fails (no space left, no permission) ends the run in one line naming the last complete one."""
    try:
      yield
    except (OSError, ValueError, RuntimeError) as e:  # tensorstore reports a full disk as a ValueError
      with contextlib.suppress(Exception):  # let an earlier save in flight finish: it may be the last complete one
        self.manager.wait_until_finished()
      complete = sorted(int(p.name) for p in self.directory.glob("*") if p.name.isdigit())
      last = f"step {complete[-1]}" if complete else "none"
      raise CheckpointError(f"a checkpoint could not be written in {self.directory} ({_first_line(e)}); last complete "
                            f"checkpoint: {last}; fix the cause and rerun the same command to resume from it") from None

  def saved(self, step: int):
    """(meta, the state's array metadata tree) of `step`, read without reading the arrays."""
    meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    state = self.manager.item_metadata(step)["state"]
    if state is None:
      raise ValueError(f"{self.directory / str(step) / 'state'} has no readable metadata")
    return meta, state.tree

  def newest(self, read, steps=None):
    """(step, read(step)) for the newest of `steps` (default: all) that reads back, or None. A failure
    other than a CheckpointError is reported in one line and the step before tried; returns the failed
    steps too."""
    failed, steps = [], list(reversed(self.manager.all_steps() if steps is None else steps))
    for i, step in enumerate(steps):
      try:
        with _reads_settle(), _absl_quiet():
          return (step, read(step)), failed
      except CheckpointError:
        raise
      except Exception as e:  # orbax and tensorstore raise many kinds on truncated or corrupt files
        log.warning("checkpoint at step %d in %s is unreadable (%s)%s", step, self.directory, _first_line(e),
                    "; trying the one before it" if i + 1 < len(steps) else "")
        failed.append(step)
    return None, failed

  def resume(self, trainer, iterator):
    """Restore the newest readable checkpoint onto `trainer`'s shardings and `iterator`: returns
    (state, meta), or None in a workdir without checkpoints. Unreadable newer steps are moved aside; when
    none reads back, a CheckpointError leaves them all in place. A checkpoint of another model, config,
    corpus or schedule (check_same_shapes, check_same_run, check_same_schedule), or past train.steps, raises
    a CheckpointError."""
    target, config = trainer.abstract_state(), trainer.config

    def read(step):
      meta, arrays = self.saved(step)
      where = f"{self.directory} (step {step})"
      check_same_shapes(arrays, target, meta["config"], config, where)
      check_same_run(meta["config"], config, where)
      if self.dataset and meta.get("dataset", self.dataset) != self.dataset:  # older checkpoints: not recorded
        raise CheckpointError(f"{where} was trained on {meta['dataset']}, but this run reads {self.dataset}: the "
                              "corpus changed (another Python's standard library, edited files or another "
                              "version); resume where it was built, or use a fresh --workdir")
      if step > config.train.steps:
        raise CheckpointError(f"{where} is past config.train.steps={config.train.steps}: set it to {step} or more "
                              "to continue the run, or use a fresh --workdir")
      check_same_schedule(meta["config"], config, step, where)
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
      check_fingerprints(restored["state"], meta.get("fingerprints"))
      return restored

    found, failed = self.newest(read)
    if found is None and failed:  # a passing failure (I/O, memory) must not start the run over: the user decides
      raise CheckpointError(f"no checkpoint in {self.directory} reads back (steps {', '.join(map(str, failed))}, "
                            "reasons above); they are left as they are: rerun once the cause is fixed, or move "
                            "the checkpoints directory aside to start over")
    if failed:  # out of the way of the steps this run saves again
      if jax.process_index() == 0:
        for step in failed:
          os.replace(self.directory / str(step), self.directory / f"{step}.unreadable-{time.time():.0f}")
      multihost_utils.sync_global_devices("scaling.checkpoint: unreadable steps moved aside")
      with _absl_quiet():
        self.manager.reload()
    if found is None:
      return None
    restored = found[1]
    iterator.set_state(restored["data"])
    return restored["state"], restored["meta"]

  def close(self) -> None:
    """Wait for a save in flight, then release the manager."""
    try:
      with self._writing():
        self.manager.wait_until_finished()
    finally:
      self.manager.close()


class Preemption:
  """Within this context, SIGTERM, SIGINT and SIGHUP (a terminal or an ssh session that went away) ask
  the loop to save and stop at the next step boundary.

  One process: the signal sets a flag that `requested` returns. Several processes must stop at the
  same step: SIGTERM is left to JAX's preemption service (started by jax.distributed.initialize),
  which agrees on a step that `requested` (called every step) reports on every process; SIGINT and
  SIGHUP are passed on to it as SIGTERM. A second signal stops at once (KeyboardInterrupt)."""

  def __enter__(self):
    self.signal, self.distributed = None, jax.process_count() > 1
    signals = (signal.SIGINT, signal.SIGHUP) if self.distributed else (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    self.previous = {s: signal.signal(s, self._handle) for s in signals}
    return self

  def _handle(self, signum, frame):
    if self.signal is not None:
      raise KeyboardInterrupt
    self.signal = signal.Signals(signum).name
    log.warning("%s received: saving a checkpoint at the next step boundary", self.signal)
    if self.distributed:
      os.kill(os.getpid(), signal.SIGTERM)

  def requested(self, step: int) -> bool:
    if self.distributed:
      return ocp.multihost.reached_preemption(step)
    return self.signal is not None

  def __exit__(self, *exc):
    for s, handler in self.previous.items():
      signal.signal(s, handler)


# ---------------------------------------------------------------- on the host: export, verify

def _read_on_host(checkpoints: Checkpoints, step: int, part: str | None = None) -> tuple[dict, dict]:
  """(the state of `step` as NumPy arrays, or only its `part` ('params'), checked against the fingerprints
  saved with it; its meta). No mesh is needed."""
  meta, arrays = checkpoints.saved(step)
  tree = arrays if part is None else {part: arrays[part]}
  host = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)  # no sharding: numpy
  with ocp.PyTreeCheckpointer() as reader:
    restored = reader.restore(checkpoints.directory / str(step) / "state", args=ocp.args.PyTreeRestore(
        item=host, partial_restore=True, restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                                                   host)))
  check_fingerprints(restored, meta.get("fingerprints"))
  return restored, meta


def read_params(workdir: str, step: int | None = None) -> tuple[int, dict, dict]:
  """(step, parameters as NumPy arrays checked against their checksums, the run's resolved config as saved)
  of workdir's newest checkpoint that reads back, or of `step`. Reads on the host: no mesh is needed."""
  checkpoints = Checkpoints(workdir)
  steps = [s for s in checkpoints.manager.all_steps() if step is None or s == step]
  where = f"--workdir {workdir}: {checkpoints.directory} has no checkpoint{'' if step is None else f' of step {step}'}"
  if not steps:
    raise CheckpointError(f"{where} (steps: {', '.join(map(str, checkpoints.manager.all_steps())) or 'none'})")

  def read(s):
    restored, meta = _read_on_host(checkpoints, s, "params")
    return restored["params"], meta["config"]

  found, _ = checkpoints.newest(read, steps)
  checkpoints.close()
  if found is None:
    raise CheckpointError(f"{where} that reads back")
  step, (params, config) = found
  return step, params, config


def place(host_tree, target):
  """Host arrays (read_params's) laid out as `target` (a tree of jax.ShapeDtypeStruct with shardings, such as
  Trainer.abstract_state()["params"]) and put on its devices, leaf by leaf by their names."""
  host = {"/".join(k): v for k, v in ocp.tree.to_flat_dict(host_tree).items()}
  paths, treedef = jax.tree_util.tree_flatten_with_path(target)
  names = ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path) for path, _ in paths]
  return treedef.unflatten([jax.device_put(host[name], t.sharding) for name, (_, t) in zip(names, paths)])


def export(workdir: str, out: str, step: int | None = None) -> int:
  """Write the parameters of workdir's newest readable checkpoint (or of `step`) to out/params, its
  resolved config to out/config.json and the parameters' fingerprints to out/fingerprints.json; returns
  the step. Reads on the host: no mesh is needed."""
  out_dir = Path(out).absolute()
  if (out_dir / "params").exists():
    raise CheckpointError(f"--out {out}: {out_dir / 'params'} exists; choose another directory")
  step, params, config = read_params(workdir, step)
  with ocp.StandardCheckpointer() as writer:
    writer.save(out_dir / "params", params)
  (out_dir / "config.json").write_text(json.dumps(config, indent=2))
  (out_dir / "fingerprints.json").write_text(json.dumps(fingerprints(params), indent=2))
  return step


def load_params(path: str, trainer):
  """Exported parameters (export's --out) -> the params tree on `trainer`'s mesh and shardings, for
  trainer.eval_step, `nnx.merge(trainer.graphdef, params)` or as the start of fine-tuning. The
  trainer's model must have the exported shapes (its config's other sections may differ)."""
  path = Path(path).absolute()
  if not (path / "config.json").is_file():
    raise CheckpointError(f"{path}: no exported parameters here (expected params/ and config.json from "
                          "python -m scaling.checkpoint export)")
  saved_config = json.loads((path / "config.json").read_text())
  target = trainer.abstract_state()["params"]
  with ocp.StandardCheckpointer() as reader:
    saved = reader.metadata(path / "params").item_metadata.tree
    check_same_shapes(saved, target, saved_config, trainer.config, f"{path} (exported parameters)",
                      f"load them with a trainer of the model in {path / 'config.json'}")
    params = reader.restore(path / "params", target)
  saved_fingerprints = path / "fingerprints.json"  # exports of earlier versions have none
  try:
    check_fingerprints(params, json.loads(saved_fingerprints.read_text()) if saved_fingerprints.is_file() else None)
  except ChangedAfterSave as e:
    raise CheckpointError(f"{path} (exported parameters): {e}; export them again") from None
  return params


def verify(workdir: str):
  """Yield (step, '' or why it does not read back as saved) for every checkpoint in workdir, oldest first,
  as each is read whole on the host and its arrays checked against the checksums saved with them."""
  checkpoints = Checkpoints(workdir)
  try:
    steps = sorted(checkpoints.manager.all_steps())
    if not steps:
      raise CheckpointError(f"--workdir {workdir}: {checkpoints.directory} has no checkpoint")
    for step in steps:
      try:
        with _reads_settle(), _absl_quiet():
          _, meta = _read_on_host(checkpoints, step)
      except Exception as e:  # what resume would report as unreadable
        yield step, f"unreadable: {_first_line(e)}"
      else:
        yield step, "" if meta.get("fingerprints") else "saved without checksums: read back, values not checked"
  finally:
    checkpoints.close()


def main(argv=None) -> int:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                      force=True)  # absl, imported with orbax, may have configured it already
  logging.getLogger("jax").setLevel(logging.WARNING)  # not its backend probing
  logging.getLogger("absl").setLevel(logging.ERROR)  # not orbax's account of every read
  parser = argparse.ArgumentParser(prog="python -m scaling.checkpoint", description="Checkpoint tools.")
  commands = parser.add_subparsers(dest="command", required=True)
  ex = commands.add_parser("export", help="write a checkpoint's parameters alone, with the run's config")
  ex.add_argument("--workdir", required=True, help="the run's workdir (holding checkpoints/)")
  ex.add_argument("--out", required=True, help="directory to receive params/ and config.json")
  ex.add_argument("--step", type=int, default=None, help="the step to export (default: the newest readable)")
  ve = commands.add_parser("verify", help="read every checkpoint back and check its arrays against their checksums")
  ve.add_argument("--workdir", required=True, help="the run's workdir (holding checkpoints/)")
  args = parser.parse_args(argv)
  try:
    if args.command == "export":
      step = export(args.workdir, args.out, args.step)
      log.info("exported the parameters of step %d to %s", step, os.path.join(args.out, "params"))
      return 0
    failed = False
    for step, problem in verify(args.workdir):
      print(f"step {step}: {problem or 'ok, every array as saved'}", flush=True)
      failed |= problem.startswith("unreadable")
    return 1 if failed else 0
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
