"""bll_jax.models.units: stock linen layers and NNX modules as units."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bll_jax import blocks
from bll_jax import engine as engine_lib
from bll_jax import families
from bll_jax import models
from bll_jax.models import units
from bll_jax.models.mlp import Dense as TrainDense

X = jax.random.normal(jax.random.key(0), (4, 8))
KEYS = {"params": jax.random.key(1), "latent": jax.random.key(2)}


def _block(*unit_list):
  """An output block of the adapted units (latent None)."""
  unit_list = tuple(units.as_unit(u) for u in unit_list)
  return blocks.Block(unit_list, (models.base.identity,) * len(unit_list))


class TwoLayers(nnx.Module):
  """Linear, relu, Linear: an NNX module as a user writes one."""

  def __init__(self, rngs):
    self.first = nnx.Linear(8, 6, rngs=rngs)
    self.second = nnx.Linear(6, 3, rngs=rngs)

  def __call__(self, x):
    return self.second(nnx.relu(self.first(x)))


class NormDrop(nnx.Module):
  """Linear, BatchNorm, Dropout; takes `train` as the engine's units do."""

  def __init__(self, rngs, rate=0.5):
    self.linear = nnx.Linear(8, 6, rngs=rngs)
    self.norm = nnx.BatchNorm(6, momentum=0.5, rngs=rngs)
    self.drop = nnx.Dropout(rate, rngs=rngs)

  def __call__(self, x, train: bool = False):
    return self.drop(self.norm(self.linear(x)))


# ----------------------------------------------------------------- linen


def test_a_stock_dense_in_a_block_is_the_dense_itself():
  block = _block(nn.Dense(8))
  variables = block.init(KEYS, X)
  # The adapter shares the Dense's scope: its variables are the Dense's own.
  assert jax.tree.map(jnp.shape, variables) == {
      "params": {"units_0": {"kernel": (8, 8), "bias": (8,)}}}
  direct = nn.Dense(8).apply({"params": variables["params"]["units_0"]}, X)
  for train in (True, False):
    eta, h = block.apply(variables, X, train=train,
                         rngs={"dropout": jax.random.key(3)})
    np.testing.assert_array_equal(eta, direct)
    np.testing.assert_array_equal(h, direct)


def test_a_stock_dropout_obeys_train():
  rate = 0.5
  unit = units.as_unit(nn.Dropout(rate))
  variables = unit.init(KEYS, X)
  assert variables == {}
  np.testing.assert_array_equal(unit.apply(variables, X, train=False), X)
  y = unit.apply(variables, X, train=True, rngs={"dropout": jax.random.key(4)})
  dropped = np.asarray(y) == 0
  assert 0 < dropped.sum() < dropped.size
  np.testing.assert_allclose(np.asarray(y)[~dropped],
                             np.asarray(X)[~dropped] / (1 - rate), rtol=1e-6)


def test_a_stock_sequential_passes_train_to_every_layer():
  seq = nn.Sequential([nn.Dense(8), nn.relu])
  unit = units.as_unit(seq)
  variables = unit.init(KEYS, X)
  # The Sequential's own variable names.
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
      jnp.shape, seq.init(KEYS, X))
  for train in (True, False):
    np.testing.assert_array_equal(unit.apply(variables, X, train=train),
                                  seq.apply(variables, X))
  # A Dropout after the first layer obeys `train` too (Sequential alone would
  # hand the keyword to its first layer only).
  dropping = units.as_unit(nn.Sequential([nn.Dense(8), nn.Dropout(0.9)]))
  v = dropping.init(KEYS, X)
  dense = nn.Dense(8).apply({"params": v["params"]["layers_0"]}, X)
  np.testing.assert_array_equal(dropping.apply(v, X, train=False), dense)
  y = dropping.apply(v, X, train=True, rngs={"dropout": jax.random.key(5)})
  assert (np.asarray(y) == 0).mean() > 0.5


