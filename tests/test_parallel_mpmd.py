"""bll_jax.parallel.mpmd and make_runner, on 8 fake CPU devices (conftest)."""

import json

import jax
import numpy as np
import optax
import pytest

from bll_jax import families
from bll_jax import parallel
from bll_jax.parallel import mesh as mesh_lib
from bll_jax.parallel import reference
from bll_jax.training import checkpoint as checkpoint_lib

from tests import _cases

MLP, CNN = _cases.MLP, _cases.CNN


@pytest.fixture(autouse=True, scope="module")
def eight_devices():
  if jax.device_count() < 8:
    pytest.fail("tests/conftest.py must give 8 CPU devices "
                "(JAX_NUM_CPU_DEVICES=8 before JAX starts)")


def _runner(engine, spec, schedule="sync", **kw):
  return parallel.MpmdRunner(engine, _cases.make_mesh(spec, engine), schedule,
                             **kw)


# ------------------------------------------------------------------ sync


# Each mesh form once (data only, blocks only, both); BatchNorm where both
# split the batch and the blocks.
@pytest.mark.parametrize("net,spec", [("mlp", "data=8"),
                                      ("mlp", "data=1,block=4"),
                                      ("cnn-batchnorm", "data=2,block=4")])
def test_sync_on_any_mesh_equals_the_single_device_run(net, spec):
  stack, shape = (MLP, (12,)) if net == "mlp" else (CNN, (10,))
  engine = _cases.make_engine(stack, shape=shape)
  batches = _cases.make_batches(3, 64, shape)      # 64 = 8 x 8 examples
  keys = _cases.make_keys(3)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  single = state0
  for b, k in zip(batches, keys):
    single, m_single = engine.train_step(single, b, k)
  runner = _runner(engine, spec)
  state, metrics = runner.run_epoch(runner.place(state0), batches, keys)
  # The fused step on one device and the per-block steps on their stages
  # differ by float32 round-off (measured: 2e-6 on the states).
  assert _cases.max_diff(state, single) < 1e-5
  assert set(metrics[-1]) == set(m_single)
  for name in m_single:
    np.testing.assert_allclose(metrics[-1][name], m_single[name], rtol=1e-5,
                               atol=1e-6, err_msg=name)
  # Each block's state lives on its own stage's devices only.
  for k, block in enumerate(state.blocks):
    devices = {d.id for leaf in jax.tree.leaves(block) for d in leaf.devices()}
    stage = runner.stages.stage_of[k]
    assert devices == {d.id for d in runner.stages.meshes[stage].devices.flat}


# bp on data=8 is the data-parallel backprop baseline (bll_jax.baselines):
# every device a replica, gradients averaged every step; with padding the
# devices' shards weigh differently and must still make the whole batch's
# weighted mean.
@pytest.mark.parametrize("method", ["bll", "bp"])
def test_data_parallel_on_8_devices_equals_one_device_with_8x_the_batch(
    method):
  engine = _cases.make_engine(MLP, method=method)
  big, keys = _cases.make_batches(2, 8 * 8), _cases.make_keys(2)
  big[1]["weights"] = np.where(np.arange(64) % 7 == 3, 0.0, 1.0).astype(
      np.float32)
  big[1]["weights"][40:48] = 0.0          # one device's shard all padding
  state0 = engine.init(jax.random.key(0), big[0]["inputs"])
  one = state0
  for b, k in zip(big, keys):
    one, _ = engine.train_step(one, b, k)
  runner = _runner(engine, "data=8")
  # Each device sees 8 examples of the 64.
  sharded = runner.stages.batch_on(big[0], 0)
  assert sharded["inputs"].addressable_shards[0].data.shape == (8, 12)
  state, _ = runner.run_epoch(runner.place(state0), big, keys)
  assert _cases.max_diff(state, one) < 1e-6


def test_one_device_sync_takes_host_arrays_and_equals_placing_them():
  """The fused step's fast path: on this process's default device it takes
  host arrays as they are (the per-block steps place their inputs, and
  tests/test_training.py trains with them)."""
  engine = _cases.make_engine(CNN, shape=(10,))
  batches, keys = _cases.make_batches(3, 16, (10,)), _cases.make_keys(3)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  one = _runner(engine, "data=1")
  assert one.stages.on_default_device
  # Not on another single device, nor on several: those place first.
  other = parallel.MpmdRunner(engine, mesh_lib.make_mesh(
      mesh_lib.MeshSpec(1, 1), engine.num_blocks, jax.devices()[3:4]))
  assert not other.stages.on_default_device
  assert not _runner(engine, "data=8").stages.on_default_device
  direct, m_direct = one.run_epoch(one.place(state0), batches, keys)
  elsewhere, _ = other.run_epoch(other.place(state0), batches, keys)
  placed = one.place(state0)
  for b, k in zip(batches, keys):
    placed, m_placed = engine.train_step(placed, one.stages.batch_on(b, 0),
                                         one.stages.key_on(k, 0))
  assert _cases.max_diff(direct, placed) == 0
  assert _cases.max_diff(direct, elsewhere) < 1e-6   # another device's code
  assert jax.tree.map(float, m_direct[-1]) == jax.tree.map(float, m_placed)
  assert {d.id for leaf in jax.tree.leaves(elsewhere)
          for d in leaf.devices()} == {3}


