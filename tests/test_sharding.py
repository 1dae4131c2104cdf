"""Sharding (issue #4): meshes, the rules table, sharded initialisation, multi-host, one-line errors.

Tests that need several devices run in subprocesses, because XLA_FLAGS must be set before jax is
imported: tests/sharding_worker.py for the 8-device meshes, the training CLI for multi-host and errors.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from common import free_port, xla_flags
from configs import base
from scaling import sharding
from scaling.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_VARIABLES = ("SLURM_", "SCALING_", "TPU_", "MEGASCALE_")  # prefixes of what initialize_distributed reads
TIMEOUT_S = 420  # a group of subprocesses is killed this long after its start, whatever happens


def subprocess_env(devices: int, **extra) -> dict:
  """This environment with `devices` CPU devices and no cluster variables, plus `extra`."""
  env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER_VARIABLES)}
  env.update(XLA_FLAGS=xla_flags(devices), JAX_PLATFORMS="cpu", **extra)
  return env


def run_all(commands: dict, logs: Path, timeout: float = TIMEOUT_S) -> dict:
  """Run {name: (argv, env)} concurrently; -> {name: (returncode, stderr)}. Kills all on the way out."""
  logs.mkdir(parents=True, exist_ok=True)
  procs, deadline = {}, time.monotonic() + timeout
  try:
    for name, (argv, env) in commands.items():
      with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
        procs[name] = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=err)
    for proc in procs.values():
      proc.wait(timeout=max(deadline - time.monotonic(), 0))  # raises TimeoutExpired past the deadline
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  return {name: (proc.returncode, (logs / f"{name}.err").read_text()) for name, proc in procs.items()}


def check_ok(outcomes: dict) -> None:
  for name, (code, stderr) in outcomes.items():
    assert code == 0, f"{name} exited {code}:\n{stderr[-3000:]}"


# ---------------------------------------------------------------- 8 devices, one process

@pytest.fixture(scope="module")
def worker(tmp_path_factory):
  out = tmp_path_factory.mktemp("sharding_worker")
  argv = [sys.executable, str(ROOT / "tests" / "sharding_worker.py"), str(out)]
  outcomes = run_all({"worker": (argv, subprocess_env(8))}, out)
  check_ok(outcomes)
  return json.loads((out / "results.json").read_text()), dict(np.load(out / "arrays.npz")), outcomes["worker"][1]


def test_losses_and_gradients_equal_on_every_mesh(worker):
  results, arrays, _ = worker
  meshes = results["meshes"]
  assert {name: m["mesh"] for name, m in meshes.items()} == {
      "1": {"data": 1, "fsdp": 1, "tensor": 1}, "data=8": {"data": 8, "fsdp": 1, "tensor": 1},
      "fsdp=8": {"data": 1, "fsdp": 8, "tensor": 1}, "data=2,fsdp=2,tensor=2": {"data": 2, "fsdp": 2, "tensor": 2},
      "fsdp=2,tensor=4": {"data": 1, "fsdp": 2, "tensor": 4}}
  reference = meshes["1"]
  assert abs(reference["losses"][0] - np.log(256)) < 0.1  # an untrained model on uniform random tokens
  leaves = sorted(k[len("1/"):] for k in arrays if k.startswith("1/"))
  assert len(leaves) == 2 * 11  # gradients and parameters: embed, final norm; 2 norms, q, k, v, o, up, gate, down
  for name, mesh in meshes.items():
    # Observed: losses within 1e-6, gradients within 1e-6 of their largest entry, parameters 3e-7.
    np.testing.assert_allclose(mesh["losses"], reference["losses"], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(mesh["grad_norms"], reference["grad_norms"], rtol=1e-5, err_msg=name)
    for leaf in leaves:
      want, got = arrays[f"1/{leaf}"], arrays[f"{name}/{leaf}"]
      # gradients: relative to the largest; parameters: 5e-6 is 0.5% of one step's update (lr 1e-3)
      atol = 1e-5 * np.abs(want).max() if leaf.startswith("grads") else 5e-6
      np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=f"{name} {leaf}")


EXPECTED = {  # parameter -> (its logical axes ->) its PartitionSpec under the default rules
    "['embed']": ("tensor", "fsdp"),  # (vocab, embed)
    "['attn']['q']['kernel']": ("fsdp", "tensor", None),  # (embed, heads, head_dim)
    "['attn']['k']['kernel']": ("fsdp", "tensor", None),  # (embed, kv_heads, head_dim)
    "['attn']['v']['kernel']": ("fsdp", "tensor", None),
    "['attn']['o']['kernel']": ("tensor", None, "fsdp"),  # (heads, head_dim, embed)
    "['mlp']['up']['kernel']": ("fsdp", "tensor"),  # (embed, mlp)
    "['mlp']['gate']['kernel']": ("fsdp", "tensor"),
    "['mlp']['down']['kernel']": ("tensor", "fsdp"),  # (mlp, embed)
    "['scale']": (None,),  # (norm,)
}


def test_state_shardings_follow_the_rules(worker):
  results, _, _ = worker
  for name, mesh in results["meshes"].items():
    for path, spec in mesh["specs"].items():
      if path.endswith(("['step']", ".count")):  # scalars
        assert spec == str(PartitionSpec()), (name, path)
        continue
      assert "['params']" in path or ".mu[" in path or ".nu[" in path, path  # Adam's moments follow the params
      [expected] = [axes for suffix, axes in EXPECTED.items() if path.endswith(suffix)]
      assert spec == str(PartitionSpec(*expected)), (name, path)
    # and the arrays are split that way: each dimension divided by its mesh axes' sizes
    full = results["meshes"]["1"]["shard_shapes"]
    for path, shape in mesh["shard_shapes"].items():
      [axes] = [axes for suffix, axes in EXPECTED.items() if path.endswith(suffix)]
      ways = [mesh["mesh"][a] if a else 1 for a in axes]
      assert shape == [n // w for n, w in zip(full[path], ways)], (name, path)
  up = "['blocks'][0]['mlp']['up']['kernel']"  # (embed 64, mlp 128)
  assert results["meshes"]["fsdp=2,tensor=4"]["shard_shapes"][up] == [32, 32]
  assert results["meshes"]["fsdp=8"]["shard_shapes"][up] == [8, 128]


def test_scanned_blocks_shard_and_train_like_the_loop(worker):
  results, _, _ = worker
  scanned = results["scanned"]  # data=2 x fsdp=2 x tensor=2, 3 layers, from the loop's initial params
  np.testing.assert_allclose(scanned["losses"], scanned["loop_losses"], rtol=1e-5)
  assert scanned["max_param_diff"] < 1e-6  # observed: 8e-8 (lr 1e-3 moves params by ~1e-3 a step)
  # the stacked layers axis is replicated; the rest follow the rules as in the loop
  assert scanned["specs"]["['blocks']['attn']['q']['kernel']"] == str(PartitionSpec(None, "fsdp", "tensor", None))
  assert scanned["specs"]["['blocks']['mlp']['down']['kernel']"] == str(PartitionSpec(None, "tensor", "fsdp"))
  assert scanned["specs"]["['blocks']['attn_norm']['scale']"] == str(PartitionSpec(None, None))


def test_no_involuntary_rematerialisation(worker):
  """XLA's SPMD partitioner warns when it must replicate an array to reshard it (it did at the embedding
  lookup with tensor > 1 until the table was gathered over fsdp first)."""
  assert "Involuntary full rematerialization" not in worker[2]


def test_activations_are_constrained(worker):
  results, _, _ = worker
  # data=2 x fsdp=2 x tensor=2, batch 16 x length 32: rows over data x fsdp, logits' vocab over tensor
  assert results["meshes"]["data=2,fsdp=2,tensor=2"]["activations"] == {"hidden": [4, 32, 64], "logits": [4, 32, 128]}


def test_activation_not_divisible_is_one_line(worker):
  results, _, _ = worker  # 16 rows in 4 microbatches of 4 on data=8
  assert results["indivisible_activation"] == (
      "activation: dimension 'batch' of size 4 is not divisible by mesh axes data=8 x fsdp=1; "
      "change the model size, the mesh or config.mesh.rules.batch")


def test_fsdp_memory_and_sharded_init(worker):
  memory = worker[0]["meshes"]["fsdp=8"]["memory"]
  ratio = memory["per_device"] / (memory["total"] / 8)
  assert ratio <= 1.15, f"per-device bytes {memory['per_device']:,} = {ratio:.3f} x total / 8"
  # no device ever holds a whole parameter while initialising: the largest array in init's program is
  # the largest parameter's 1/8 shard
  assert memory["init_largest"] == memory["largest"] // 8


# ---------------------------------------------------------------- multi-host, and the CLI's errors

def train_argv(workdir: Path, *overrides: str) -> list[str]:
  return [sys.executable, "-m", "scaling.train", "--config=configs/lm.py:50k", f"--workdir={workdir}",
          "--config.data.dataset=synthetic", "--config.data.seq_len=64", "--config.train.batch_size=8",
          "--config.train.steps=3", "--config.optim.warmup_steps=1", "--config.train.log_every=1",
          "--config.train.eval_batches=1", "--config.train.progress=false", *overrides]


SLURM_PORT_BASE = 65535 - 2**12 + 1  # jax's SLURM coordinator port: this + SLURM_JOB_ID % 4096


@pytest.fixture(scope="module")
def multihost(tmp_path_factory):
  """A 4-device single process, and pairs of 2-device processes sharing a workdir (as hosts share a
  file system): an explicit coordinator on a data=4 mesh; an srun-like SLURM step on a hybrid mesh
  (data over the 2 processes x fsdp=2 within each); an explicit pair whose process 1 has another seed."""
  root = tmp_path_factory.mktemp("multihost")
  commands = {"single": (train_argv(root / "single", "--config.mesh.data=4", "--config.mesh.fsdp=1"),
                         subprocess_env(4))}
  coordinator = f"127.0.0.1:{free_port()}"
  for i in range(2):
    commands[f"explicit{i}"] = (
        train_argv(root / "explicit", "--config.mesh.data=4", "--config.mesh.fsdp=1"),
        subprocess_env(2, SCALING_COORDINATOR=coordinator, SCALING_NUM_PROCESSES="2", SCALING_PROCESS_ID=str(i)))
  slurm_job = free_port(SLURM_PORT_BASE, 65535) - SLURM_PORT_BASE
  for i in range(2):
    commands[f"slurm{i}"] = (
        train_argv(root / "slurm", "--config.mesh.dcn_data=2", "--config.mesh.data=1", "--config.mesh.fsdp=2"),
        subprocess_env(2, SLURM_JOB_ID=str(slurm_job), SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2",
                       SLURM_STEP_NUM_TASKS="2", SLURM_PROCID=str(i), SLURM_LOCALID=str(i)))
  coordinator = f"127.0.0.1:{free_port()}"
  for i in range(2):
    commands[f"disagree{i}"] = (
        train_argv(root / "disagree", "--config.mesh.data=4", "--config.mesh.fsdp=1", f"--config.seed={i}"),
        subprocess_env(2, SCALING_COORDINATOR=coordinator, SCALING_NUM_PROCESSES="2", SCALING_PROCESS_ID=str(i)))
  coordinator = f"127.0.0.1:{free_port()}"
  for i in range(2):  # as hosts without shared storage: each process its own workdir
    commands[f"apart{i}"] = (
        train_argv(root / f"apart{i}", "--config.mesh.data=4", "--config.mesh.fsdp=1"),
        subprocess_env(2, SCALING_COORDINATOR=coordinator, SCALING_NUM_PROCESSES="2", SCALING_PROCESS_ID=str(i)))
  return root, run_all(commands, root / "logs")


def losses(workdir: Path) -> list[tuple[int, str, float]]:
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [(r["step"], r["split"], r["loss"]) for r in records]


def log_lines(stderr: str) -> list[str]:
  """The training program's log messages (lines stamped HH:MM:SS), without the stamp."""
  return [line[9:] for line in stderr.splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)]