def test_a_stock_batchnorm_obeys_train():
  unit = units.as_unit(nn.BatchNorm(momentum=0.5))
  variables = unit.init(KEYS, X)
  assert set(variables) == {"params", "batch_stats"}
  # Evaluation: the running statistics (zero mean, unit variance).
  np.testing.assert_allclose(unit.apply(variables, X, train=False),
                             X / np.sqrt(1 + 1e-5), rtol=1e-6)
  y, new = unit.apply(variables, X, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(np.asarray(y).mean(0), 0, atol=1e-6)
  np.testing.assert_allclose(new["batch_stats"]["mean"],
                             0.5 * np.asarray(X).mean(0), rtol=1e-5)


def test_units_that_take_train_pass_unchanged_and_functions_become_units():
  dense = TrainDense(4)                        # __call__(h, train)
  assert units.as_unit(dense) is dense
  once = units.as_unit(nn.Dense(4))
  assert units.as_unit(once) is once
  relu = units.as_unit(jax.nn.relu)
  variables = relu.init(KEYS, X)
  assert variables == {}
  np.testing.assert_array_equal(relu.apply(variables, X, train=True),
                                jax.nn.relu(X))
  # Adapted units stay hashable (engines are cached on their stacks).
  assert isinstance(hash(units.as_unit(nn.Sequential([nn.Dense(2)]))), int)
  assert isinstance(hash(units.as_unit(TwoLayers(nnx.Rngs(0)))), int)


@pytest.mark.parametrize("value,error,message", [
    (nn.Dense, TypeError, "got the class Dense"),
    (nnx.Linear, TypeError, "got the class Linear"),
    (3, TypeError, "got int"),
    (nn.Sequential([]), ValueError, "without layers"),
    (nnx.Dropout(0.5), ValueError, "without rngs"),
])
def test_as_unit_refuses_in_one_line(value, error, message):
  with pytest.raises(error, match=message) as info:
    units.as_unit(value)
  assert "\n" not in str(info.value)


def test_as_unit_refuses_nnx_variables_the_engine_cannot_keep():
  class Counter(nnx.Module):
    def __init__(self):
      self.count = nnx.Variable(jnp.zeros(()))

    def __call__(self, x):
      return x

  with pytest.raises(TypeError, match="holds a Variable at count") as info:
    units.as_unit(Counter())
  assert "\n" not in str(info.value)


# ------------------------------------------------------------------- NNX


def test_an_nnx_module_is_a_unit_that_keeps_its_weights_and_trains():
  module = TwoLayers(nnx.Rngs(7))
  kernel0 = np.asarray(module.first.kernel.get_value())
  block = _block(module)
  variables = block.init(KEYS, X)
  params = variables["params"]["units_0"]
  assert set(variables) == {"params"}
  assert jax.tree.map(jnp.shape, params) == {
      "first": {"kernel": (8, 6), "bias": (6,)},
      "second": {"kernel": (6, 3), "bias": (3,)}}
  # The instance's weights, whatever the engine's init key.
  np.testing.assert_array_equal(params["first"]["kernel"], kernel0)
  other = block.init({"params": jax.random.key(9), "latent": KEYS["latent"]},
                     X)
  assert jax.tree.all(jax.tree.map(np.array_equal, variables, other))

  def forward(p, x):
    return block.apply({"params": p}, x, train=True)[0]

  def by_hand(p, x):
    hidden = jax.nn.relu(x @ p["units_0"]["first"]["kernel"]
                         + p["units_0"]["first"]["bias"])
    return (hidden @ p["units_0"]["second"]["kernel"]
            + p["units_0"]["second"]["bias"])

  np.testing.assert_allclose(forward(variables["params"], X),
                             by_hand(variables["params"], X), rtol=1e-6)
  target = jnp.ones((4, 3))

  def loss(p):
    return jnp.mean((forward(p, X) - target) ** 2)

  tx = optax.sgd(0.1)
  grads = jax.grad(loss)(variables["params"])
  assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))
  updates, _ = tx.update(grads, tx.init(variables["params"]))
  new = optax.apply_updates(variables["params"], updates)
  assert float(loss(new)) < float(loss(variables["params"]))
  np.testing.assert_allclose(forward(new, X), by_hand(new, X), rtol=1e-6)
  # The instance itself is left alone.
  np.testing.assert_array_equal(module.first.kernel.get_value(), kernel0)