# ------------------------------------------------------------- pipelined


CASES = {
    "mlp": dict(stack=MLP),
    "mlp-sampled": _cases.STOCHASTIC["sampled"],
    "transformer-dropout": _cases.STOCHASTIC["dropout"],
    # The feedback owned by the stages (bll_jax.parallel.owned): layers and
    # optax state on their stages, messages sent one stage down.
    "mlp-owned": dict(stack=MLP, feedback="chained_local"),
    "stack-owned-sampled": dict(stack=_cases.STACK, cuts=_cases.STACK_CUTS,
                                feedback="chained_local",
                                family=families.Bernoulli(),
                                transmit="sample"),
}


@pytest.mark.parametrize("case,spec,lag", [
    ("mlp", "data=2,block=4", 0), ("mlp", "data=4,block=2", 2),
    ("mlp-sampled", "data=2,block=2", 0),
    ("transformer-dropout", "data=2,block=2", 0),
    ("mlp-owned", "data=2,block=4", 0),
    ("stack-owned-sampled", "data=1,block=4", 0),
])
def test_pipelined_mpmd_equals_the_reference(case, spec, lag):
  kw = CASES[case]
  engine = _cases.make_engine(**kw)
  tokens = engine.token_targets
  batches = _cases.make_batches(6, shape=kw.get("shape", (12,)), tokens=tokens)
  keys = _cases.make_keys(6)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  runner = _runner(engine, spec, "pipelined", feedback_lag=lag)
  want, want_metrics = reference.run(engine, state0, batches, keys,
                                     runner.plan, feedback_lag=lag)
  got, metrics = runner.run_epoch(runner.place(state0), batches, keys)
  if lag:   # the lag changes the result (it is not a no-op)
    no_lag, _ = reference.run(engine, state0, batches, keys, runner.plan)
    assert _cases.max_diff(no_lag, want) > 1e-4
  assert _cases.max_diff(got, want) < 1e-5     # float32 round-off
  assert int(got.step) == int(want.step) == 6
  assert runner.timeline == runner.plan.timeline(6)
  for m, r in zip(metrics, want_metrics):
    assert set(m) == set(r)
    for name in r:
      np.testing.assert_allclose(m[name], r[name], rtol=1e-5, atol=1e-6,
                                 err_msg=name)
  # The feedback took one optimiser step per tick with a hidden block (SGD
  # keeps no count).
  count = optax.tree_utils.tree_get(jax.device_get(got.feedback.opt_state),
                                    "count")
  assert (count is None) == (case == "transformer-dropout")
  if count is not None:
    assert int(count) == runner.plan.feedback_updates(6)


# ---------------------------------------------------------- checkpoints


@pytest.mark.parametrize("restore_spec", ["data=4,block=2"])
def test_save_on_one_mesh_restore_on_another_and_continue(tmp_path,
                                                          restore_spec):
  engine = _cases.make_engine(MLP)
  batches, keys = _cases.make_batches(3, 32), _cases.make_keys(3)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  expected = state0
  for b, k in zip(batches, keys):
    expected, _ = engine.train_step(expected, b, k)

  first = _runner(engine, "data=2,block=4")
  state, _ = first.run_epoch(first.place(state0), batches[:2], keys[:2])
  checkpoints = checkpoint_lib.Checkpointer(tmp_path)
  checkpoints.save(2, state, {"note": "two steps"})

  second = _runner(engine, restore_spec)
  template = second.place(state0)
  restored, progress = checkpoints.restore(2, template)
  checkpoints.close()
  assert progress == {"note": "two steps"}
  for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(template)):
    assert got.sharding == want.sharding
  restored, _ = second.step(restored, batches[2], keys[2])
  assert _cases.max_diff(restored, expected) < 1e-5


# ------------------------------------------------------------ bad input


