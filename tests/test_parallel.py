"""Block-parallel training on 8 fake CPU devices (set in conftest)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bll_jax import blocks
from bll_jax import checkpoint as checkpoint_lib
from bll_jax import cli
from bll_jax import families
from bll_jax import models
from bll_jax import step
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import mpmd
from bll_jax.parallel import schedules
from bll_jax.parallel import spmd

NUM_CLASSES = 5


@pytest.fixture(autouse=True, scope="module")
def eight_devices():
  if jax.device_count() < 8:
    pytest.fail("tests/conftest.py must give 8 CPU devices "
                "(JAX_NUM_CPU_DEVICES=8 before JAX starts)")


def _engine(stack, cuts=None, num_blocks=4, feedback="chained",
            shape=(12,), family=families.Gaussian()):
  edges = blocks.boundaries(len(stack), num_blocks, cuts)
  return step.Engine(
      stack, edges, [blocks.Latent(family)] * (len(edges) - 2), method="bll",
      feedback_mode=feedback, num_classes=NUM_CLASSES, input_shape=shape,
      input_dtype=jnp.float32, tx=optax.adam(1e-2),
      objective=step.Objective(feedback_loss="discriminative"))


def _batches(n, batch_size=16, shape=(12,), seed=0):
  rng = np.random.default_rng(seed)
  return [{"inputs": rng.normal(size=(batch_size,) + shape).astype(np.float32),
           "labels": rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32),
           "weights": np.ones(batch_size, np.float32)} for _ in range(n)]


def _keys(n):
  return [jax.random.key(100 + i) for i in range(n)]


def _max_diff(a, b):
  a, b = jax.device_get(a), jax.device_get(b)
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _mesh(spec, engine):
  return mesh_lib.make_mesh(mesh_lib.MeshSpec.parse(spec), engine.num_blocks)


MLP = models.mlp((16, 16, 16), NUM_CLASSES)
CNN = models.cnn((4, 8, 8), (3, 3, 3), (1, 2, 1), NUM_CLASSES, 1)  # BatchNorm
# Six blocks, the middle four identical (16 -> 16 dense layers).
STACK = models.mlp((16,) * 5, NUM_CLASSES)
STACK_CUTS = (1, 2, 3, 4, 5)


# ------------------------------------------------------------------ sync


@pytest.mark.parametrize("spec", ["data=8", "block=4", "data=2,block=4"])
@pytest.mark.parametrize("net", ["mlp", "cnn-batchnorm"])
def test_sync_on_any_mesh_equals_the_single_device_run(spec, net):
  stack, shape = (MLP, (12,)) if net == "mlp" else (CNN, (10,))
  engine = _engine(stack, shape=shape)
  batches, keys = _batches(3, 64, shape), _keys(3)   # 64 = 8 x 8 examples
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  single = state0
  for b, k in zip(batches, keys):
    single, m_single = engine.train_step(single, b, k)
  parallel = mpmd.BlockParallel(engine, _mesh(spec, engine))
  state = parallel.place(state0)
  for b, k in zip(batches, keys):
    state, m = parallel.sync_step(state, b, k)
  assert _max_diff(state, single) < 2e-5
  for name in m_single:
    np.testing.assert_allclose(m[name], m_single[name], rtol=1e-5, atol=1e-6)
  # Each block's state lives on its own stage's devices only.
  for k, block in enumerate(state.blocks):
    devices = {d.id for leaf in jax.tree.leaves(block) for d in leaf.devices()}
    stage = parallel.stage_of[k]
    assert devices == {d.id for d in parallel.meshes[stage].devices.flat}


def test_data_parallel_on_8_devices_equals_one_device_with_8x_the_batch():
  engine = _engine(MLP)
  big = _batches(2, 8 * 8)
  state0 = engine.init(jax.random.key(0), big[0]["inputs"])
  one = state0
  for b, k in zip(big, _keys(2)):
    one, _ = engine.train_step(one, b, k)
  parallel = mpmd.BlockParallel(engine, _mesh("data=8", engine))
  state = parallel.place(state0)
  for b, k in zip(big, _keys(2)):
    # Each device sees 8 examples of the 64.
    sharded = parallel.batch_on(b, 0)
    assert sharded["inputs"].addressable_shards[0].data.shape == (8, 12)
    state, _ = parallel.sync_step(state, b, k)
  assert _max_diff(state, one) < 2e-5


@pytest.mark.parametrize("fused", [True, False])
def test_one_device_sync_takes_host_arrays_and_equals_placing_them(fused):
  engine = _engine(CNN, shape=(10,))
  batches, keys = _batches(3, 16, (10,)), _keys(3)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  one = mpmd.BlockParallel(engine, _mesh("data=1", engine), fused=fused)
  assert one._on_default_device     # (the per-block form places, as before)
  # Not on another single device, nor on several: those place first.
  other = mpmd.BlockParallel(engine, mesh_lib.make_mesh(
      mesh_lib.MeshSpec(1, 1), engine.num_blocks, jax.devices()[3:4]))
  assert not other._on_default_device
  assert not mpmd.BlockParallel(engine, _mesh("data=8", engine)
                                )._on_default_device
  direct, placed, elsewhere = (one.place(state0), one.place(state0),
                               other.place(state0))
  step_fn = engine.train_step if fused else engine.train_step_per_block
  for b, k in zip(batches, keys):
    direct, m_direct = one.sync_step(direct, b, k)
    placed, m_placed = step_fn(placed, one.batch_on(b, 0), one.key_on(k, 0))
    elsewhere, _ = other.sync_step(elsewhere, b, k)
  assert _max_diff(direct, placed) == 0
  assert _max_diff(direct, elsewhere) < 1e-6     # another device's programs
  assert jax.tree.map(float, m_direct) == jax.tree.map(float, m_placed)
  assert {d.id for leaf in jax.tree.leaves(elsewhere)
          for d in leaf.devices()} == {3}



# ------------------------------------------------------------- pipelined


@pytest.mark.parametrize("spec,lag", [("block=4", 0), ("data=2,block=4", 0),
                                      ("block=2", 0), ("block=4", 1),
                                      ("block=2", 2)])
def test_pipelined_mpmd_equals_its_sequential_simulation(spec, lag):
  engine = _engine(MLP)
  batches, keys = _batches(6), _keys(6)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  parallel = mpmd.BlockParallel(engine, _mesh(spec, engine))
  ref, ref_metrics, ref_fb = schedules.pipelined_reference(
      engine, state0, batches, keys, parallel.stage_blocks, feedback_lag=lag)
  got, metrics, fb = parallel.pipelined(parallel.place(state0), iter(batches),
                                        keys, feedback_lag=lag)
  if lag:   # the lag changes the result (it is not a no-op)
    no_lag, _, _ = schedules.pipelined_reference(
        engine, state0, batches, keys, parallel.stage_blocks)
    assert _max_diff(no_lag, ref) > 1e-4
  assert _max_diff(got, ref) < 2e-5
  assert int(got.step) == int(ref.step) == 6
  # One feedback update per tick in which a hidden block works.
  last_hidden_stage = parallel.stage_of[engine.num_blocks - 2]
  assert len(fb) == len(ref_fb) == 6 + last_hidden_stage
  np.testing.assert_allclose(fb, ref_fb, rtol=1e-5)
  for m, r in zip(metrics, ref_metrics):
    assert set(m) == set(r)
    for name in r:
      np.testing.assert_allclose(m[name], r[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", ["block=4", "data=2,block=4", "data=4,block=2"])
def test_pipelined_spmd_stack_equals_its_sequential_simulation(spec):
  engine = _engine(STACK, cuts=STACK_CUTS)
  assert spmd.homogeneous_middle(engine) == (1, 2, 3, 4)
  batches, keys = _batches(5), _keys(5)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  stages = [[k] for k in range(engine.num_blocks)]
  ref, ref_metrics, ref_fb = schedules.pipelined_reference(
      engine, state0, batches, keys, stages)
  pipeline = spmd.StackedPipeline(engine, _mesh(spec, engine))
  got, metrics, fb = pipeline.pipelined(state0, batches, keys)
  assert _max_diff(got, ref) < 2e-5
  np.testing.assert_allclose(fb, ref_fb, rtol=1e-5)
  for m, r in zip(metrics, ref_metrics):
    for name in r:
      np.testing.assert_allclose(m[name], r[name], rtol=1e-5, atol=1e-6)


def test_pipelined_with_fixed_feedback_is_sync_over_micro_batches():
  """The only staleness of the schedule is the feedback's (docstring)."""
  engine = _engine(MLP, feedback="random")
  batches, keys = _batches(5), _keys(5)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  sync = state0
  for b, k in zip(batches, keys):
    sync, _ = engine.train_step_per_block(sync, b, k)
  piped, _, _ = schedules.pipelined_reference(
      engine, state0, batches, keys, mesh_lib.stages(4, 4))
  assert _max_diff(piped, sync) < 1e-6
  # With a trained feedback it differs: the feedback runs ahead.
  engine = _engine(MLP, feedback="chained")
  sync = state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  for b, k in zip(batches, keys):
    sync, _ = engine.train_step_per_block(sync, b, k)
  piped, _, _ = schedules.pipelined_reference(
      engine, state0, batches, keys, mesh_lib.stages(4, 4))
  assert _max_diff(piped, sync) > 1e-4


