"""Load a config file, apply command-line overrides, validate: every user mistake is one line.

`load("configs/gpt2.py:124m", ["--config.optim.lr=3e-4"])` returns a validated, locked ConfigDict.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import ml_collections

from scaling.errors import UserError


class ConfigError(UserError):
  """A mistake in a config or an override; its message is the one line the user sees."""


def find_file(path: str) -> str | None:
  """`path` when it names a file; else, for a relative path, the shipped file of that name (under the
  directory the configs and experiments packages are installed from), so that `configs/lm.py` and
  `experiments/cpu_isoflop.py` are found from any directory; None when neither exists."""
  if os.path.isfile(path) or os.path.isabs(path):
    return path if os.path.isfile(path) else None
  import configs

  shipped = Path(configs.__file__).resolve().parent.parent / path
  return str(shipped) if shipped.is_file() else None


def load_file(spec: str) -> ml_collections.ConfigDict:
  """`path/to/family.py[:arg]` -> the ConfigDict its get_config(arg) returns."""
  given, _, arg = spec.partition(":")
  path = find_file(given)
  if path is None:
    raise ConfigError(f"--config: no such config file {given!r} (expected e.g. configs/lm.py:1m)")
  module_spec = importlib.util.spec_from_file_location(f"_scaling_config_{Path(path).stem}", path)
  if module_spec is None:  # not a .py file
    raise ConfigError(f"--config: {path} is not a Python config file (expected e.g. configs/lm.py:1m)")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"--config: {path} defines no get_config()")
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except ValueError as e:  # a family's own message, e.g. an unknown size
    raise ConfigError(f"--config={spec}: {e}") from None
  return config


def parse_value(text: str, current):
  """Parse an override's text into the type of the field's current value."""
  if isinstance(current, bool):
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
      return True
    if lowered in ("false", "0", "no"):
      return False
    raise ValueError("expected true or false")
  if isinstance(current, (int, float)):
    expected = "an integer" if isinstance(current, int) else "a number"
    try:
      value = float(text)  # ints too: steps=1e6
    except ValueError:
      raise ValueError(f"expected {expected}") from None
    if isinstance(current, float):
      return value
    if not value.is_integer():
      raise ValueError(f"expected {expected}")
    return int(value)
  if isinstance(current, str):
    return text
  raise ValueError(f"cannot override a field of type {type(current).__name__}")


def apply_override(config: ml_collections.ConfigDict, dotted: str, text: str) -> None:
  """Set config.<dotted> from text, keeping the field's type; unknown fields are errors."""
  *parents, leaf = dotted.split(".")
  node, where = config, "config"
  for name in parents:
    if name not in node or not isinstance(node[name], ml_collections.ConfigDict):
      raise ConfigError(f"unknown config field {where}.{name} (fields: {', '.join(sorted(node))})")
    node, where = node[name], f"{where}.{name}"
  if leaf not in node:
    raise ConfigError(f"unknown config field {where}.{leaf} (fields of {where}: {', '.join(sorted(node))})")
  current = node[leaf]
  try:
    value = parse_value(text, current)
  except ValueError as e:
    raise ConfigError(f"{where}.{leaf}={text!r}: {e}") from None
  with node.unlocked():
    node[leaf] = value


def load(spec: str, overrides: list[str] | dict[str, object] = ()) -> ml_collections.ConfigDict:
  """Load `spec`, apply overrides ('--config.a.b=v' strings or {'a.b': v}), validate, lock."""
  config = load_file(spec)
  apply_overrides(config, overrides)
  validate(config)
  config.lock()
  return config


def apply_overrides(config, overrides) -> None:
  items = overrides.items() if isinstance(overrides, dict) else map(split_override, overrides)
  for dotted, value in items:
    apply_override(config, dotted, str(value))


def split_override(arg: str) -> tuple[str, str]:
  if not arg.startswith("--config.") or "=" not in arg:
    raise ConfigError(f"{arg!r}: overrides look like --config.optim.lr=3e-4")
  dotted, _, text = arg[len("--config."):].partition("=")
  return dotted, text


