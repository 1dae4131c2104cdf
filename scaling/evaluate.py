"""Evaluate a run's checkpoint on a corpus: the loss, perplexity and accuracy of its parameters.

  python -m scaling.evaluate --workdir runs/lm-1m [--step S] [--config.data.dataset=files
      --config.data.files='notes/**/*.md'] [--config.train.eval_batches=0] [--corpus-name NAME]

The config is the run's own, as its checkpoint saved it, with the overrides given: fields of config.data
(the corpus read: another dataset, its data_dir or files; not the tokenizer or seq_len, which the model was
trained with), train.batch_size, train.eval_batches (0: the whole validation split) and the mesh. The
parameters of the newest checkpoint that reads back (or of --step) are evaluated on the corpus's validation
split, as a run evaluates itself; the result goes to workdir/evals/step<S>-<corpus>.json (<corpus>: --corpus-name,
or the corpus's identity) and one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

import jax
import ml_collections

from configs import base
from scaling import config as config_lib
from scaling import checkpoint, data, sharding, train
from scaling.errors import UserError
from scaling.steps import Trainer

EVALUABLE = ("data.", "train.batch_size", "train.eval_batches", "mesh.", "distributed.")  # what --config may change
FIXED = ("data.tokenizer", "data.seq_len")  # data fields the parameters were trained with


def slug(dataset: str) -> str:
  """A corpus's identity (data.dataset_identity) as a file-name part: its evaluation's file, and the column
  eval_loss.<slug> of a sweep's results.csv."""
  return re.sub(r"[^A-Za-z0-9.]+", "_", dataset)


def check_override(dotted: str) -> None:
  if not dotted.startswith(EVALUABLE) or dotted in FIXED:
    raise config_lib.ConfigError(
      f"config.{dotted}: an evaluation changes only the corpus (config.data, but not data.tokenizer or "
      "data.seq_len), train.batch_size, train.eval_batches and the mesh; the rest is the run's own")


def override_items(overrides) -> dict:
  """{'a.b': value} of '--config.a.b=v' strings (or of such a dict), each checked to be one an evaluation may
  change."""
  items = dict(overrides if isinstance(overrides, dict) else map(config_lib.split_override, overrides))
  for dotted in items:
    check_override(dotted)
  return items


def evaluation_config(saved: dict, items: dict) -> ml_collections.ConfigDict:
  """The config an evaluation uses: the run's (as its checkpoint saved it) with `items`, validated and resolved."""
  config = ml_collections.ConfigDict(saved)
  config_lib.apply_overrides(config, items)
  config_lib.validate(config)
  config.lock()
  return train.resolve(config)[0]


def check_name(name: str | None) -> None:
  if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
    raise UserError(f"--corpus-name {name!r}: use letters, digits, '.', '_' and '-' (it names a file and a "
                    "results.csv column)")


def record_path(workdir, step: int, dataset: str, name: str | None = None) -> Path:
  """Where the evaluation of `step` on corpus `dataset` (data.dataset_identity) is written: under the corpus's
  `name` where one is given, else its identity's slug."""
  return Path(workdir) / "evals" / f"step{step}-{name or slug(dataset)}.json"


def read_record(path: Path, dataset: str) -> dict | None:
  """The evaluation record at `path` (None: none yet); one of another corpus, which a --corpus-name already
  names, is a UserError."""
  try:
    record = json.loads(path.read_text())
  except FileNotFoundError:
    return None
  if record.get("dataset") != dataset:
    raise UserError(f"--corpus-name {path.stem.split('-', 1)[1]!r} names {record.get('dataset')} in {path}, not "
                    f"{dataset}: give this corpus another name (or remove that record)")
  return record


def evaluate_checkpoint(workdir: str, overrides=(), step: int | None = None, name: str | None = None) -> dict:
  """Evaluate the parameters of workdir's newest readable checkpoint (or of `step`) with the run's config and
  `overrides` ('--config.a.b=v' strings or {'a.b': v}); returns the record written to workdir/evals, under the
  corpus's `name` where one is given."""
  check_name(name)
  items = override_items(overrides)
  started = base.get_config()  # jax.distributed starts before anything touches a device, reads included
  config_lib.apply_overrides(started, {k: v for k, v in items.items() if k.startswith("distributed.")})
  sharding.initialize_distributed(started.distributed)
  step, host_params, saved = checkpoint.read_params(workdir, step)
  config = evaluation_config(saved, items)
  trainer = Trainer(config, sharding.make_mesh(config.mesh))
  params = checkpoint.place(host_params, trainer.abstract_state()["params"])
  dataset = data.dataset_identity(config)
  path = record_path(workdir, step, dataset, name)
  read_record(path, dataset)  # before the work: a name of another corpus is a mistake
  result = train.evaluate(trainer, params, config, progress=f"evaluating step {step} on {config.data.dataset}")
  if not result:
    raise UserError(f"config.data.dataset={config.data.dataset!r} has no validation or test split to evaluate "
                    "(for files, raise config.data.val_fraction)")
  record = {"step": step, "dataset": dataset, "split": "validation", "eval_batches": config.train.eval_batches,
            "batch_size": config.train.batch_size, "overrides": {k: str(v) for k, v in items.items()},
            "eval": result}
  if jax.process_index() == 0:
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")  # readers (a sweep collecting) never see half a file
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
    record["path"] = str(path)
  return record


def main(argv=None) -> int:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True)
  logging.getLogger("jax").setLevel(logging.WARNING)
  logging.getLogger("absl").setLevel(logging.ERROR)
  parser = argparse.ArgumentParser(prog="python -m scaling.evaluate", description=__doc__.split("\n", 1)[0],
                                   epilog="Change the corpus with --config.data.<field>=VALUE (and "
                                          "--config.train.eval_batches, --config.train.batch_size, the mesh).")
  parser.add_argument("--workdir", required=True, help="the run's workdir (holding checkpoints/)")
  parser.add_argument("--step", type=int, default=None, help="the checkpoint to evaluate (default: the newest "
                                                              "readable)")
  parser.add_argument("--corpus-name", metavar="NAME", help="name the corpus: evals/step<S>-NAME.json, and a sweep's "
                                                            "column eval_loss.NAME (default: from its identity)")
  args, overrides = parser.parse_known_args(argv)
  try:
    record = evaluate_checkpoint(args.workdir, overrides, args.step, args.corpus_name)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if jax.process_index():  # process 0 speaks for all
    return 0
  result = record["eval"]
  extra = "".join(f", {name.replace('_', ' ')} {result[name]:.4f}" for name in ("bits_per_byte", "accuracy")
                  if name in result)
  print(f"step {record['step']} on {record['dataset']}: loss {result['loss']:.4f}, perplexity "
        f"{result['perplexity']:.4g}{extra}; written to {record['path']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
