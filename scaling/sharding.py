"""Mesh, logical-axis rules and distributed start-up: the only home of PartitionSpec literals.

Modules name their axes ('embed', 'mlp', 'batch', 'act_heads', ...); `config.mesh.rules` maps each
name to mesh axes. Parameters and optimizer state get NamedShardings from those names; activations
are constrained inside the forward pass through `constrain`, active only under `use_rules`.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import socket
import sys
import threading
import time

import jax
import numpy as np
from jax.experimental import mesh_utils, multihost_utils
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
  """Axis sizes with -1 resolved. The sizes are per slice (ICI); the data axis is then multiplied by
  dcn_data, the number of slices (TPU) or processes (GPU, CPU) it spans over the slower network."""
  dcn = mesh_config.dcn_data
  if num_devices % dcn:
    raise MeshError(f"config.mesh.dcn_data={dcn} does not divide the {num_devices} devices")
  per_slice, where = num_devices // dcn, f"{num_devices // dcn} devices{' per slice' if dcn > 1 else ''}"
  sizes = {a: mesh_config[a] for a in MESH_AXES}
  fixed = {a: s for a, s in sizes.items() if s != -1}
  shape = " x ".join(f"{a}={s}" for a, s in fixed.items())
  for axis, size in sizes.items():
    if size == -1:
      if per_slice % math.prod(fixed.values()):
        raise MeshError(f"config.mesh: {shape} = {math.prod(fixed.values())} does not divide the {where}, "
                        f"so {axis}=-1 has no size; make the product of the other axes divide {per_slice}")
      sizes[axis] = per_slice // math.prod(fixed.values())
  if math.prod(sizes.values()) != per_slice:
    raise MeshError(f"config.mesh: {shape} = {math.prod(sizes.values())} devices, but there are {where}; "
                    f"make the product {per_slice} (or set one axis to -1)")
  sizes["data"] *= dcn
  return sizes


def make_mesh(mesh_config, devices=None) -> Mesh:
  """The (data, fsdp, tensor) mesh, laid out by mesh_utils so the tensor axis gets the fastest links;
  with dcn_data > 1 a hybrid mesh whose data axis also spans the slices (or processes)."""
  devices = list(devices if devices is not None else jax.devices())
  sizes = mesh_shape(mesh_config, len(devices))
  dcn = mesh_config.dcn_data
  if dcn > 1:
    granule = "slice_index" if devices[0].platform == "tpu" else "process_index"
    found = len({getattr(d, granule) for d in devices})
    if found != dcn:
      raise MeshError(f"config.mesh.dcn_data={dcn}, but the devices span {found} "
                      f"{'slice(s)' if granule == 'slice_index' else 'process(es)'}; set it to {found}")
    ici = [sizes["data"] // dcn, sizes["fsdp"], sizes["tensor"]]
    grid = mesh_utils.create_hybrid_device_mesh(ici, [dcn, 1, 1], devices, process_is_granule=granule == "process_index",
                                                allow_split_physical_axes=True)
  else:
    shape = [sizes[a] for a in MESH_AXES]
    try:
      grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    except (ValueError, NotImplementedError, AssertionError):  # TPU topologies mesh_utils cannot place
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
        split = " x ".join(f"{a}={mesh.shape[a]}" for a in mesh_axes)
        raise MeshError(f"{what}: dimension '{name}' of size {shape[i]} is not divisible by mesh "
                        f"{'axes' if len(mesh_axes) > 1 else 'axis'} {split}; change the model size, the mesh "
                        f"or config.mesh.rules.{name}")
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


def platform() -> str:
  """The platform being traced for: that of the mesh under `use_rules` (a GPU the step is compiled for
  ahead of time, with no GPU here: `scaling.bench --target`), else JAX's default backend."""
  if _ACTIVE:
    return _ACTIVE[-1][0].devices.flat[0].platform
  return jax.default_backend()


def constrain(x: jax.Array, axes) -> jax.Array:
  """Pin activation `x` (one logical name or None per dimension) to the mesh by the active rules.

  The shape is checked: XLA would silently replicate a dimension its mesh axes do not divide."""
  if not _ACTIVE:
    return x
  mesh, rules = _ACTIVE[-1]
  return jax.lax.with_sharding_constraint(x, named(mesh, rules, axes, x.shape, "activation"))


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


