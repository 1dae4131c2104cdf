"""The 8-device side of tests/test_sharding.py, run in a subprocess whose XLA_FLAGS (set by the test
before jax is imported here) give it 8 CPU devices.

  python tests/sharding_worker.py OUT_DIR

For each mesh in MESHES, from the same seed and batches: 3 training steps (losses, gradient norms,
the first step's per-parameter gradients, the final parameters) and every state leaf's PartitionSpec;
the same 3 steps with the blocks scanned on one mesh.
Also the memory of the fsdp=8 state, the activations' shardings in the forward pass and the error of
an activation its mesh axes do not divide. Writes OUT_DIR/arrays.npz and OUT_DIR/results.json.
"""

import json
import math
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scaling import config as config_lib
from scaling import sharding
from scaling.steps import Trainer

MESHES = {  # name -> mesh axis sizes (the rest 1)
    "1": {},
    "data=8": {"data": 8},
    "fsdp=8": {"fsdp": 8},
    "data=2,fsdp=2,tensor=2": {"data": 2, "fsdp": 2, "tensor": 2},
    "fsdp=2,tensor=4": {"fsdp": 2, "tensor": 4},
}
ARRAY_DTYPES = {"f32": "float32", "s32": "int32", "u32": "uint32"}  # HLO names of the state's and RNG's
STEPS, BATCH, SEQ, VOCAB = 3, 16, 32, 256
MODEL = {"model.num_layers": 1, "model.d_model": 64, "model.num_heads": 8, "model.num_kv_heads": 4,
         "model.d_ff": 128, "model.vocab_size": VOCAB, "model.max_len": SEQ}  # GQA; every dim divides 8


def load(mesh_axes: dict, **overrides):
  mesh = {f"mesh.{a}": mesh_axes.get(a, 1) for a in sharding.MESH_AXES}
  return config_lib.load("configs/base.py", {
      **MODEL, **mesh, "data.seq_len": SEQ, "train.batch_size": BATCH, "train.steps": STEPS,
      "optim.warmup_steps": 1, **overrides})


def batches() -> list[dict]:
  tokens = np.random.default_rng(0).integers(0, VOCAB, (STEPS, BATCH, SEQ + 1), dtype=np.int32)
  weights = np.ones((BATCH, SEQ), np.float32)
  weights[:, -4:] = 0.0  # some padding, so the weighting is exercised too
  return [{"inputs": t[:, :-1], "targets": t[:, 1:], "weights": weights} for t in tokens]