def test_timeline_and_bubble():
  work = schedules.timeline(6, 4)
  assert len(work) == 6 * 4
  assert work[:3] == [(0, 0, 0), (1, 0, 1), (1, 1, 0)]
  ticks = 6 + 4 - 1
  idle = ticks * 4 - len(work)
  assert idle / (ticks * 4) == pytest.approx(schedules.bubble_fraction(6, 4))
  # No flush: after the fill, every stage is busy at every tick.
  for t in range(3, 6):
    assert sorted(s for tt, s, _ in work if tt == t) == [0, 1, 2, 3]


# ---------------------------------------------------------- checkpoints


@pytest.mark.parametrize("restore_spec", ["data=8", "block=2"])
def test_save_on_one_mesh_restore_on_another_and_continue(tmp_path,
                                                          restore_spec):
  engine = _engine(MLP)
  batches, keys = _batches(3, 32), _keys(3)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  expected = state0
  for b, k in zip(batches, keys):
    expected, _ = engine.train_step_per_block(expected, b, k)

  first = mpmd.BlockParallel(engine, _mesh("data=2,block=4", engine))
  state = first.place(state0)
  for b, k in zip(batches[:2], keys[:2]):
    state, _ = first.sync_step(state, b, k)
  checkpoints = checkpoint_lib.Checkpointer(tmp_path)
  checkpoints.save(2, state, {"note": "two steps"})

  second = mpmd.BlockParallel(engine, _mesh(restore_spec, engine))
  template = second.place(state0)
  restored, progress = checkpoints.restore(2, template)
  checkpoints.close()
  assert progress == {"note": "two steps"}
  for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(template)):
    assert got.sharding == want.sharding
  restored, _ = second.sync_step(restored, batches[2], keys[2])
  assert _max_diff(restored, expected) < 2e-5