def check_batch(config, mesh: Mesh, rules) -> None:
  """The global batch, and each accumulation microbatch, must split evenly over the batch axes."""
  batch_size, accum = config.train.batch_size, config.optim.accum_steps
  ways = math.prod(mesh.shape[a] for a in rules.get("batch", ()))
  if batch_size % ways or batch_size % jax.process_count():
    raise MeshError(f"config.train.batch_size={batch_size} is not divisible by the batch mesh axes "
                    f"({ways} ways) and the {jax.process_count()} processes; make it a multiple of "
                    f"{math.lcm(ways, jax.process_count())}")
  if (batch_size // accum) % ways:
    raise MeshError(f"config.optim.accum_steps={accum} splits config.train.batch_size={batch_size} into microbatches "
                    f"of {batch_size // accum}, not divisible by the batch mesh axes ({ways} ways); "
                    f"make the batch a multiple of {ways * accum} or accumulate fewer steps")


def bytes_per_device(tree) -> int:
  """Bytes of `tree`'s arrays held by the most loaded of this process's devices."""
  held = collections.Counter()
  for array in jax.tree.leaves(tree):
    for shard in array.addressable_shards:
      held[shard.device] += shard.data.nbytes
  return max(held.values(), default=0)


def check_processes_agree(config) -> None:
  """Every process must run the same config (so the same seeds); only `distributed` may differ."""
  if jax.process_count() == 1:
    return
  fields = {k: v for k, v in config.to_dict().items() if k != "distributed"}
  digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).digest()
  digests = multihost_utils.process_allgather(np.frombuffer(digest, np.uint8))
  differ = [p for p, d in enumerate(digests) if not np.array_equal(d, digests[0])]
  if differ:
    raise UserError(f"distributed: process(es) {', '.join(map(str, differ))} run a different config from process 0; "
                    "start every process with the same --config and overrides")


def cloud_tpu_vm_pod() -> bool:
  """A Cloud TPU VM slice of several hosts, as jax's own cluster detection sees it (the worker list from the
  VM's metadata server; internal API: False where it is missing)."""
  try:
    from jax._src.clusters import cloud_tpu_cluster as tpu
    if not (tpu.running_in_cloud_tpu_vm and tpu.GceTpuCluster.is_env_present()):
      return False
    return len(tpu.GceTpuCluster._get_worker_list_in_slice()) > 1
  except (ImportError, AttributeError):
    return False


def _host_and_port(address: str) -> tuple[str, int]:
  host, _, port = address.rpartition(":")
  if not port.isdigit() or not 0 < int(port) < 65536 or not host:
    raise UserError(f"distributed: coordinator address {address!r} needs a host and a port from 1 to 65535: "
                    "host:port")
  return host.strip("[]"), int(port)  # [::1]:1234


def check_coordinator_port(address: str, remedy: str | None = None) -> None:
  """Process 0 serves the coordinator on every interface at the address's port; gRPC crashes the process
  (a segmentation fault) when another program listens there, so see first that the port is free. `remedy`
  ends the error (default: choose another port in the address)."""
  _, port = _host_and_port(address)
  remedy = remedy or f"choose another port in the address {address!r}"
  for family in (socket.AF_INET6, socket.AF_INET):  # gRPC listens on IPv6's [::] (with IPv4), else on IPv4
    try:
      with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: a port in TIME_WAIT is free
        probe.bind(("", port))
        return
    except OSError as e:
      if e.errno in (errno.EADDRINUSE, errno.EACCES):
        raise UserError(f"distributed: process 0 serves the coordinator on port {port}, but this host cannot "
                        f"listen there ({e.strerror}: another run's coordinator?); {remedy}") from None
      # no IPv6 here: try IPv4; neither: leave it to jax.distributed


def slurm_coordinator_address() -> str | None:
  """Where jax.distributed puts an srun step's coordinator: the step's first node, port 61440 + the job id
  % 4096 (jax's SlurmCluster; None where this jax no longer says it that way)."""
  try:
    from jax._src.clusters import SlurmCluster
    return SlurmCluster.get_coordinator_address(None, None)
  except (ImportError, AttributeError, TypeError, KeyError):
    return None