def state_bytes(stderr: str) -> tuple[int, int]:
  """The start-up log's per-device bytes of parameters and optimizer state."""
  [(params, opt)] = re.findall(r"per-device bytes: parameters ([\d,]+), optimizer state ([\d,]+)", stderr)
  return int(params.replace(",", "")), int(opt.replace(",", ""))


@pytest.mark.parametrize("pair,mesh", [("explicit", "{'data': 4, 'fsdp': 1, 'tensor': 1}"),
                                       ("slurm", "{'data': 2, 'fsdp': 2, 'tensor': 1}")])
def test_two_processes_match_one(multihost, pair, mesh):
  root, outcomes = multihost
  check_ok({name: outcomes[name] for name in ("single", f"{pair}0", f"{pair}1")})
  want, got = losses(root / "single"), losses(root / pair)
  records = [(step, split) for step, split, _ in got]
  assert records == [(step, split) for step, split, _ in want]
  assert len(set(records)) == len(records) and {(3, "train"), (3, "eval")} <= set(records)  # each once
  np.testing.assert_allclose([r[2] for r in got], [r[2] for r in want], rtol=1e-5)
  # only process 0 writes (metrics once, above) and logs, beyond naming itself
  assert log_lines(outcomes[f"{pair}1"][1]) == ["process 1 of 2"]
  lead = log_lines(outcomes[f"{pair}0"][1])
  assert lead[:2] == ["process 0 of 2", f"mesh {mesh} on 4 cpu device(s) in 2 process(es)"]
  # float32 parameters (+ Adam's mu and nu, its int32 step count): replicated on data=4, as in the single
  # process; on fsdp=2 halved, but for the replicated norms (lm 50k: 5 norms of d_model 48)
  n = json.loads((root / "single" / "summary.json").read_text())["N"]
  assert state_bytes(outcomes["single"][1]) == (4 * n, 8 * n + 4)
  per_device = n if pair == "explicit" else (n + 5 * 48) // 2
  assert state_bytes(outcomes[f"{pair}0"][1]) == (4 * per_device, 8 * per_device + 4)