def test_an_nnx_module_with_batchnorm_and_dropout_obeys_train():
  module = NormDrop(nnx.Rngs(3))
  unit = units.as_unit(module)
  assert unit.keyword == "train"
  variables = unit.init(KEYS, X)
  assert jax.tree.map(jnp.shape, variables["batch_stats"]) == {
      "norm": {"mean": (6,), "var": (6,)}}
  # Evaluation: running statistics, no dropout, what the instance gives in
  # eval mode; and no dropout key needed.
  y_eval = unit.apply(variables, X, train=False)
  module.eval()
  np.testing.assert_allclose(y_eval, module(X), rtol=1e-6)
  # Training: batch statistics, updated where mutable, and fresh dropout
  # masks from the block's stream.
  y1, new = unit.apply(variables, X, train=True, mutable=["batch_stats"],
                       rngs={"dropout": jax.random.key(1)})
  y2, _ = unit.apply(variables, X, train=True, mutable=["batch_stats"],
                     rngs={"dropout": jax.random.key(2)})
  assert 0 < (np.asarray(y1) == 0).mean() < 1
  assert not np.array_equal(np.asarray(y1) == 0, np.asarray(y2) == 0)
  hidden = X @ variables["params"]["linear"]["kernel"] + variables[
      "params"]["linear"]["bias"]
  np.testing.assert_allclose(new["batch_stats"]["norm"]["mean"],
                             0.5 * np.asarray(hidden).mean(0), rtol=1e-5,
                             atol=1e-7)
  assert not np.allclose(new["batch_stats"]["norm"]["var"],
                         variables["batch_stats"]["norm"]["var"])
  # Evaluation leaves the statistics as they were.
  _, same = unit.apply(variables, X, train=False, mutable=["batch_stats"])
  assert jax.tree.all(jax.tree.map(np.array_equal, same["batch_stats"],
                                   variables["batch_stats"]))


def test_nnx_layers_called_directly_obey_train():
  unit = units.as_unit(nnx.Dropout(0.5, rngs=nnx.Rngs(0)))
  assert unit.keyword == "deterministic"
  np.testing.assert_array_equal(unit.apply({}, X, train=False), X)
  y = unit.apply({}, X, train=True, rngs={"dropout": jax.random.key(3)})
  kept = np.asarray(y) != 0
  np.testing.assert_allclose(np.asarray(y)[kept], 2 * np.asarray(X)[kept],
                             rtol=1e-6)


def test_flax_bridge_to_linen_draws_from_the_init_key():
  unit = units.as_unit(nnx.bridge.to_linen(nnx.Linear, 8, 4))
  v0 = unit.init({"params": jax.random.key(0)}, X)
  v1 = unit.init({"params": jax.random.key(1)}, X)
  assert not np.array_equal(v0["params"]["kernel"], v1["params"]["kernel"])
  np.testing.assert_allclose(
      unit.apply(v0, X, train=True),
      X @ v0["params"]["kernel"] + v0["params"]["bias"], rtol=1e-6)


# ------------------------------------------------------- stacks, engines


def test_from_units_reads_positions_from_the_output_rank():
  stack = units.from_units(
      [nn.Conv(4, (3, 3)), nn.Sequential([nn.Conv(4, (3, 3), strides=2),
                                          nn.relu]),
       nn.Conv(4, (3, 3)), lambda h: h.reshape(h.shape[0], -1),
       nn.Dense(5)],
      input_shape=(8, 8, 3))
  # The reshape is the third conv's activation: its output is a vector.
  assert stack.position_ndim == (2, 2, 0, 0)
  assert stack.name == "custom" and not stack.token_targets
  assert stack.activations[:2] == (models.base.identity,) * 2
  assert stack.activations[2] is not models.base.identity
  assert stack.activations[3] is models.base.identity
  signal = units.from_units([nn.Conv(4, (3,)), nn.Dense(5)],
                            input_shape=(10, 1), name="signal",
                            activations=(nn.relu, models.base.identity))
  assert signal.position_ndim == (1, 1) and signal.name == "signal"
  assert signal.activations[0] is nn.relu
  tokens = units.from_units([nn.Embed(7, 8), nn.Dense(7)], input_shape=(6,),
                            token_targets=True, input_dtype="int32")
  assert tokens.position_ndim == (0, 0) and tokens.token_targets


@pytest.mark.parametrize("kwargs,error,message", [
    ({"units": []}, ValueError, "empty sequence"),
    ({"units": nn.Dense(3)}, TypeError, "sequence of modules, got Dense"),
    ({"units": [nn.Dense(3), nn.Conv(3, (3, 3))]}, ValueError,
     r"unit 1 \(Conv\) fails on an input of shape \(1, 3\) float32"),
    ({"units": [nn.Dense(3)], "activations": (nn.relu, nn.relu)}, ValueError,
     "1 functions"),
    ({"units": [jnp.sum]}, ValueError, r"unit 0 \(\w+\) must return"),
])
def test_from_units_refuses_in_one_line(kwargs, error, message):
  with pytest.raises(error, match=message) as info:
    units.from_units(input_shape=(8,), **kwargs)
  assert "\n" not in str(info.value)