def flat(tree, prefix: str) -> dict:
  return {prefix + jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def specs(tree) -> dict:
  return {jax.tree_util.keystr(path): str(leaf.sharding.spec)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def shard_shapes(tree) -> dict:
  return {jax.tree_util.keystr(path): list(leaf.addressable_shards[0].data.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def train(name: str, arrays: dict) -> dict:
  """3 steps on mesh `name`; arrays gets the first step's gradients and the final parameters."""
  axes = MESHES[name]
  config = load(axes)
  mesh = sharding.make_mesh(config.mesh, jax.devices()[:math.prod(axes.values())])
  trainer = Trainer(config, mesh)
  state = trainer.init()
  result = {"specs": specs(state), "shard_shapes": shard_shapes(state["params"]), "mesh": dict(mesh.shape),
            "losses": [], "grad_norms": []}
  data = [sharding.global_batch(b, mesh, trainer.rules) for b in batches()]
  if name == "data=2,fsdp=2,tensor=2":
    result["activations"] = activations(trainer, state["params"], data[0])
  if name == "fsdp=8":
    result["memory"] = memory(trainer, state)
  for step, batch in enumerate(data):
    state, metrics = trainer.train_step(state, batch)
    result["losses"].append(float(metrics["loss"]))
    result["grad_norms"].append(float(metrics["grad_norm"]))
    if step == 0:  # Adam's first moment after one step is (1 - b1) x the (unclipped: norm < 1) gradient
      mu = optax.tree.get(state["opt_state"], "mu")
      arrays.update(flat(jax.tree.map(lambda m: m / (1 - config.optim.b1), mu), f"{name}/grads"))
  arrays.update(flat(state["params"], f"{name}/params"))
  return result


def train_scanned(name: str) -> dict:
  """3 steps on mesh `name` of a 3-layer model (dropout, remat=dots), as a loop and with the blocks
  scanned two per iteration from the loop's initial params restacked: both runs' losses, the final
  params' largest difference, and the scanned params' PartitionSpecs."""
  axes = MESHES[name]
  options = {"model.num_layers": 3, "model.dropout": 0.1, "model.remat": "dots"}
  mesh = sharding.make_mesh(load(axes).mesh, jax.devices()[:math.prod(axes.values())])
  loop = Trainer(load(axes, **options), mesh)
  scan = Trainer(load(axes, **options, **{"model.scan_layers": True, "model.scan_unroll": 2}), mesh)
  state = loop.init()
  layers = [state["params"]["blocks"][i] for i in range(3)]
  params = {**state["params"], "blocks": jax.tree.map(lambda *xs: jnp.stack(xs), *layers)}
  scanned = jax.jit(lambda p: {"params": p, "opt_state": scan.optimizer.init(p), "step": jnp.zeros((), jnp.int32)},
                    out_shardings=scan.state_shardings)(params)
  result = {"specs": specs(scanned["params"]), "losses": [], "loop_losses": []}
  for batch in batches():
    scanned, metrics = scan.train_step(scanned, sharding.global_batch(batch, mesh, scan.rules))
    result["losses"].append(float(metrics["loss"]))
    state, metrics = loop.train_step(state, sharding.global_batch(batch, mesh, loop.rules))
    result["loop_losses"].append(float(metrics["loss"]))
  loop_params = jax.device_get(state["params"])
  layers = [loop_params["blocks"][i] for i in range(3)]
  restacked = {**loop_params, "blocks": jax.tree.map(lambda *xs: np.stack(xs), *layers)}
  result["max_param_diff"] = max(float(np.abs(a - b).max()) for a, b in
                                 zip(jax.tree.leaves(restacked), jax.tree.leaves(jax.device_get(scanned["params"]))))
  return result


def activations(trainer: Trainer, params, batch) -> dict:
  """Per-device shapes of the forward pass's residual stream and logits: how the constraints split them."""

  def forward(params, tokens):
    with sharding.use_rules(trainer.mesh, trainer.rules):
      model = nnx.merge(trainer.graphdef, params)
      hidden = model.hidden(tokens)
      return hidden, model.logits(hidden)

  hidden, logits = jax.jit(forward)(params, batch["inputs"])
  return {"hidden": list(hidden.addressable_shards[0].data.shape),
          "logits": list(logits.addressable_shards[0].data.shape)}


def memory(trainer: Trainer, state) -> dict:
  """Per-device bytes of the state, and the largest array (in bytes) anywhere in the compiled
  per-device initialisation program."""
  hlo = trainer.init.lower().compile().as_text()
  init_largest = max(np.dtype(ARRAY_DTYPES[dtype]).itemsize * math.prod(map(int, dims.split(",")))
                     for dtype, dims in re.findall(r"\b(f32|s32|u32)\[([0-9,]+)\]", hlo))
  leaves = jax.tree.leaves([state["params"], state["opt_state"]])
  return {"per_device": sharding.bytes_per_device(leaves), "total": sum(a.nbytes for a in leaves),
          "largest": max(a.nbytes for a in leaves), "init_largest": init_largest}


def indivisible_activation() -> str:
  """Accumulating 16 rows in 4 microbatches of 4 on data=8: the error tracing the step raises."""
  config = load({"data": 8}, **{"optim.accum_steps": 4})
  trainer = Trainer(config, sharding.make_mesh(config.mesh))
  try:
    trainer.train_step.trace(trainer.abstract_state(),
                             sharding.global_batch(batches()[0], trainer.mesh, trainer.rules))
  except sharding.MeshError as e:
    return str(e)
  return ""


def main(out_dir: str) -> None:
  assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
  arrays = {}
  results = {"meshes": {name: train(name, arrays) for name in MESHES},
             "scanned": train_scanned("data=2,fsdp=2,tensor=2"), "indivisible_activation": indivisible_activation()}
  np.savez(os.path.join(out_dir, "arrays.npz"), **arrays)
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(sys.argv[1])