@pytest.mark.parametrize("pair,message", [
    ("disagree", "distributed: process(es) 1 run a different config from process 0; start every process with the "
                 "same --config and overrides"),
    # without shared storage the first checkpoint would wait for ever: both processes stop at start-up
    ("apart", "--workdir={workdir}: process(es) 1 do not see what process 0 writes there; a run's processes must "
              "share its workdir (storage every host mounts, at the same path)")])
def test_processes_must_agree_on_the_config_and_share_the_workdir(multihost, pair, message):
  root, outcomes = multihost
  for i in range(2):
    code, stderr = outcomes[f"{pair}{i}"]
    assert code == 2, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "error: " + message.format(workdir=root / f"{pair}{i}")
  assert not list(root.glob(f"{pair}*/checkpoints"))


def test_a_dead_peer_ends_the_run_in_one_line_at_once(tmp_path):
  """One process of a pair is killed mid-run: the other stops within seconds with a one-line error, not
  after jax.distributed's heartbeat timeout (100 s) with a stack dump."""
  coordinator, workdir = f"127.0.0.1:{free_port()}", tmp_path / "run"
  argv = train_argv(workdir, "--config.mesh.data=2", "--config.mesh.fsdp=1", "--config.train.steps=100000",
                    "--config.train.eval_every=0", "--config.checkpoint.every=0")
  envs = [subprocess_env(1, SCALING_COORDINATOR=coordinator, SCALING_NUM_PROCESSES="2", SCALING_PROCESS_ID=str(i))
          for i in range(2)]
  procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
           for env in envs]
  try:
    metrics, deadline = workdir / "metrics.jsonl", time.monotonic() + 240
    while not (metrics.exists() and metrics.stat().st_size) and time.monotonic() < deadline:
      time.sleep(0.05)
    procs[1].kill()
    killed = time.monotonic()
    _, stderr = procs[0].communicate(timeout=60)
    waited = time.monotonic() - killed
  finally:
    for proc in procs:
      proc.kill()
      proc.wait()
  last = stderr.strip().splitlines()[-1]
  assert procs[0].returncode == 1 and waited < 30, (waited, stderr[-3000:])
  assert re.fullmatch(r"error: process 0 of 2: a step across the processes failed \(.+\); if another process "
                      r"stopped, its log says why\. The checkpoints are as they were: run every process again to "
                      r"resume from the newest", last), stderr[-3000:]
  assert "Traceback" not in stderr