# ------------------------------------------------------------ bad input


def test_bad_meshes_give_one_line_errors():
  engine = _engine(MLP)
  for text, match in [("data=3", "does not divide the 8 available"),
                      ("block=3", "does not divide the 8 available"),
                      ("block=8", "more block shards than the 4 blocks"),
                      ("data=2,pipe=4", "mesh must look like"),
                      ("data=0", "mesh must look like"),
                      ("data=two", "mesh must look like")]:
    with pytest.raises(ValueError, match=match) as info:
      mesh_lib.make_mesh(mesh_lib.MeshSpec.parse(text), engine.num_blocks)
    assert "\n" not in str(info.value)
  cnn = _engine(CNN, shape=(10,))           # middle convs differ in stride
  assert spmd.homogeneous_middle(cnn) == ()
  # Equal layers but per-block temperatures that differ in the middle: one
  # vmapped loss cannot hold them, so no stack (pipeline auto takes MPMD).
  edges = blocks.boundaries(len(STACK), 6, STACK_CUTS)
  for temperatures, middle in [((1.0, 2.0, 2.0, 2.0, 2.0), (1, 2, 3, 4)),
                               ((1.0, 0.3, 3.0, 10.0, 0.5), ())]:
    calibrated = step.Engine(
        STACK, edges, [blocks.Latent(families.Gaussian())] * 5, method="bll",
        feedback_mode="chained", num_classes=NUM_CLASSES, input_shape=(12,),
        input_dtype=jnp.float32, tx=optax.adam(1e-2),
        objective=step.Objective(temperature=temperatures))
    assert spmd.homogeneous_middle(calibrated) == middle
  with pytest.raises(ValueError, match="identical middle blocks"):
    spmd.StackedPipeline(cnn, _mesh("block=2", cnn))
  with pytest.raises(ValueError, match="does not support feedback "
                     "'bootstrapped'"):
    schedules.check_pipelined(_engine(MLP, feedback="bootstrapped"))


