"""Train a Transformer language model.

  python -m scaling.train --config=configs/lm.py:1m --workdir=runs/lm-1m [--config.optim.lr=3e-4 ...]

`train(config, workdir)` is the library function (tests call it); `main` parses the command line.
The workdir receives metrics.jsonl, TensorBoard events, checkpoints and summary.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time

import jax
import numpy as np

from scaling import config as config_lib
from scaling import data, flops, metrics, sharding
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


def evaluate(trainer: Trainer, params, config) -> dict:
  """Loss, perplexity and accuracy over the validation split (capped by train.eval_batches)."""
  totals = None
  for local in data.eval_batches(config, jax.process_index(), jax.process_count()):
    stats = trainer.eval_step(params, sharding.global_batch(local, trainer.mesh, trainer.rules))
    totals = stats if totals is None else jax.tree.map(lambda a, b: a + b, totals, stats)
  if totals is None:
    return {}
  totals = jax.device_get(totals)
  weight = max(float(totals["weight"]), 1.0)
  loss = float(totals["ce"]) / weight
  result = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "accuracy": float(totals["correct"]) / weight}
  if config.data.tokenizer == "byte":
    result["bits_per_byte"] = loss / math.log(2)
  return result


def run_record(config) -> dict:
  """N, and FLOPs per token by both counts, for the summary and the logs."""
  m, seq = config.model, config.data.seq_len
  counts = flops.param_counts(m)
  return {"N": counts["total"], "N_nonembed": counts["non_embedding"],
          "flops_per_token": flops.flops_per_token(m, seq),
          "chinchilla_flops_per_token": flops.chinchilla_flops_per_token(m, seq)}


def train(config, workdir: str) -> dict:
  """Train by `config` in `workdir`; returns the summary written to workdir/summary.json."""
  start_time = time.time()
  sharding.initialize_distributed(config.distributed)
  config, _ = resolve(config)
  lead = jax.process_index() == 0
  mesh = sharding.make_mesh(config.mesh)
  trainer = Trainer(config, mesh)
  sharding.check_batch(config.train.batch_size, mesh, trainer.rules)
  record = run_record(config)
  if lead:
    os.makedirs(workdir, exist_ok=True)
    log.info("mesh %s on %d %s device(s) in %d process(es)", dict(mesh.shape), mesh.size,
             jax.devices()[0].device_kind, jax.process_count())
    log.info("N = %s total, %s non-embedding; %.3g training FLOPs per token",
             f"{record['N']:,}", f"{record['N_nonembed']:,}", record["flops_per_token"])

  state = trainer.init()
  if lead:
    log.info("per-device bytes: parameters %s, optimizer state %s",
             f"{sharding.bytes_per_device(state['params']):,}", f"{sharding.bytes_per_device(state['opt_state']):,}")
  t = config.train
  tokens_per_step = t.batch_size * config.data.seq_len
  device_kind = jax.devices()[0].device_kind
  writer = metrics.MetricWriter(workdir, enabled=lead)
  progress = metrics.ProgressBar(t.steps, 0, enabled=lead and t.progress)
  batches = data.train_iterator(config, jax.process_index(), jax.process_count())
  pending, last_train, eval_result = [], {}, {}
  interval_start, interval_steps, train_time = None, 0, 0.0
  step = 0
  try:
    while step < t.steps:
      batch = sharding.global_batch(next(batches), mesh, trainer.rules)
      state, step_metrics = trainer.train_step(state, batch)
      pending.append(step_metrics)
      step += 1
      if interval_start is None:  # the first step compiles: time from its end
        jax.block_until_ready(state["step"])
        interval_start, pending = time.time(), []
        continue
      interval_steps += 1
      last = step == t.steps
      if (t.log_every and step % t.log_every == 0) or last:
        host = jax.device_get(pending)
        elapsed = time.time() - interval_start
        train_time += elapsed
        tokens_per_s = tokens_per_step * interval_steps / elapsed
        last_train = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
        last_train.update(tokens_per_s=tokens_per_s, step_time_ms=1e3 * elapsed / interval_steps,
                          mfu=metrics.mfu(record["flops_per_token"], tokens_per_s, jax.device_count(), device_kind))
        writer.write(step, "train", last_train)
        progress.update(step, f"loss {last_train['loss']:.4f}  {tokens_per_s:,.0f} tok/s")
        pending, interval_start, interval_steps = [], time.time(), 0
      if (t.eval_every and step % t.eval_every == 0) or last:
        eval_result = evaluate(trainer, state["params"], config)
        writer.write(step, "eval", eval_result)
        if lead and eval_result:
          log.info("step %d: eval loss %.4f", step, eval_result["loss"])
        interval_start = time.time()  # evaluation time is not training time
  finally:
    progress.close()
    writer.close()

  D = step * tokens_per_step
  summary = {
      "family": config.family, "size": config.size, "status": "ok", "steps": step,
      "N": record["N"], "N_nonembed": record["N_nonembed"], "D": D,
      "C": record["flops_per_token"] * D, "C_chinchilla": record["chinchilla_flops_per_token"] * D,
      "train_loss": last_train.get("loss"), "eval_loss": eval_result.get("loss"),
      "eval": eval_result, "tokens_per_s": last_train.get("tokens_per_s"), "mfu": last_train.get("mfu"),
      "train_time_s": train_time, "wall_time_s": time.time() - start_time,
      "device_kind": device_kind, "num_devices": jax.device_count(), "config": config.to_dict(),
  }
  if lead:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2, default=str)
    log.info("done: %d steps, train loss %.4f, eval loss %s; summary in %s", step, summary["train_loss"] or float("nan"),
             f"{summary['eval_loss']:.4f}" if summary["eval_loss"] is not None else "n/a",
             os.path.join(workdir, "summary.json"))
  return summary


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m scaling.train", description=__doc__.split("\n")[1],
                                   epilog="Override any config field with --config.<section>.<field>=VALUE.")
  parser.add_argument("--config", required=True, help="configs/<family>.py:<size>")
  parser.add_argument("--workdir", required=True, help="directory for metrics, checkpoints and summary.json")
  args, rest = parser.parse_known_args(argv)
  return args, rest


def main(argv=None) -> int:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
  logging.getLogger("jax").setLevel(logging.WARNING)  # not its backend probing (no TPU here, ...)
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    config = config_lib.load(args.config, overrides)
    train(config, args.workdir)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