@pytest.fixture(scope="module")
def cli_errors(tmp_path_factory):
  """The training CLI on 8 devices with meshes or models that do not fit."""
  root = tmp_path_factory.mktemp("cli_errors")
  cases = {"indivisible": ["--config.mesh.tensor=3"], "product": ["--config.mesh.data=4", "--config.mesh.fsdp=4"],
           "heads": ["--config.model.num_heads=12", "--config.model.head_dim=16", "--config.mesh.tensor=8"],
           "dcn": ["--config.mesh.dcn_data=2"], "microbatch": ["--config.optim.accum_steps=2"]}
  return run_all({name: (train_argv(root / name, *args), subprocess_env(8)) for name, args in cases.items()},
                 root / "logs", timeout=120)


@pytest.mark.parametrize("case,message", [
    ("indivisible", "config.mesh: data=1 x tensor=3 = 3 does not divide the 8 devices, so fsdp=-1 has no size; "
                    "make the product of the other axes divide 8"),
    ("product", "config.mesh: data=4 x fsdp=4 x tensor=1 = 16 devices, but there are 8 devices; "
                "make the product 8 (or set one axis to -1)"),
    ("heads", "parameter blocks/0/attn/k/kernel: dimension 'kv_heads' of size 12 is not divisible by mesh axis "
              "tensor=8; change the model size, the mesh or config.mesh.rules.kv_heads"),
    ("dcn", "config.mesh.dcn_data=2, but the devices span 1 process(es); set it to 1"),
    ("microbatch", "config.optim.accum_steps=2 splits config.train.batch_size=8 into microbatches of 4, not "
                   "divisible by the batch mesh axes (8 ways); make the batch a multiple of 16 or accumulate fewer steps"),
])
def test_cli_mesh_errors_are_one_line(cli_errors, case, message):
  code, stderr = cli_errors[case]
  assert code == 2
  assert stderr.strip().splitlines() == [f"error: {message}"]


