"""Mesh, logical-axis rules and distributed start-up: the only home of PartitionSpec literals.

Modules name their axes ('embed', 'mlp', 'batch', 'act_heads', ...); `config.mesh.rules` maps each
name to mesh axes. Parameters and optimizer state get NamedShardings from those names; activations
are constrained inside the forward pass through `constrain`, active only under `use_rules`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scaling.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")  # ordered from the slowest-communicating to the fastest
log = logging.getLogger(__name__)


class MeshError(UserError):
  """A mesh that does not fit the devices, or a dimension its mesh axes do not divide."""


def parse_rules(rules_config) -> dict[str, tuple[str, ...]]:
  """{'embed': 'fsdp', 'batch': 'data,fsdp', 'x': ''} -> {'embed': ('fsdp',), 'batch': ('data', 'fsdp'), 'x': ()}."""
  return {name: tuple(a for a in value.split(",") if a) for name, value in rules_config.items()}


def validate_mesh_config(mesh_config) -> None:
  sizes = [mesh_config[a] for a in MESH_AXES]
  for axis, size in zip(MESH_AXES, sizes):
    if size == 0 or size < -1:
      raise MeshError(f"config.mesh.{axis}={size}: a mesh axis size is a positive integer or -1 (all remaining devices)")
  if sizes.count(-1) > 1:
    raise MeshError("config.mesh: at most one of data, fsdp, tensor may be -1")
  if mesh_config.dcn_data < 1:
    raise MeshError(f"config.mesh.dcn_data={mesh_config.dcn_data} must be a positive integer")
  for name, axes in parse_rules(mesh_config.rules).items():
    for axis in axes:
      if axis not in MESH_AXES:
        raise MeshError(f"config.mesh.rules.{name}={mesh_config.rules[name]!r}: mesh axes are {', '.join(MESH_AXES)}")


def mesh_shape(mesh_config, num_devices: int) -> dict[str, int]:
  """Axis sizes with -1 resolved; the product must be the device count (over all slices)."""
  per_slice, dcn = num_devices // mesh_config.dcn_data, mesh_config.dcn_data
  if num_devices % dcn:
    raise MeshError(f"config.mesh.dcn_data={dcn} does not divide the {num_devices} devices")
  sizes = {a: mesh_config[a] for a in MESH_AXES}
  known = math.prod(s for s in sizes.values() if s != -1)
  for axis, size in sizes.items():
    if size == -1:
      if per_slice % known:
        raise MeshError(f"config.mesh: the fixed axes (product {known}) do not divide the {per_slice} devices per slice")
      sizes[axis] = per_slice // known
  if math.prod(sizes.values()) != per_slice:
    shape = " x ".join(f"{a}={s}" for a, s in sizes.items())
    raise MeshError(f"config.mesh: {shape} = {math.prod(sizes.values())} devices, but there are {per_slice}"
                    f"{' per slice' if dcn > 1 else ''}; make the product {per_slice} (or set one axis to -1)")
  sizes["data"] *= dcn
  return sizes


def make_mesh(mesh_config, devices=None) -> Mesh:
  """The (data, fsdp, tensor) mesh; with dcn_data > 1 a hybrid mesh whose data axis spans slices."""
  devices = list(devices if devices is not None else jax.devices())
  sizes = mesh_shape(mesh_config, len(devices))
  shape = [sizes[a] for a in MESH_AXES]
  if mesh_config.dcn_data > 1:
    ici = [sizes["data"] // mesh_config.dcn_data, sizes["fsdp"], sizes["tensor"]]
    grid = mesh_utils.create_hybrid_device_mesh(ici, [mesh_config.dcn_data, 1, 1], devices,
                                                process_is_granule=devices[0].platform != "tpu")
  else:
    try:
      grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    except (ValueError, NotImplementedError, AssertionError):  # topologies mesh_utils cannot place
      grid = np.asarray(devices).reshape(shape)
  return Mesh(grid, MESH_AXES)


def spec(axes, rules, shape=None, mesh: Mesh | None = None, what: str = "array") -> PartitionSpec:
  """Logical axis names -> PartitionSpec; with shape and mesh, check every dimension divides."""
  parts, used = [], set()
  for i, name in enumerate(axes):
    mesh_axes = tuple(a for a in rules.get(name, ()) if a not in used) if name else ()
    used.update(mesh_axes)
    if shape is not None and mesh is not None and mesh_axes:
      ways = math.prod(mesh.shape[a] for a in mesh_axes)
      if shape[i] % ways:
        raise MeshError(f"{what}: dimension '{name}' of size {shape[i]} is not divisible by mesh axis "
                        f"{'x'.join(mesh_axes)}={ways}; change the model size, the mesh or config.mesh.rules.{name}")
    parts.append(mesh_axes[0] if len(mesh_axes) == 1 else (mesh_axes or None))
  return PartitionSpec(*parts)


def named(mesh: Mesh, rules, axes, shape=None, what: str = "array") -> NamedSharding:
  return NamedSharding(mesh, spec(axes, rules, shape, mesh, what))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


_ACTIVE: list[tuple[Mesh, dict]] = []


@contextlib.contextmanager
def use_rules(mesh: Mesh, rules):
  """Within this context (while tracing), `constrain` pins activations to the mesh by the rules."""
  _ACTIVE.append((mesh, rules))
  try:
    yield
  finally:
    _ACTIVE.pop()


def constrain(x: jax.Array, axes) -> jax.Array:
  if not _ACTIVE:
    return x
  mesh, rules = _ACTIVE[-1]
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec(axes, rules)))


def param_shardings(abstract_state, mesh: Mesh, rules):
  """An nnx.State of abstract Params (with `axes` metadata) -> a pure dict of NamedShardings."""
  from flax import nnx

  def to_sharding(path, variable):
    what = "parameter " + "/".join(map(str, path))
    return variable.replace(named(mesh, rules, variable.get_metadata()["axes"], variable.shape, what))

  return nnx.to_pure_dict(nnx.map_state(to_sharding, abstract_state))


def batch_sharding(mesh: Mesh, rules) -> NamedSharding:
  return NamedSharding(mesh, spec(("batch", "length"), rules))


def global_batch(local_batch: dict, mesh: Mesh, rules) -> dict:
  """This process's rows -> global jax.Arrays split over the batch mesh axes (multi-host safe)."""
  sharding = batch_sharding(mesh, rules)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def check_batch(batch_size: int, mesh: Mesh, rules) -> None:
  ways = math.prod(mesh.shape[a] for a in rules.get("batch", ()))
  if batch_size % ways or batch_size % jax.process_count():
    raise MeshError(f"config.train.batch_size={batch_size} is not divisible by the batch mesh axes "
                    f"({ways} ways) and the {jax.process_count()} processes; make it a multiple of "
                    f"{math.lcm(ways, jax.process_count())}")


