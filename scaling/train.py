"""Train a Transformer language model.

  python -m scaling.train --config=configs/lm.py:1m --workdir=runs/lm-1m [--config.optim.lr=3e-4 ...]

`train(config, workdir)` is the library function (tests call it); `main` parses the command line.
The workdir receives metrics.jsonl, TensorBoard events, checkpoints and summary.json. Started again
in the same workdir, a run continues from its newest checkpoint (scaling/checkpoint.py). Exit codes:
0 done; 2 a mistake the one-line message names; 75 preempted (SIGTERM or SIGINT) after saving a
checkpoint: run the same command again to continue.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import math
import os
import socket
import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from scaling import config as config_lib
from scaling import checkpoint, data, flops, metrics, sharding
from scaling.errors import UserError
from scaling.steps import Trainer

log = logging.getLogger("scaling")


def resolve(config):
  """Fill the fields that depend on the data (the vocabulary size); returns a locked copy."""
  config = config.copy_and_resolve_references()
  tokenizer = data.get_tokenizer(config.data)
  with config.unlocked():
    if config.model.vocab_size == 0:
      config.model.vocab_size = tokenizer.vocab_size
  if config.model.vocab_size < tokenizer.vocab_size:
    raise config_lib.ConfigError(f"config.model.vocab_size={config.model.vocab_size} is smaller than the "
                                 f"tokenizer's {tokenizer.vocab_size} ids; set it to 0 to use the tokenizer's")
  config.lock()
  return config, tokenizer


def evaluate(trainer: Trainer, params, config, progress: str | None = None) -> dict:
  """Loss, perplexity and accuracy over the validation split (capped by train.eval_batches); for
  MLM the masked positions' loss and accuracy, plus next-sentence loss and accuracy with NSP. With
  `progress` (what to call the work), process 0 shows how far it is (metrics.WorkProgress)."""
  totals = None
  batches = data.eval_batches(config, jax.process_index(), jax.process_count())
  shown = metrics.WorkProgress(progress, len(batches), "batches") if progress and jax.process_index() == 0 else None
  for done, local in enumerate(batches, 1):
    stats = trainer.eval_step(params, sharding.global_batch(local, trainer.mesh, trainer.rules))
    totals = stats if totals is None else jax.tree.map(lambda a, b: a + b, totals, stats)
    if shown is not None:
      shown.update(done)
  if shown is not None:
    shown.close()
  if totals is None:
    return {}
  totals = jax.device_get(totals)
  weight = max(float(totals["weight"]), 1.0)
  loss = float(totals["ce"]) / weight
  result = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "accuracy": float(totals["correct"]) / weight}
  if config.data.tokenizer == "byte" and config.objective == "causal_lm":
    result["bits_per_byte"] = loss / math.log(2)
  if "nsp_count" in totals:
    pairs = max(float(totals["nsp_count"]), 1.0)
    result.update(nsp_loss=float(totals["nsp_ce"]) / pairs, nsp_accuracy=float(totals["nsp_correct"]) / pairs)
  return result


def run_record(config) -> dict:
  """N, and FLOPs per token by both counts, for the summary and the logs."""
  m, seq = config.model, config.data.seq_len
  counts = flops.param_counts(m)
  return {"N": counts["total"], "N_nonembed": counts["non_embedding"],
          "flops_per_token": flops.flops_per_token(m, seq),
          "chinchilla_flops_per_token": flops.chinchilla_flops_per_token(m, seq)}


class NonFiniteLoss(UserError):
  """Training diverged: a loss or gradient norm is NaN or Inf (more often than checkpoint.skip_nonfinite)."""


def epochs(config, epoch_size: int | None, steps: int) -> float | None:
  """Passes over the training split that `steps` steps read (None: an endless source, data.epoch_size)."""
  return steps * config.train.batch_size / epoch_size if epoch_size else None


def finite(step_metrics: dict) -> bool:
  """The step's criterion, as in Trainer._train_step: loss and gradient norm finite."""
  return math.isfinite(step_metrics["loss"]) and math.isfinite(step_metrics["grad_norm"])