def test_cli_reports_a_bad_mesh_in_one_line_before_compiling(tmp_path, capsys):
  status = cli.main(["--mesh", "data=3", "--steps", "1", "--workdir",
                     str(tmp_path / "run"), "--progress", "false"])
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2 and len(err) == 1
  assert "does not divide" in err[0]
  assert not (tmp_path / "run").exists()


# -------------------------------------------------------------- end to end


@pytest.mark.parametrize("flags,pipeline", [
    (["--mesh", "data=2,block=4"], None),
    (["--mesh", "block=4", "--schedule", "pipelined"], "BlockParallel"),
    (["--mesh", "data=2,block=2", "--schedule", "pipelined", "--model.widths",
      "32,32,32,32,32", "--cuts", "1,2,3,4,5"], "StackedPipeline"),
])
def test_bll_train_on_a_mesh_records_mesh_and_schedule(tmp_path, flags,
                                                       pipeline):
  import json
  argv = ["--model.name", "mlp", "--model.widths", "32,32,32", "--steps", "20",
          "--batch-size", "40", "--progress", "false", "--workdir",
          str(tmp_path)] + flags
  assert cli.main(argv) == 0
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["steps"] == 20
  assert summary["schedule"] == ("pipelined" if pipeline else "sync")
  assert summary["pipeline"] == pipeline
  spec = mesh_lib.MeshSpec.parse(flags[1])
  assert summary["mesh"]["axes"] == {"data": spec.data or 8 // spec.block,
                                     "block": spec.block}
  assert np.isfinite(summary["final_train_loss"])
  assert 0.0 <= summary["test_accuracy"] <= 1.0


# ------------------------------------------------------------------ GPipe


@pytest.mark.parametrize("spec,micro", [("block=4", 1), ("block=4", 4),
                                        ("data=2,block=2", 4)])
def test_gpipe_equals_backprop_on_the_whole_batch(spec, micro):
  from bll_jax.parallel import gpipe
  edges = blocks.boundaries(len(MLP), 4)
  engine = step.Engine(MLP, edges, [blocks.Latent(families.Gaussian())] * 3,
                       method="bp", feedback_mode="chained",
                       num_classes=NUM_CLASSES, input_shape=(12,),
                       input_dtype=jnp.float32, tx=optax.adam(1e-2))
  (full,) = _batches(1, 32)
  state0 = engine.init(jax.random.key(0), full["inputs"])
  expected, metrics = engine.train_step(state0, full, jax.random.key(1))
  pipe = gpipe.GPipe(engine, _mesh(spec, engine))
  size = 32 // micro
  micro_batches = [{k: v[i * size:(i + 1) * size] for k, v in full.items()}
                   for i in range(micro)]
  got, loss = pipe.step(pipe.parallel.place(state0), micro_batches,
                        jax.random.key(1))
  assert _max_diff(got.blocks, expected.blocks) < 1e-6
  np.testing.assert_allclose(loss, metrics["block3/loss"], rtol=1e-6)
  with pytest.raises(ValueError, match="must be 'bp'"):
    gpipe.GPipe(_engine(MLP), _mesh(spec, engine))