def test_as_stack_takes_what_a_factory_returns():
  relu_mlp = [nn.Sequential([nn.Dense(4), nn.relu]), nn.Dense(3)]
  assert len(units.as_stack(relu_mlp, num_classes=3, input_shape=(8,))) == 2
  assert len(units.as_stack(tuple(relu_mlp), num_classes=3,
                            input_shape=(8,))) == 2
  # An nn.Sequential: one unit per module, a function after one is its
  # activation (no cut between a layer and its nonlinearity).
  seq = units.as_stack(nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(3)]),
                       num_classes=3, input_shape=(8,))
  assert len(seq) == 2 and seq.position_ndim == (0, 0)
  assert seq.activations == (nn.relu, models.base.identity)
  first = units.as_stack([jnp.tanh, nn.Dense(3), nn.relu, jnp.abs],
                         num_classes=3, input_shape=(8,))
  assert len(first) == 2 and first.activations[0] is models.base.identity
  h = jnp.linspace(-1, 1, 6)
  np.testing.assert_array_equal(first.activations[1](h),
                                jnp.abs(nn.relu(h)))
  # A LayerStack: stock units adapted, the rest kept.
  stock = models.LayerStack("stock", (nn.Dense(4), nn.Dense(3)),
                            (nn.relu, models.base.identity), (0, 0))
  stack = units.as_stack(stock, num_classes=3, input_shape=(8,))
  assert stack.name == "stock" and stack.activations == stock.activations
  variables = _block(*stack.units).init(KEYS, X)
  assert set(variables["params"]) == {"units_0", "units_1"}
  built = models.mlp((4,), 3)
  assert units.as_stack(built, num_classes=3, input_shape=(8,)) == built


@pytest.mark.parametrize("value,error,message", [
    ([nn.Dense(4), nn.Dense(7)], ValueError,
     "gives 7 features on its last axis, but num_classes is 3"),
    (models.mlp((4,), 5), ValueError, "gives 5 features .* num_classes is 3"),
    ({"dense": nn.Dense(3)}, TypeError,
     "must return a LayerStack, a list or tuple of modules, or an "
     "nn.Sequential, got dict"),
    (nn.Dense(3), TypeError, "got Dense"),
    ([], ValueError, "empty sequence"),
])
def test_as_stack_refuses_in_one_line(value, error, message):
  with pytest.raises(error, match=message) as info:
    units.as_stack(value, num_classes=3, input_shape=(8,))
  assert "\n" not in str(info.value)


def _train(stack, shape, num_blocks, steps=3):
  edges = blocks.boundaries(len(stack), num_blocks)
  engine = engine_lib.Engine(
      stack, edges, [blocks.Latent(families.Gaussian())] * (len(edges) - 2),
      method="bll", feedback_mode="chained", num_classes=10,
      input_shape=shape, input_dtype=jnp.float32, tx=optax.adam(1e-2),
      objective=engine_lib.Objective(feedback_loss="discriminative"))
  rng = np.random.default_rng(0)
  batch = {"inputs": jnp.asarray(rng.normal(size=(8,) + shape), jnp.float32),
           "labels": jnp.asarray(rng.integers(0, 10, 8), jnp.int32),
           "weights": jnp.ones(8)}
  state = engine.init(jax.random.key(0), batch["inputs"])
  new, losses = state, []
  for i in range(steps):
    new, metrics = engine.train_step(new, batch, jax.random.key(10 + i))
    losses += [float(v) for k, v in metrics.items() if k.endswith("loss")]
  assert losses and np.all(np.isfinite(losses))
  for before, after in zip(state.blocks, new.blocks):
    assert jax.tree.leaves(before.params)
    assert max(float(jnp.abs(a - b).max()) for a, b in zip(
        jax.tree.leaves(before.params), jax.tree.leaves(after.params))) > 0
  return state, new


def test_the_engine_trains_a_stack_of_stock_units():
  stack = units.from_units(
      [nn.Sequential([nn.Dense(16), nn.relu]),
       nn.Sequential([nn.Dense(16), nn.relu]),
       nn.Sequential([nn.Dense(10)])], input_shape=(12,))
  assert stack.position_ndim == (0, 0, 0)
  _train(stack, (12,), num_blocks=3)


def test_the_engine_trains_nnx_units_and_their_batch_stats():
  stack = units.as_stack([NormDrop(nnx.Rngs(0), rate=0.2),
                          nnx.Linear(6, 6, rngs=nnx.Rngs(1)),
                          nnx.Linear(6, 10, rngs=nnx.Rngs(2))],
                         num_classes=10, input_shape=(8,))
  state, new = _train(stack, (8,), num_blocks=3)
  stats0, stats1 = state.blocks[0].batch_stats, new.blocks[0].batch_stats
  assert set(stats0) == {"units_0"}
  assert not np.allclose(stats0["units_0"]["norm"]["mean"],
                         stats1["units_0"]["norm"]["mean"])