# ---------------------------------------------------------------- in this process

def mesh_config(**sizes):
  config = base.get_config().mesh
  config.update(sizes)
  return config


@pytest.mark.parametrize("sizes,devices,shape", [
    ({}, 8, {"data": 1, "fsdp": 8, "tensor": 1}),  # the defaults: fsdp=-1
    ({"data": 2, "tensor": 2}, 8, {"data": 2, "fsdp": 2, "tensor": 2}),
    ({"data": -1, "fsdp": 1, "tensor": 4}, 8, {"data": 2, "fsdp": 1, "tensor": 4}),
    ({"dcn_data": 2, "tensor": 2}, 16, {"data": 2, "fsdp": 4, "tensor": 2}),  # per slice: fsdp=-1 is 4
    ({"dcn_data": 4, "data": 2, "fsdp": 1, "tensor": -1}, 32, {"data": 8, "fsdp": 1, "tensor": 4}),
])
def test_mesh_shape(sizes, devices, shape):
  assert sharding.mesh_shape(mesh_config(**sizes), devices) == shape


def test_rules_map_logical_axes():
  rules = sharding.parse_rules(base.get_config().mesh.rules)
  assert rules["batch"] == ("data", "fsdp") and rules["act_embed"] == ()
  assert sharding.spec(("batch", "length", "act_embed"), rules) == PartitionSpec(("data", "fsdp"), None, None)
  assert sharding.spec(("embed", "mlp"), rules) == PartitionSpec("fsdp", "tensor")
  assert sharding.spec(("batch", "embed"), rules) == PartitionSpec(("data", "fsdp"), None)  # fsdp used once
  assert sharding.spec(("norm", None), rules) == PartitionSpec(None, None)  # unlisted: replicated
  edited = sharding.parse_rules(ml_collections.ConfigDict({"embed": "", "mlp": "fsdp,tensor"}))
  assert sharding.spec(("embed", "mlp"), edited) == PartitionSpec(None, ("fsdp", "tensor"))


def test_partition_spec_literals_only_in_the_sharding_module():
  users = [path.relative_to(ROOT).as_posix() for path in (ROOT / "scaling").rglob("*.py")
           if re.search(r"PartitionSpec|\bP\(", path.read_text())]
  assert users == ["scaling/sharding.py"]


def clear_cluster_env(monkeypatch):
  for name in list(os.environ):
    if name.startswith(CLUSTER_VARIABLES):
      monkeypatch.delenv(name)