def check_finite(step_metrics: list[dict], first_step: int, skipped: int, config, checkpoints) -> int:
  """`skipped` plus the steps in `step_metrics` (the first is `first_step`) whose loss or gradient
  norm is not finite: up to checkpoint.skip_nonfinite such steps applied no update and are counted;
  past it, raise NonFiniteLoss naming the step and the last checkpoint (every save follows this
  check, so no checkpoint holds a diverged state)."""
  limit = config.checkpoint.skip_nonfinite
  for step, m in enumerate(step_metrics, first_step):
    if finite(m):
      continue
    what = f"step {step}: loss {m['loss']}, gradient norm {m['grad_norm']}"
    if skipped < limit:
      skipped += 1
      log.warning("%s; update skipped (%d of checkpoint.skip_nonfinite=%d)", what, skipped, limit)
      continue
    already = f" ({skipped} skipped already, checkpoint.skip_nonfinite={limit})" if limit else ""
    latest = checkpoints.latest()
    rerun = "rerunning starts over" if latest == "none" else "rerunning resumes from it"
    raise NonFiniteLoss(f"training diverged at {what}{already}; last checkpoint: {latest}; "
                        f"{rerun}: lower optim.lr, or raise checkpoint.skip_nonfinite")
  return skipped


def rewind_metrics(workdir: str, step: int) -> None:
  """Drop metrics.jsonl records after `step` (a run that stopped past its last checkpoint repeats them) and
  a line cut short (a run killed while writing it), replacing the file atomically: it is never half written."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return
  kept, torn = [], 0
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        torn += line.strip() != ""
        continue
      if record["step"] <= step:
        kept.append(line if line.endswith("\n") else line + "\n")
  if torn:
    log.warning("%s: dropped %d line(s) cut short by an earlier run's end", path, torn)
  with open(path + ".tmp", "w") as f:
    f.writelines(kept)
  os.replace(path + ".tmp", path)


def check_workdir(workdir: str) -> None:
  """Raise a one-line UserError for a --workdir that cannot be a directory: empty, or an existing file."""
  if not workdir:
    raise UserError("--workdir is empty: name a directory for the run's metrics, checkpoints and summary.json")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f"--workdir={workdir} is a file, not a directory: name a directory for the run")


_HELD = {}  # workdir lock file -> its open file, for the workdirs this process trains in


def hold_workdir(workdir: str) -> None:
  """Take an exclusive lock on workdir/.lock for this process (again: nothing to do), or raise a one-line
  UserError naming the run that holds it. The lock goes with its holder however that ends, so a crashed
  run leaves none behind; where the file system has no locks, the run goes on unguarded."""
  path = os.path.realpath(os.path.join(workdir, ".lock"))
  if path in _HELD:
    return
  f = open(path, "a+")
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or "another process"
    f.close()
    raise UserError(f"--workdir={workdir} is in use by another run ({holder}): wait for it to end, or use "
                    "another --workdir") from None
  except OSError:  # no locks here (ENOLCK, EOPNOTSUPP)
    f.close()
    return
  f.truncate(0)
  f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
  f.flush()
  _HELD[path] = f


def check_shared_workdir(workdir: str) -> None:
  """Every process of a run must see its workdir, as storage all hosts mount at one path: process 0 leaves a
  token in it that the others read back, or all of them stop with one line (else the first checkpoint, which
  every process writes its part of, would wait for the others for ever)."""
  if jax.process_count() == 1:
    return
  token = multihost_utils.broadcast_one_to_all(np.frombuffer(os.urandom(16), np.uint8)).tobytes()  # process 0's
  path = os.path.join(workdir, ".shared")
  if jax.process_index() == 0:
    with open(path, "wb") as f:
      f.write(token)
  multihost_utils.sync_global_devices("scaling.train: workdir token written")
  try:
    with open(path, "rb") as f:
      sees = f.read() == token
  except OSError:
    sees = False
  blind = np.flatnonzero(~np.asarray(multihost_utils.process_allgather(np.array([sees]))).ravel())
  if blind.size:
    raise UserError(f"--workdir={workdir}: process(es) {', '.join(map(str, blind))} do not see what process 0 writes "
                    "there; a run's processes must share its workdir (storage every host mounts, at the same path)")


def release_workdir(workdir: str) -> None:
  held = _HELD.pop(os.path.realpath(os.path.join(workdir, ".lock")), None)
  if held is not None:
    held.close()


def train(config, workdir: str) -> dict:
  """Train by `config` in `workdir`, continuing from its newest checkpoint if it has one; returns the
  summary written to workdir/summary.json. On SIGTERM or SIGINT, saves and raises checkpoint.Preempted.
  Mistakes in the config, the data or the workdir raise a UserError before anything is logged or written."""
  start_time = time.time()
  check_workdir(workdir)
  sharding.initialize_distributed(config.distributed)
  config, _ = resolve(config)
  lead = jax.process_index() == 0
  mesh = sharding.make_mesh(config.mesh)
  trainer = Trainer(config, mesh)
  sharding.check_batch(config, mesh, trainer.rules)
  record = run_record(config)
  batches = data.train_iterator(config, jax.process_index(), jax.process_count())  # a missing dataset stops here
  dataset = data.dataset_identity(config)
  epoch_size = data.epoch_size(config)
  if lead:
    try:
      os.makedirs(workdir, exist_ok=True)
    except OSError as e:
      raise UserError(f"--workdir={workdir}: {e.strerror}") from None
    hold_workdir(workdir)  # one run at a time: two would write the same checkpoints and metrics
    log.info("mesh %s on %d %s device(s) in %d process(es)", dict(mesh.shape), mesh.size,
             jax.devices()[0].device_kind, jax.process_count())
    log.info("N = %s total, %s non-embedding; %.3g training FLOPs per token; data %s",
             f"{record['N']:,}", f"{record['N_nonembed']:,}", record["flops_per_token"], dataset)
    passes = epochs(config, epoch_size, config.train.steps)
    if passes is not None:
      log.info("training split: %s sequences a pass; %d steps of %d read %.3g passes", f"{epoch_size:,}",
               config.train.steps, config.train.batch_size, passes)
    if passes is not None and passes > 1:
      log.warning("config.train.steps=%d x batch_size=%d reads the training split of %s %.3g times: a repeated"
                  " token teaches less than a new one, so the losses are above those of as many unique tokens"
                  " (summary.json and results.csv record the epochs)", config.train.steps,
                  config.train.batch_size, dataset, passes)

  check_shared_workdir(workdir)
  checkpoints = checkpoint.Checkpoints(workdir, config, dataset)
  resumed = checkpoints.resume(trainer, batches)
  if resumed is None:
    state, meta = trainer.init(), {"wall_time_s": 0.0, "train_time_s": 0.0, "skipped_steps": 0, "train": {},
                                   "window": []}
  else:
    state, meta = resumed
  step = int(jax.device_get(state["step"]))
  if lead:
    if resumed is not None:
      log.info("resumed from the checkpoint of step %d in %s", step, checkpoints.directory)
    rewind_metrics(workdir, step)
    log.info("per-device bytes: parameters %s, optimizer state %s",
             f"{sharding.bytes_per_device(state['params']):,}", f"{sharding.bytes_per_device(state['opt_state']):,}")
  t = config.train
  tokens_per_step = t.batch_size * config.data.seq_len
  device_kind = jax.devices()[0].device_kind
  # Carried across restarts by the checkpoints: time spent, skipped steps, the last train metrics logged, and
  # the metrics of the steps since (float32, as the step returns them: the next record averages them exactly)
  train_time, skipped, last_train = meta["train_time_s"], meta["skipped_steps"], meta["train"]
  interval = [{k: np.float32(v) for k, v in m.items()} for m in meta.get("window", [])]  # older checkpoints: none

  def wall_time() -> float:  # over all restarts
    return meta["wall_time_s"] + time.time() - start_time

  writer = metrics.MetricWriter(workdir, enabled=lead, start_step=step)
  progress = metrics.ProgressBar(t.steps, step, enabled=lead and t.progress)
  pending, eval_result = [], {}  # step metrics on the device, unchecked (`interval`: on the host, unlogged)
  interval_start, interval_steps, interval_time = None, 0, 0.0  # interval_time: before a save or evaluation
  if step >= t.steps:  # resumed from the final checkpoint (stopped before summary.json was written)
    eval_result = evaluate(trainer, state["params"], config)
  try:
    with checkpoint.Preemption() as preemption:
      while step < t.steps:
        batch = sharding.global_batch(next(batches), mesh, trainer.rules)
        state, step_metrics = trainer.train_step(state, batch)
        pending.append(step_metrics)
        step += 1
        if interval_start is None:  # the first step compiles: time from its end
          jax.block_until_ready(state["step"])
          interval_start = time.time()
        else:
          interval_steps += 1
        last = step == t.steps
        log_now = (t.log_every and step % t.log_every == 0) or last
        stop = preemption.requested(step)
        save = stop or checkpoints.due(step)
        if log_now or save:
          host = jax.device_get(pending)
          skipped = check_finite(host, step - len(host) + 1, skipped, config, checkpoints)
          interval, pending = interval + host, []
        if log_now:
          checkpoints.check()  # a background save that failed stops the run here, not at the next save
          kept = [m for m in interval if finite(m)] or interval  # skipped steps are not averaged
          last_train = {k: float(np.mean([m[k] for m in kept])) for k in kept[0]}
          last_train["lr"] = float(interval[-1]["lr"])  # the schedule at this step, not the interval's mean
          if interval_steps:
            elapsed = interval_time + time.time() - interval_start
            train_time += elapsed
            tokens_per_s = tokens_per_step * interval_steps / elapsed
            last_train.update(tokens_per_s=tokens_per_s, step_time_ms=1e3 * elapsed / interval_steps,
                              mfu=metrics.mfu(record["flops_per_token"], tokens_per_s, jax.device_count(), device_kind))
          if skipped:
            last_train["skipped_steps"] = skipped
          writer.write(step, "train", last_train)
          progress.update(step, f"loss {last_train['loss']:.4f}" +
                          (f"  {last_train['tokens_per_s']:,.0f} tok/s" if interval_steps else ""))
          interval, interval_start, interval_steps, interval_time = [], time.time(), 0, 0.0
        evaluate_now = (t.eval_every and step % t.eval_every == 0) or last
        if save or evaluate_now:  # saving and evaluation are not training time
          interval_time += time.time() - interval_start
        if save:  # the step is the RNG state too: dropout keys derive from (seed, step)
          checkpoints.save(step, state, batches.get_state(), wait=stop, meta={
              "config": config.to_dict(), "dataset": dataset, "wall_time_s": wall_time(),
              "train_time_s": train_time + interval_time,
              "skipped_steps": skipped, "train": last_train,
              "window": [{k: float(v) for k, v in m.items()} for m in interval]})
        if evaluate_now:
          eval_result = evaluate(trainer, state["params"], config)
          writer.write(step, "eval", eval_result)
          if lead and eval_result:
            log.info("step %d: eval loss %.4f", step, eval_result["loss"])
        if save or evaluate_now:
          interval_start = time.time()
        if stop and not last:
          message = (f"preempted at step {step}; checkpoint saved in {checkpoints.directory}; "
                     "rerun the same command to resume")
          if lead:
            log.info(message)
          raise checkpoint.Preempted(message)
  finally:
    progress.close()
    writer.close()
    checkpoints.close()
    release_workdir(workdir)

  D = step * tokens_per_step
  summary = {
      "family": config.family, "size": config.size, "status": "ok", "steps": step, "dataset": dataset,
      "N": record["N"], "N_nonembed": record["N_nonembed"], "D": D,
      "epochs": epochs(config, epoch_size, step),
      "C": record["flops_per_token"] * D, "C_chinchilla": record["chinchilla_flops_per_token"] * D,
      "train_loss": last_train.get("loss"), "eval_loss": eval_result.get("loss"),
      "eval": eval_result, "tokens_per_s": last_train.get("tokens_per_s"), "mfu": last_train.get("mfu"),
      "skipped_steps": skipped, "train_time_s": train_time, "wall_time_s": wall_time(),
      "device_kind": device_kind, "num_devices": jax.device_count(), "config": config.to_dict(),
  }
  if lead:
    path = os.path.join(workdir, "summary.json")
    with open(path + ".tmp", "w") as f:  # then renamed: a run stopped while writing it leaves no half summary
      json.dump(summary, f, indent=2, default=str)
    os.replace(path + ".tmp", path)
    log.info("done: %d steps, train loss %.4f, eval loss %s; summary in %s", step, summary["train_loss"] or float("nan"),
             f"{summary['eval_loss']:.4f}" if summary["eval_loss"] is not None else "n/a", path)
  return summary


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m scaling.train", description=__doc__.split("\n", 1)[0],
                                   epilog="Override any config field with --config.<section>.<field>=VALUE.")
  parser.add_argument("--config", required=True, help="configs/<family>.py:<size>")
  parser.add_argument("--workdir", required=True, help="directory for metrics, checkpoints and summary.json")
  args, rest = parser.parse_known_args(argv)
  return args, rest


def main(argv=None) -> int:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                      force=True)  # absl, imported with orbax, may have configured it already
  logging.getLogger("jax").setLevel(logging.WARNING)  # not its backend probing (no TPU here, ...)
  logging.getLogger("absl").setLevel(logging.WARNING)  # not orbax's account of every save
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    config = config_lib.load(args.config, overrides)
    train(config, args.workdir)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except checkpoint.Preempted:
    return checkpoint.EXIT_PREEMPTED  # a requeue (SLURM, the sweep) tells "rerun me" from "done" (0)
  except jax.errors.JaxRuntimeError as e:
    if jax.process_count() == 1:
      raise
    # Most often another process of the run died and a collective with it failed. Python's exit would wait at
    # jax.distributed's shutdown barrier for the dead process, then abort with a stack dump: leave now.
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f"error: process {jax.process_index()} of {jax.process_count()}: a step across the processes failed "
          f"({first}); if another process stopped, its log says why. The checkpoints are as they were: run every "
          f"process again to resume from the newest", file=sys.stderr, flush=True)
    logging.shutdown()
    sys.stdout.flush()
    os._exit(1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