def test_bad_layouts_give_one_line_errors():
  engine = _cases.make_engine(MLP)
  for text, match in [("data=3", "does not divide the 8 available"),
                      ("block=3", "does not divide the 8 available"),
                      ("block=8", "more block shards than the 4 blocks"),
                      ("data=2,pipe=4", "mesh must look like"),
                      ("data=0", "mesh must look like"),
                      ("data=two", "mesh must look like")]:
    with pytest.raises(ValueError, match=match) as info:
      parallel.make_runner(engine, parallel.RunnerSpec(mesh=text))
    assert "\n" not in str(info.value)
  for engine, spec, match in [
      (engine, parallel.RunnerSpec(mesh="data=8"), "divisible by the mesh's "
       "data axis"),
      (_cases.make_engine(MLP, feedback="bootstrapped"),
       parallel.RunnerSpec(mesh="block=2"), "runs on one stage"),
      (_cases.make_engine(MLP, method="bp"),
       parallel.RunnerSpec(mesh="block=2"), "trains end to end"),
      (_cases.make_engine(MLP, method="bp"),
       parallel.RunnerSpec(mesh="data=1", step_mode="per_block"),
       "trains end to end"),
      (_cases.make_engine(CNN, shape=(10,)),
       parallel.RunnerSpec(mesh="block=2", schedule="pipelined",
                           pipeline="spmd"), "identical middle blocks")]:
    with pytest.raises(ValueError, match=match) as info:
      parallel.make_runner(engine, spec, batch_size=12)
    assert "\n" not in str(info.value)


def test_cli_reports_a_bad_mesh_in_one_line_before_compiling(tmp_path, capsys):
  from bll_jax import cli
  status = cli.main(["--mesh", "data=3", "--steps", "1", "--workdir",
                     str(tmp_path / "run"), "--progress", "false"])
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2 and len(err) == 1
  assert "does not divide" in err[0]
  assert not (tmp_path / "run").exists()


# -------------------------------------------------------------- end to end


@pytest.mark.parametrize("flags,pipeline", [
    (["--mesh", "data=2,block=4"], None),
    (["--mesh", "block=4", "--schedule", "pipelined"], "mpmd"),
    (["--mesh", "data=2,block=2", "--schedule", "pipelined", "--model.widths",
      "32,32,32,32,32", "--cuts", "1,2,3,4,5"], "spmd"),
])
def test_bll_train_on_a_mesh_records_mesh_and_schedule(tmp_path, flags,
                                                       pipeline):
  from bll_jax import cli
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


def test_owned_feedback_keeps_each_layer_on_its_stage_and_needs_no_all_reduce(
    monkeypatch):
  """The locality of the owned feedback: per tick no feedback collective,
  each stage's layers and losses on its own devices, one message per
  sending stage to the stage below; one broadcast and one sum per stream."""
  engine = _cases.make_engine(MLP, feedback="chained_local")
  runner = _runner(engine, "data=2,block=4", "pipelined")
  assert runner.owner is not None
  calls = {"update": 0, "apply_parts": 0, "broadcast": 0, "sum": 0,
           "moves": []}
  reps, owner = runner.replicas, runner.owner
  for name in ("update", "apply_parts", "broadcast", "sum"):
    real = getattr(reps, name)
    monkeypatch.setattr(reps, name, lambda *a, _r=real, _n=name: (
        calls.__setitem__(_n, calls[_n] + 1), _r(*a))[1])
  real_move = runner.transfer.move_replicated
  monkeypatch.setattr(runner.transfer, "move_replicated",
                      lambda x, src, dst: (calls["moves"].append((src, dst)),
                                           real_move(x, src, dst))[1])
  real_update, real_worked = owner.update, owner.worked
  stage_devices = [set(runner.stages.meshes[s].devices.flat)
                   for s in range(4)]
  checked = []

  def held(s, tree):
    return {d for leaf in jax.tree.leaves((owner.states[s], tree))
            for d in leaf.devices()}

  def update(s, *args, **kw):          # a stage that idles in the tick
    losses = real_update(s, *args, **kw)
    assert held(s, losses) == stage_devices[s], s
    checked.append(s)
    return losses

  def worked(s, state, message):       # a stage's program's update
    real_worked(s, state, message)
    assert held(s, message) == stage_devices[s], s
    checked.append(s)

  monkeypatch.setattr(owner, "update", update)
  monkeypatch.setattr(owner, "worked", worked)
  batches, keys = _cases.make_batches(6), _cases.make_keys(6)
  state0 = engine.init(jax.random.key(0), batches[0]["inputs"])
  runner.run_epoch(runner.place(state0), batches, keys)
  assert calls["update"] == calls["apply_parts"] == 0   # no all-reduce
  assert sorted(set(checked)) == [0, 1, 2]       # every owning stage
  assert calls["broadcast"] == calls["sum"] == 1  # once per stream
  # Stages 1 and 2 own layers and send down in every tick with an update;
  # stage 3 holds the output block alone.
  updates = runner.plan.feedback_updates(6)
  assert sorted(calls["moves"]) == sorted([(1, 0), (2, 1)] * updates)
