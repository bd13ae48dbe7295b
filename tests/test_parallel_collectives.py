"""bll_jax.parallel.transfer and .replicas: what crosses stages, as
collectives every process dispatches in the same order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bll_jax import engine as engine_lib
from bll_jax import models
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import placement
from bll_jax.parallel import replicas as replicas_lib
from bll_jax.parallel import transfer

from tests import _cases


@pytest.mark.parametrize("src,dst", [(0, 3), (2, 1)])
def test_stage_transfer_moves_a_batch_between_stages_unchanged(src, dst):
  mesh = mesh_lib.make_mesh(mesh_lib.MeshSpec(2, 4), 4)
  stages = [mesh_lib.stage_mesh(mesh, s) for s in range(4)]
  x = np.arange(6 * 3 * 2, dtype=np.float32).reshape(6, 3, 2)
  on_src = jax.device_put(x, placement.batch_sharding(stages[src]))
  moved = transfer.StageTransfer(mesh).move(on_src, src, dst)
  assert moved.sharding == placement.batch_sharding(stages[dst])
  # Each data shard lands on the same data index of the destination.
  for shard in moved.addressable_shards:
    assert shard.device in set(np.asarray(mesh.devices)[:, dst])
  np.testing.assert_array_equal(np.asarray(moved), x)


def test_feedback_replicas_sum_every_stage_and_update_every_replica():
  engine = _cases.make_engine(models.mlp((8, 8, 8), _cases.NUM_CLASSES))
  mesh = _cases.make_mesh("data=2,block=4", engine)
  stages = placement.Stages(mesh, ((0,), (1,), (2,), (3,)))
  state = stages.place(engine.init(jax.random.key(0),
                                   _cases.make_batches(1)[0]["inputs"]))
  reps = replicas_lib.FeedbackReplicas(engine, mesh)
  replicated = reps.broadcast(state.feedback)
  for s in range(4):                      # every stage holds the same copy
    assert _cases.max_diff(reps.view(replicated, s), state.feedback) == 0.0
  params = jax.device_get(state.feedback.params)
  rng = np.random.default_rng(0)
  grads = [jax.tree.map(lambda p: rng.normal(size=p.shape).astype(p.dtype),
                        params) for _ in range(3)]
  # Stage 0 contributes blocks 0 and 1, stage 2 block 2, stages 1, 3 none.
  put = lambda tree, s: jax.device_put(tree, stages.replicated(s))
  contributions = {0: [(0, put(grads[0], 0), put(np.float32(1.5), 0)),
                       (1, put(grads[1], 0), put(np.float32(2.0), 0))],
                   2: [(2, put(grads[2], 2), put(np.float32(0.25), 2))]}
  new, losses = reps.update(replicated, contributions)
  total = jax.tree.map(lambda a, b, c: a + b + c, *grads)
  want = engine_lib.apply_update(engine.feedback_tx,
                                 jax.device_get(state.feedback), total, {})
  # Every stage knows every block's loss of the tick.
  np.testing.assert_array_equal(np.asarray(reps.view(losses, 3)),
                                [1.5, 2.0, 0.25])
  for s in range(4):
    assert _cases.max_diff(reps.view(new, s), want) < 1e-6


def test_sum_over_stages_keeps_each_dtype():
  from bll_jax.parallel import replicas as replicas_lib
  tree = {"f": jnp.arange(12.0).reshape(3, 2, 2),
          "i": jnp.asarray([[2 ** 30], [1], [2]], jnp.int32),
          "g": jnp.ones((3, 5), jnp.float32)}
  out = replicas_lib.sum_over_stages(tree)
  assert out["i"].dtype == jnp.int32 and int(out["i"][0]) == 2 ** 30 + 3
  np.testing.assert_array_equal(out["f"], np.arange(12.0).reshape(3, 2, 2)
                                .sum(0))
  np.testing.assert_array_equal(out["g"], np.full(5, 3.0))


def test_stage_transfer_moves_a_replicated_table_down_a_stage():
  """The owned feedback's message: every data device's copy to the same
  data index of the stage below, replicated there."""
  mesh = mesh_lib.make_mesh(mesh_lib.MeshSpec(2, 4), 4)
  stages = [mesh_lib.stage_mesh(mesh, s) for s in range(4)]
  x = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
  on_src = jax.device_put(x, placement.replicated(stages[2]))
  moved = transfer.StageTransfer(mesh).move_replicated(on_src, 2, 1)
  assert moved.sharding == placement.replicated(stages[1])
  assert moved.is_fully_replicated
  np.testing.assert_array_equal(np.asarray(moved), x)