# ------------------------------------------- cross-stage collectives


@pytest.mark.parametrize("src,dst", [(0, 3), (2, 1)])
def test_stage_transfer_moves_a_batch_between_stages_unchanged(src, dst):
  from bll_jax.parallel import transfer
  mesh = mesh_lib.make_mesh(mesh_lib.MeshSpec(2, 4), 4)
  stages = [mesh_lib.stage_mesh(mesh, s) for s in range(4)]
  x = np.arange(6 * 3 * 2, dtype=np.float32).reshape(6, 3, 2)
  on_src = jax.device_put(x, mesh_lib.batch_sharding(stages[src]))
  moved = transfer.StageTransfer(mesh).move(on_src, src, dst)
  assert moved.sharding == mesh_lib.batch_sharding(stages[dst])
  # Each data shard lands on the same data index of the destination.
  for shard in moved.addressable_shards:
    assert shard.device in set(np.asarray(mesh.devices)[:, dst])
  np.testing.assert_array_equal(np.asarray(moved), x)


def test_feedback_replicas_sum_every_stage_and_update_every_replica():
  from bll_jax.parallel import replicas as replicas_lib
  engine = _engine(models.mlp((8, 8, 8), NUM_CLASSES))
  mesh = _mesh("data=2,block=4", engine)
  parallel = mpmd.BlockParallel(engine, mesh)
  state = parallel.place(engine.init(jax.random.key(0),
                                     _batches(1)[0]["inputs"]))
  reps = replicas_lib.FeedbackReplicas(engine, mesh)
  replicated = reps.broadcast(state.feedback)
  for s in range(4):                      # every stage holds the same copy
    assert _max_diff(reps.view(replicated, s), state.feedback) == 0.0
  params = jax.device_get(state.feedback.params)
  rng = np.random.default_rng(0)
  grads = [jax.tree.map(lambda p: rng.normal(size=p.shape).astype(p.dtype),
                        params) for _ in range(3)]
  # Stage 0 contributes two blocks' gradients, stage 2 one, stages 1, 3 none.
  put = lambda tree, s: jax.device_put(tree, mesh_lib.replicated(
      mesh_lib.stage_mesh(mesh, s)))
  contributions = {0: [(put(grads[0], 0), put(np.float32(1.5), 0)),
                       (put(grads[1], 0), put(np.float32(2.0), 0))],
                   2: [(put(grads[2], 2), put(np.float32(0.25), 2))]}
  new, loss = reps.update(replicated, contributions)
  total = jax.tree.map(lambda a, b, c: a + b + c, *grads)
  want = engine._update(engine.feedback_tx, jax.device_get(state.feedback),
                        total, {})
  assert float(np.asarray(reps.view(loss, 3))) == pytest.approx(3.75)
  for s in range(4):
    assert _max_diff(reps.view(new, s), want) < 1e-6


def test_sum_over_stages_keeps_each_dtype():
  from bll_jax.parallel import replicas as replicas_lib
  tree = {"f": jnp.arange(12.0).reshape(3, 2, 2),
          "i": jnp.asarray([[2 ** 30], [1], [2]], jnp.int32),
          "g": jnp.ones((3, 5), jnp.float32)}
  out = replicas_lib._sum_over_stages(tree)
  assert out["i"].dtype == jnp.int32 and int(out["i"][0]) == 2 ** 30 + 3
  np.testing.assert_array_equal(out["f"], np.arange(12.0).reshape(3, 2, 2)
                                .sum(0))
  np.testing.assert_array_equal(out["g"], np.full(5, 3.0))
