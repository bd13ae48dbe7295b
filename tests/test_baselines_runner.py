"""bll_jax.baselines.runner: GPipe and 1F1B as runners of `bll-train`, on 8
fake CPU devices (conftest)."""

import json

import jax
import numpy as np
import pytest

from bll_jax import cli
from bll_jax import baselines
from bll_jax import parallel
from bll_jax import training as train
from bll_jax.baselines.runner import PipelinedBackprop
from bll_jax.config import flags as flags_lib
from bll_jax.training import checkpoint as checkpoint_lib

from tests import _cases

TINY = ["--model.name", "mlp", "--model.widths", "32,32,32", "--steps", "12",
        "--batch-size", "40", "--progress", "false", "--method", "bp"]


def _final_state(workdir):
  """`(step, state)` of the run's latest checkpoint, on the host."""
  config, _, _ = flags_lib.config_from_args(TINY + ["--mesh", "data=1"])
  run = train.prepare(config)
  sample = np.zeros((40,) + run.dataset.info.input_shape, np.float32)
  template = jax.device_get(run.engine.init(jax.random.key(0), sample))
  checkpoints = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  try:
    step = checkpoints.latest_step()
    return step, checkpoints.restore(step, template)[0]
  finally:
    checkpoints.close()


@pytest.fixture(scope="module")
def backprop_run(tmp_path_factory):
  """Plain backprop on one device: what both pipelines must equal."""
  workdir = tmp_path_factory.mktemp("bp")
  assert cli.main(TINY + ["--mesh", "data=1", "--workdir", str(workdir)]) == 0
  return workdir


@pytest.mark.parametrize("pipeline,mesh,micro", [
    ("gpipe", "block=4", 4), ("1f1b", "block=2", 2)])
def test_bll_train_with_a_backprop_pipeline_equals_backprop(
    tmp_path, backprop_run, pipeline, mesh, micro):
  """The same run, step for step: every batch split into `micro`
  micro-batches over the stages, the update backprop's on the whole batch
  (micro-batches of unequal weight: tests/test_baselines_gpipe.py)."""
  assert cli.main(TINY + ["--mesh", mesh, "--pipeline", pipeline,
                          "--micro-batches", str(micro), "--workdir",
                          str(tmp_path)]) == 0
  summary = json.loads((tmp_path / "summary.json").read_text())
  want = json.loads((backprop_run / "summary.json").read_text())
  assert summary["pipeline"] == pipeline
  assert summary["mesh"]["axes"]["block"] == int(mesh.split("=")[1])
  step, got = _final_state(tmp_path)
  want_step, expected = _final_state(backprop_run)
  assert step == want_step == 12
  for a, b in zip(jax.tree.leaves(got.blocks),
                  jax.tree.leaves(expected.blocks)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # The loop's train metrics come from the pipeline's own loss and accuracy.
  for name in ("final_train_loss", "test_accuracy"):
    np.testing.assert_allclose(summary[name], want[name], rtol=1e-4,
                               err_msg=name)


def test_a_backprop_pipeline_refuses_what_it_cannot_run_in_one_line():
  engine = _cases.make_engine(_cases.MLP)                # bll
  spec = parallel.RunnerSpec(mesh="block=2", pipeline="gpipe")
  with pytest.raises(ValueError, match="pipelines backprop: use method bp"):
    baselines.make_runner(engine, spec)
  bp = _cases.make_engine(_cases.MLP, method="bp")
  with pytest.raises(ValueError, match="leave schedule at 'sync'"):
    baselines.make_runner(bp, parallel.RunnerSpec(
        mesh="block=2", pipeline="1f1b", schedule="pipelined"))
  with pytest.raises(ValueError, match="a batch of 30 does not split into 4 "
                     "micro-batches over 2 data devices"):
    baselines.make_runner(bp, parallel.RunnerSpec(
        mesh="data=2,block=2", pipeline="gpipe", micro_batches=4), 30)
  batchnorm = _cases.make_engine(_cases.CNN, shape=(10,), method="bp")
  with pytest.raises(ValueError, match="does not run networks with BatchNorm"):
    baselines.make_runner(batchnorm, parallel.RunnerSpec(
        mesh="block=2", pipeline="1f1b"))
  runner = baselines.make_runner(bp, parallel.RunnerSpec(
      mesh="data=2,block=2", pipeline="gpipe", micro_batches=2), 32)
  with pytest.raises(ValueError, match="bll_jax.baselines.make_runner "
                     "builds it"):
    parallel.make_runner(bp, parallel.RunnerSpec(pipeline="gpipe"))
  assert isinstance(runner, PipelinedBackprop)
  assert runner.describe()["micro_batches"] == 2