def bytes_per_device(tree) -> int:
  """Bytes of `tree`'s arrays held on the first local device (the most loaded one for even splits)."""
  device = jax.local_devices()[0]
  return sum(s.data.nbytes for a in jax.tree.leaves(tree) for s in a.addressable_shards if s.device == device)


def initialize_distributed(dist_config) -> None:
  """Start jax.distributed when there is more than one process: an explicit coordinator (config or
  SCALING_COORDINATOR / SCALING_NUM_PROCESSES / SCALING_PROCESS_ID), else SLURM or a TPU pod."""
  address = dist_config.coordinator_address or os.environ.get("SCALING_COORDINATOR", "")
  num = dist_config.num_processes or int(os.environ.get("SCALING_NUM_PROCESSES", "0"))
  pid = dist_config.process_id if dist_config.process_id >= 0 else int(os.environ.get("SCALING_PROCESS_ID", "-1"))
  slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ
  tpu_pod = "TPU_WORKER_HOSTNAMES" in os.environ and "," in os.environ["TPU_WORKER_HOSTNAMES"]
  if not (address or slurm or tpu_pod):
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process CPU arrays need it
  if address:
    if num < 1 or pid < 0:
      raise UserError("distributed: with a coordinator address, set num_processes and process_id too "
                      "(config.distributed.* or SCALING_NUM_PROCESSES / SCALING_PROCESS_ID)")
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
  else:
    jax.distributed.initialize()  # the cluster environment (SLURM, TPU metadata) says the rest
  log.info("process %d of %d", jax.process_index(), jax.process_count())
