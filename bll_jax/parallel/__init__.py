"""Block-parallel training across devices (see `docs/parallel.md`).

* :mod:`~bll_jax.parallel.mesh` -- the `(data, block)` mesh and its stages.
* :mod:`~bll_jax.parallel.schedules` -- `sync` and `pipelined`, and a plain
  sequential simulation of the pipelined schedule.
* :mod:`~bll_jax.parallel.mpmd` -- any network: one jitted step per block on
  its own sub-mesh, overlapping through asynchronous dispatch.
* :mod:`~bll_jax.parallel.spmd` -- homogeneous stacks: parameters stacked on a
  block axis, one `shard_map` program, activations rotated with `ppermute`.
"""
