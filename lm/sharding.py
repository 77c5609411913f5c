"""The device mesh, the logical-axis rules, and host batches turned into global arrays.

The rules are config data (`config.mesh.rules`); nothing here branches on the device count,
so the same code runs on 1 CPU, 8 simulated devices, or many hosts.
"""

import math
import os

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def maybe_initialize_distributed(mesh_cfg: ml_collections.ConfigDict) -> None:
    """Joins the multi-controller runtime before any device is used: with the coordinator
    that `lm.launch` put in the environment, or, with config.mesh.distributed, the one JAX
    finds itself under SLURM, Open MPI or on a TPU slice. CPU processes talk through gloo."""
    if jax.distributed.is_initialized():
        return
    env = os.environ
    if "LM_COORDINATOR" in env:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=env["LM_COORDINATOR"],
                                   num_processes=int(env["LM_NUM_PROCESSES"]),
                                   process_id=int(env["LM_PROCESS_ID"]))
    elif mesh_cfg.distributed:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize()


def resolve_mesh_shape(shape: tuple, num_devices: int) -> tuple:
    """Replaces the one -1 in `shape` with what is left of `num_devices`."""
    shape = tuple(int(s) for s in shape)
    if sum(s == -1 for s in shape) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"config.mesh.shape must hold positive sizes and at most one -1, got {shape}")
    fixed = math.prod(s for s in shape if s != -1)
    if num_devices % fixed:
        raise ValueError(f"config.mesh.shape {shape} does not divide the {num_devices} devices: "
                         "make the product of the fixed sizes divide the device count")
    resolved = tuple(num_devices // fixed if s == -1 else s for s in shape)
    if math.prod(resolved) != num_devices:
        raise ValueError(f"config.mesh.shape {shape} uses {math.prod(resolved)} of {num_devices} "
                         "devices: put -1 on one axis to take the rest")
    return resolved


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices=None) -> Mesh:
    """A mesh with Auto axis types, so the logical-rule (GSPMD) style works in jax >= 0.10."""
    devices = jax.devices() if devices is None else devices
    shape = resolve_mesh_shape(mesh_cfg.shape, len(devices))
    axis_types = (jax.sharding.AxisType.Auto,) * len(shape)
    return jax.make_mesh(shape, tuple(mesh_cfg.axes), axis_types=axis_types, devices=devices)


def rules(mesh_cfg: ml_collections.ConfigDict) -> tuple:
    """The logical-to-mesh table as the tuple of pairs Flax expects."""
    return tuple((logical, tuple(m) if isinstance(m, (list, tuple)) else m)
                 for logical, m in mesh_cfg.rules)


def logical_sharding(abstract_tree, mesh: Mesh, axis_rules: tuple):
    """NamedShardings for a tree whose leaves may be `nn.LogicallyPartitioned` boxes;
    unboxed leaves are replicated."""
    return nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract_tree), mesh, axis_rules)


def check_divisible(abstract_tree, shardings) -> None:
    """Fails, naming the array, when a sharded dimension doesn't split evenly over its mesh axes."""
    def check(path, a, s):
        try:
            s.shard_shape(a.shape)
        except ValueError as e:
            raise ValueError(
                f"{jax.tree_util.keystr(path)} of shape {a.shape} can't be laid out as {s.spec} on mesh "
                f"{dict(s.mesh.shape)}: make that dimension (heads, mlp_dim, vocab_size, d_model) "
                "divisible by its mesh axes, or change config.mesh.shape / config.mesh.rules") from e
    jax.tree_util.tree_map_with_path(check, abstract_tree, shardings)


def batch_sharding(mesh: Mesh, axis_rules: tuple) -> NamedSharding:
    """Shards the leading (row) axis of any batch array over the data-parallel mesh axes."""
    spec = nn.logical_to_mesh_axes(("batch",), axis_rules)
    return NamedSharding(mesh, PartitionSpec(*spec))


def to_global(local_batch: dict, sharding: NamedSharding, global_rows: int) -> dict:
    """Assembles each process's rows into one global array per key (works multi-host)."""
    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x, (global_rows,) + x.shape[1:])
    return {k: one(v) for k, v in local_batch.items()}