def _choice(config, dotted: str, allowed) -> None:
  value = config
  for name in dotted.split("."):
    value = value[name]
  if value not in allowed:
    raise ConfigError(f"config.{dotted}={value!r}: allowed values are {', '.join(map(str, allowed))}")


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def validate(config: ml_collections.ConfigDict) -> None:
  """Check choices, signs and the relations between fields; raise ConfigError on the first."""
  from scaling import model, objectives, optim, sharding  # the tables that define the choices

  m, o, t, d = config.model, config.optim, config.train, config.data
  _choice(config, "objective", objectives.OBJECTIVES)
  _require(config.objective != "mlm_nsp" or m.pooler,
           "config.objective='mlm_nsp' needs the next-sentence classifier: set config.model.pooler=True")
  _choice(config, "model.position", model.POSITIONS)
  _choice(config, "model.mlp", model.MLPS)
  _choice(config, "model.norm", model.NORMS)
  _choice(config, "model.norm_placement", ("pre", "post"))
  _choice(config, "model.dtype", model.DTYPES)
  _choice(config, "model.attention", model.ATTENTION)
  _choice(config, "model.remat", model.REMAT)
  _choice(config, "optim.schedule", optim.SCHEDULES)
  _choice(config, "optim.moments_dtype", ("float32", "bfloat16"))
  for name in ("num_layers", "d_model", "num_heads", "d_ff", "max_len", "vocab_multiple"):
    _require(m[name] > 0, f"config.model.{name}={m[name]} must be positive")
  _require(m.num_kv_heads >= 0, f"config.model.num_kv_heads={m.num_kv_heads} must be >= 0")
  _require(m.head_dim > 0 or m.d_model % m.num_heads == 0,
           f"config.model.d_model={m.d_model} is not divisible by config.model.num_heads={m.num_heads}"
           " (or set config.model.head_dim)")
  kv = m.num_kv_heads or m.num_heads
  _require(m.num_heads % kv == 0,
           f"config.model.num_kv_heads={kv} must divide config.model.num_heads={m.num_heads}")
  head_dim = m.head_dim or m.d_model // m.num_heads
  _require(m.position != "rope" or head_dim % 2 == 0,
           f"config.model.position='rope' needs an even head_dim, got {head_dim}")
  _require(m.position not in ("learned", "sinusoidal") or d.seq_len <= m.max_len,
           f"config.data.seq_len={d.seq_len} exceeds config.model.max_len={m.max_len} of the position table")
  _require(m.vocab_size >= 0, f"config.model.vocab_size={m.vocab_size} must be >= 0 (0 = the tokenizer's)")
  _require(0.0 <= m.dropout < 1.0, f"config.model.dropout={m.dropout} must be in [0, 1)")
  _require(m.init_std > 0, f"config.model.init_std={m.init_std} must be positive")
  _require(m.logits_chunk >= 0 and (m.logits_chunk == 0 or d.seq_len % m.logits_chunk == 0),
           f"config.model.logits_chunk={m.logits_chunk} must be 0 or divide config.data.seq_len={d.seq_len}")
  _require(1 <= m.scan_unroll <= m.num_layers,
           f"config.model.scan_unroll={m.scan_unroll} must be in [1, config.model.num_layers={m.num_layers}]")
  _require(d.seq_len > 0, f"config.data.seq_len={d.seq_len} must be positive")
  _require(d.num_workers >= 0, f"config.data.num_workers={d.num_workers} must be >= 0")
  _require(0.0 <= d.val_fraction < 1.0, f"config.data.val_fraction={d.val_fraction} must be in [0, 1)")
  _require(math.isfinite(o.lr) and o.lr > 0, f"config.optim.lr={o.lr} must be a positive number")
  _require(0.0 <= o.min_lr_ratio <= 1.0, f"config.optim.min_lr_ratio={o.min_lr_ratio} must be in [0, 1]")
  _require(0.0 < o.decay_fraction <= 1.0, f"config.optim.decay_fraction={o.decay_fraction} must be in (0, 1]")
  _require(0.0 <= o.b1 < 1.0 and 0.0 <= o.b2 < 1.0, "config.optim.b1 and config.optim.b2 must be in [0, 1)")
  _require(o.eps > 0, f"config.optim.eps={o.eps} must be positive")
  _require(o.weight_decay >= 0, f"config.optim.weight_decay={o.weight_decay} must be >= 0")
  _require(o.clip_norm >= 0, f"config.optim.clip_norm={o.clip_norm} must be >= 0 (0 = off)")
  _require(o.z_loss >= 0, f"config.optim.z_loss={o.z_loss} must be >= 0")
  _require(t.steps > 0, f"config.train.steps={t.steps} must be positive")
  _require(0 <= o.warmup_steps <= t.steps,
           f"config.optim.warmup_steps={o.warmup_steps} must be in [0, config.train.steps={t.steps}]")
  _require(t.batch_size > 0, f"config.train.batch_size={t.batch_size} must be positive")
  _require(o.accum_steps > 0 and t.batch_size % o.accum_steps == 0,
           f"config.optim.accum_steps={o.accum_steps} must divide config.train.batch_size={t.batch_size}")
  for name in ("log_every", "eval_every", "eval_batches"):
    _require(t[name] >= 0, f"config.train.{name}={t[name]} must be >= 0")
  _require(config.checkpoint.every >= 0, f"config.checkpoint.every={config.checkpoint.every} must be >= 0")
  _require(config.checkpoint.skip_nonfinite >= 0,
           f"config.checkpoint.skip_nonfinite={config.checkpoint.skip_nonfinite} must be >= 0")
  _require(config.checkpoint.keep > 0, f"config.checkpoint.keep={config.checkpoint.keep} must be positive")
  sharding.validate_mesh_config(config.mesh)
