"""The device mesh: named axes `data` and `block`, and each block's slice.

`--mesh data=D,block=B` arranges `D * B` devices as a `(data, block)` grid
(the first `D * B` devices; `D * B` must divide the device count, and an
omitted `data` takes all the devices left), stage-major: stage `s` holds
`D` consecutive devices in process order, so on a cluster whose hosts each
hold a stage's `D` devices, a stage's gradient all-reduce never leaves its
host and only the activations cross hosts.
The `B` block slices are pipeline *stages*: the engine's blocks are split
into `B` contiguous groups (:func:`bll_jax.parallel.schedule.stage_blocks_of`),
and stage `s` owns the sub-mesh `devices[:, s]` with the single axis `data`,
over which its batch is sharded and its gradients averaged. This package is
the only place in bll_jax that builds a mesh or names its axes.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

AXES = ("data", "block")


@dataclasses.dataclass(frozen=True)
class MeshSpec:
  """Sizes of the `data` and `block` axes (0: fill with the devices left)."""

  data: int = 0
  block: int = 1

  @classmethod
  def parse(cls, text: str) -> "MeshSpec":
    """`"data=2,block=4"` -> `MeshSpec(2, 4)`; `""` -> all devices on data.

    Raises:
      ValueError: one line naming the allowed form.
    """
    sizes, seen = {"data": 0, "block": 1}, set()
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
      name, sep, value = item.partition("=")
      if not sep or name not in sizes or not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"mesh must look like 'data=D,block=B' with positive integers and "
            f"axes {list(AXES)}, got {text!r}")
      if name in seen:
        raise ValueError(f"mesh names the axis {name!r} twice, got {text!r}: "
                         "give each of data and block once")
      seen.add(name)
      sizes[name] = int(value)
    return cls(sizes["data"], sizes["block"])

  def resolve(self, num_devices: int) -> "MeshSpec":
    """Fills `data=0` with the devices left; checks the sizes divide them.

    A mesh may use a subset: `data=2,block=2` on 8 devices uses the first 4.
    """
    if num_devices % self.block:
      raise ValueError(
          f"mesh block={self.block} does not divide the {num_devices} "
          "available devices")
    data = self.data or num_devices // self.block
    if num_devices % (data * self.block):
      raise ValueError(
          f"mesh data={data},block={self.block} ({data * self.block} devices) "
          f"does not divide the {num_devices} available devices")
    return MeshSpec(data, self.block)

  def __str__(self) -> str:
    return f"data={self.data},block={self.block}"


def make_mesh(spec: MeshSpec, num_blocks: int,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The `(data, block)` mesh of `spec` over `devices` (default: all).

  Raises:
    ValueError: sizes that do not divide the device count, or more block
      shards than the engine has blocks (one line each).
  """
  devices = sorted(jax.devices() if devices is None else devices,
                   key=lambda d: (d.process_index, d.id))
  spec = spec.resolve(len(devices))
  devices = devices[:spec.data * spec.block]
  if spec.block > num_blocks:
    raise ValueError(
        f"mesh block={spec.block} asks for more block shards than the "
        f"{num_blocks} blocks of the network; use block <= {num_blocks}")
  # Stage-major: stage `s` takes the `data` devices `[s * D, (s + 1) * D)`
  # of the process-ordered device list, so a stage whose data devices fit
  # on one host keeps its gradient all-reduce on that host (only the
  # stage-to-stage transfers cross hosts).
  grid = np.asarray(devices, dtype=object).reshape(spec.block, spec.data).T
  return Mesh(grid, AXES)


def stage_mesh(mesh: Mesh, stage: int) -> Mesh:
  """The sub-mesh of one block slice: its column of the grid, axis `data`."""
  return Mesh(np.asarray(mesh.devices)[:, stage], ("data",))


_barriers = itertools.count()


def host_barrier(name: str, timeout_seconds: int = 300) -> None:
  """Waits until every process gets here (a no-op with one process).

  The barrier is the coordination service's, not a collective: it queues
  no device work, so it cannot wait behind work it is meant to order.
  Every process must call it the same number of times.
  """
  if jax.process_count() == 1:
    return
  from jax._src import distributed   # the client JAX's own tests use
  distributed.global_state.client.wait_at_barrier(
      f"bll-{name}-{next(_barriers)}", timeout_seconds * 1000)


def describe(mesh: Mesh) -> dict:
  """The mesh as JSON: axis sizes and device ids per block slice."""
  grid = np.asarray(mesh.devices)
  return {"axes": dict(zip(mesh.axis_names, grid.shape)),
          "devices": [[int(d.id) for d in grid[:, s]]
                      for s in range(grid.shape[1])],
          "num_devices": int(math.prod(grid.shape))}