def wait_for_coordinator(address: str, pid: int, timeout: float) -> None:
  """Wait until the coordinator at `address` accepts connections (process 0 may start later): jax.distributed
  would abort the process with a stack dump when it never does."""
  host, port = _host_and_port(address)
  deadline = time.monotonic() + timeout
  while True:
    try:
      socket.create_connection((host, port), timeout=max(min(5.0, deadline - time.monotonic()), 0.1)).close()
      return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise UserError(f"distributed: process {pid} could not reach the coordinator at {address} in {timeout:g} s "
                        f"({e.strerror or e}); start process 0 on that host, or correct the address") from None
      time.sleep(0.5)


def initialize_or_leave(late: str, timeout: float, **where) -> None:
  """jax.distributed.initialize, which waits for every process of the run and, when one never comes, aborts
  this one with a stack dump: at `timeout` this prints `late` as the one-line error and exits 2 first.

  The wait is inside C++ (with the GIL released), out of reach of exceptions, so a watchdog thread ends the
  process; jax's own deadline is a minute later, a backstop."""
  joined = threading.Event()

  def leave_if_late():
    if not joined.wait(timeout):
      print(f"error: {late}", file=sys.stderr, flush=True)
      os._exit(2)

  threading.Thread(target=leave_if_late, name="distributed-watchdog", daemon=True).start()
  try:
    jax.distributed.initialize(initialization_timeout=int(timeout) + 60, **where)
  finally:
    joined.set()


def initialize_distributed(dist_config) -> None:
  """Start jax.distributed when there is more than one process, before anything touches a device.

  An explicit coordinator (config.distributed.* or SCALING_COORDINATOR / SCALING_NUM_PROCESSES /
  SCALING_PROCESS_ID) wins; else an srun step of several SLURM tasks, a multi-host TPU slice on GKE or
  several slices (Megascale), or a Cloud TPU VM pod, whose environment tells jax the rest. (A TPU VM pod
  also forms without it, but only jax.distributed brings the preemption service that stops every process
  at one step on SIGTERM.)"""
  env = os.environ
  address = dist_config.coordinator_address or env.get("SCALING_COORDINATOR", "")
  num = dist_config.num_processes or int(env.get("SCALING_NUM_PROCESSES", "0"))
  pid = dist_config.process_id if dist_config.process_id >= 0 else int(env.get("SCALING_PROCESS_ID", "-1"))
  slurm = int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1  # set by srun, not in the batch script itself
  tpu_hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES", "")
  tpu_pod = "," in tpu_hosts or "MEGASCALE_COORDINATOR_ADDRESS" in env
  if not (address or slurm or tpu_pod or cloud_tpu_vm_pod()):
    return
  timeout = dist_config.init_timeout_s
  if timeout < 1:
    raise UserError(f"config.distributed.init_timeout_s={timeout} must be at least 1 (seconds)")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process CPU arrays need it
  if address:
    if num < 1 or pid < 0:
      raise UserError("distributed: with a coordinator address, set num_processes and process_id too "
                      "(config.distributed.* or SCALING_NUM_PROCESSES / SCALING_PROCESS_ID)")
    if pid == 0:
      check_coordinator_port(address)
    else:
      wait_for_coordinator(address, pid, timeout)
    late = (f"distributed: not every one of the {num} processes joined the coordinator at {address} in "
            f"{timeout:g} s (this is process {pid}); start each process_id from 0 to {num - 1} with this address "
            f"and num_processes={num}, or raise config.distributed.init_timeout_s")
    initialize_or_leave(late, timeout, coordinator_address=address, num_processes=num, process_id=pid)
  else:  # the cluster environment (SLURM, TPU metadata) says the rest
    if slurm and env.get("SLURM_PROCID") == "0" and (slurm_address := slurm_coordinator_address()):
      check_coordinator_port(slurm_address, "jax derives the port from the SLURM job id (61440 + id % 4096), so "
                             "a job on this node whose id differs by a multiple of 4096 has it: resubmit this one")
    late = (f"distributed: not every process of the run joined in {timeout:g} s (the cluster's environment "
            "named them); see the other processes' logs, or raise config.distributed.init_timeout_s")
    initialize_or_leave(late, timeout)
  log.info("process %d of %d", jax.process_index(), jax.process_count())