@pytest.mark.parametrize("env,expected", [
    ({}, None),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_PROCID": "0"}, None),  # the batch script, not an srun step
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"}, {}),
    ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),  # a single-host TPU VM
    ({"TPU_WORKER_HOSTNAMES": "t0,t1"}, {}),  # a TPU slice of two hosts on GKE
    ({"MEGASCALE_COORDINATOR_ADDRESS": "t0:8080"}, {}),  # several slices
    ({"SCALING_COORDINATOR": "10.0.0.1:1234", "SCALING_NUM_PROCESSES": "4", "SCALING_PROCESS_ID": "3"},
     {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}),
])
def test_initialize_distributed_detects_clusters(monkeypatch, env, expected):
  calls, waits = [], []
  monkeypatch.setattr(sharding.jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  monkeypatch.setattr(sharding, "wait_for_coordinator", lambda *args: waits.append(args))
  monkeypatch.setattr(sharding.jax.config, "update", lambda *args: None)
  clear_cluster_env(monkeypatch)
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  sharding.initialize_distributed(base.get_config().distributed)
  assert calls == ([] if expected is None else [{**expected, "initialization_timeout": 360}])
  assert waits == ([("10.0.0.1:1234", 3, 300)] if "SCALING_COORDINATOR" in env else [])


def test_initialize_distributed_on_a_cloud_tpu_vm_pod(monkeypatch):
  """A TPU VM pod has no cluster variables: jax's detection (its metadata server) says it, and jax.distributed
  starts there too, for the preemption service that stops every host at one step."""
  calls = []
  monkeypatch.setattr(sharding.jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  monkeypatch.setattr(sharding.jax.config, "update", lambda *args: None)
  clear_cluster_env(monkeypatch)
  assert not sharding.cloud_tpu_vm_pod()  # this machine
  monkeypatch.setattr(sharding, "cloud_tpu_vm_pod", lambda: True)
  sharding.initialize_distributed(base.get_config().distributed)
  assert calls == [{"initialization_timeout": 360}]


def test_a_coordinator_port_in_use_is_one_line(monkeypatch):
  """Another program listening on the coordinator's port would crash process 0 inside jax.distributed (a
  segmentation fault): it is a one-line error before, for process 0 only; a port that is free goes on."""
  calls = []
  monkeypatch.setattr(sharding.jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  monkeypatch.setattr(sharding.jax.config, "update", lambda *args: None)
  clear_cluster_env(monkeypatch)
  with socket.socket() as other:
    other.bind(("127.0.0.1", 0))
    other.listen()
    port = other.getsockname()[1]
    monkeypatch.setenv("SCALING_COORDINATOR", f"127.0.0.1:{port}")
    monkeypatch.setenv("SCALING_NUM_PROCESSES", "2")
    monkeypatch.setenv("SCALING_PROCESS_ID", "0")
    message = (f"distributed: process 0 serves the coordinator on port {port}, but this host cannot listen there "
               f"(Address already in use: another run's coordinator?); choose another port in the address "
               f"'127.0.0.1:{port}'")
    with pytest.raises(UserError) as error:
      sharding.initialize_distributed(base.get_config().distributed)
    assert str(error.value) == message and calls == []
    monkeypatch.setenv("SCALING_PROCESS_ID", "1")  # the others connect to it
    sharding.initialize_distributed(base.get_config().distributed)
  monkeypatch.setenv("SCALING_PROCESS_ID", "0")  # free again
  sharding.initialize_distributed(base.get_config().distributed)
  assert [c["process_id"] for c in calls] == [1, 0]
  monkeypatch.setenv("SCALING_COORDINATOR", "127.0.0.1")
  with pytest.raises(UserError, match=r"^distributed: coordinator address '127.0.0.1' needs a host and a port"):
    sharding.initialize_distributed(base.get_config().distributed)


def test_a_slurm_coordinator_port_in_use_is_one_line(monkeypatch):
  """Under srun, jax puts the coordinator on port 61440 + job id % 4096 of the step's first node: another job
  there whose id differs by a multiple of 4096 holds it. Task 0 says so in one line; the others go on."""
  calls = []
  monkeypatch.setattr(sharding.jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  monkeypatch.setattr(sharding.jax.config, "update", lambda *args: None)
  clear_cluster_env(monkeypatch)
  with socket.socket() as other:
    port = free_port(61440, 65535)
    other.bind(("", port))
    other.listen()
    job = port - 61440 + 4096 * 3
    for name, value in {"SLURM_JOB_ID": str(job), "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2",
                        "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}.items():
      monkeypatch.setenv(name, value)
    assert sharding.slurm_coordinator_address() == f"localhost:{port}"
    with pytest.raises(UserError) as error:
      sharding.initialize_distributed(base.get_config().distributed)
    assert str(error.value) == (
        f"distributed: process 0 serves the coordinator on port {port}, but this host cannot listen there "
        "(Address already in use: another run's coordinator?); jax derives the port from the SLURM job id "
        "(61440 + id % 4096), so a job on this node whose id differs by a multiple of 4096 has it: resubmit this one")
    assert calls == []
    monkeypatch.setenv("SLURM_PROCID", "1")  # the other tasks connect to it
    sharding.initialize_distributed(base.get_config().distributed)
  monkeypatch.setenv("SLURM_PROCID", "0")  # free again
  sharding.initialize_distributed(base.get_config().distributed)
  assert calls == [{"initialization_timeout": 360}] * 2


def test_a_coordinator_out_of_reach_is_one_line(monkeypatch):
  """A process other than 0 waits for the coordinator (process 0 may start later), then stops in one line
  at config.distributed.init_timeout_s, where jax.distributed would abort with a stack dump."""
  calls = []
  monkeypatch.setattr(sharding.jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  monkeypatch.setattr(sharding.jax.config, "update", lambda *args: None)
  clear_cluster_env(monkeypatch)
  port = free_port()
  config = base.get_config().distributed
  config.update(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=1, init_timeout_s=2)
  start = time.monotonic()
  with pytest.raises(UserError) as error:
    sharding.initialize_distributed(config)
  assert 2 <= time.monotonic() - start < 10 and calls == []
  assert str(error.value) == (f"distributed: process 1 could not reach the coordinator at 127.0.0.1:{port} in 2 s "
                              "(Connection refused); start process 0 on that host, or correct the address")
  with socket.socket() as coordinator:  # one that listens: the process goes on to jax.distributed
    coordinator.bind(("127.0.0.1", port))
    coordinator.listen()
    sharding.initialize_distributed(config)
  assert calls == [{"coordinator_address": f"127.0.0.1:{port}", "num_processes": 2, "process_id": 1,
                    "initialization_timeout": 62}]
  config.init_timeout_s = 0
  with pytest.raises(UserError, match=r"^config.distributed.init_timeout_s=0 must be at least 1"):
    sharding.initialize_distributed(config)


def test_a_process_that_never_joins_is_one_line_for_those_that_did(tmp_path):
  """Two processes of a run of three start, and one of an srun step of two: each waits in jax.distributed for
  the rest, which would abort it with a stack dump; at config.distributed.init_timeout_s it leaves in one line."""
  coordinator = f"127.0.0.1:{free_port()}"
  start = ("from configs import base; from scaling import sharding; c = base.get_config().distributed; "
           "c.update(init_timeout_s=6, **{}); sharding.initialize_distributed(c); print('joined')")
  explicit = {str(i): dict(coordinator_address=coordinator, num_processes=3, process_id=i) for i in range(2)}
  job = free_port(61440, 65535) - 61440  # jax's SLURM coordinator listens on port 61440 + job id % 4096
  slurm = subprocess_env(1, SLURM_JOB_ID=str(job), SLURM_STEP_NODELIST="127.0.0.1", SLURM_NTASKS="2",
                         SLURM_STEP_NUM_TASKS="2", SLURM_STEP_NUM_NODES="1", SLURM_PROCID="0", SLURM_LOCALID="0")
  commands = {name: ([sys.executable, "-c", start.format(where)], subprocess_env(1))
              for name, where in explicit.items()}
  commands["slurm"] = ([sys.executable, "-c", start.format({})], slurm)
  begun = time.monotonic()
  results = run_all(commands, tmp_path, timeout=60)
  assert time.monotonic() - begun < 30
  expected = {str(i): f"distributed: not every one of the 3 processes joined the coordinator at {coordinator} in "
                      f"6 s (this is process {i}); start each process_id from 0 to 2 with this address and "
                      f"num_processes=3, or raise config.distributed.init_timeout_s" for i in range(2)}
  expected["slurm"] = ("distributed: not every process of the run joined in 6 s (the cluster's environment named "
                       "them); see the other processes' logs, or raise config.distributed.init_timeout_s")
  for name, message in expected.items():
    code, stderr = results[name]
    assert code == 2 and stderr.strip().splitlines() == [f"error: {message}"], stderr[-3000:]
    assert (tmp_path / f"{name}.out").read_text() == ""


def test_initialize_distributed_needs_the_whole_coordinator(monkeypatch):
  clear_cluster_env(monkeypatch)
  monkeypatch.setenv("SCALING_COORDINATOR", "10.0.0.1:1234")
  with pytest.raises(UserError, match="set num_processes and process_id too"):
    sharding.initialize_distributed(base.get_config().distributed)
