"""The dataset interface that every input pipeline implements.

A :class:`Dataset` hands out numpy batches, ``{"inputs", "labels",
"weights"}``, for one epoch at a time:

* ``batch_size`` is the *global* batch size. With ``process_count > 1`` each
  process gets only its contiguous slice of every global batch, of size
  ``batch_size // process_count``; the slices of processes ``0..P-1``,
  concatenated, are the single-process batch.
* :meth:`Dataset.train_batches` is a pure function of ``(seed, epoch)``:
  ``start_step=k`` yields exactly the tail of the epoch from batch ``k`` on,
  which is how a killed run resumes mid-epoch. The remainder is dropped.
* :meth:`Dataset.test_batches` covers the whole test set in order with batches
  of one shape; the last batch is padded with repeated examples of weight 0.

:class:`ArrayDataset` implements this for data held in memory.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Iterator, Mapping

import numpy as np

# "inputs", "labels" (int32) and "weights" (float32), batch-major.
Batch = dict[str, np.ndarray]

TASKS = ("classification", "sequence", "language")
INPUT_DTYPES = ("float32", "int32")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about a dataset, known before any batch is read.

  Attributes:
    name: the dataset's name in :data:`bll_jax.data.DATASETS`.
    task: "classification", "sequence" (a task with a separator and
      targets, decoded greedily) or "language" (next-token prediction on
      windows of text); the last two have a label per token.
    num_classes: the number of classes, or the vocabulary size for sequences.
    input_shape: the shape of one example's inputs, e.g. `(28, 28, 1)`.
    input_dtype: "float32" (signals, images) or "int32" (tokens).
    train_size: training examples per epoch.
    test_size: test examples.
    metadata: task-specific facts, e.g. `{"source_length": L, "separator":
      id}` for sequences; `{}` otherwise.
  """
  name: str
  task: str
  num_classes: int
  input_shape: tuple[int, ...]
  input_dtype: str
  train_size: int
  test_size: int
  metadata: dict = dataclasses.field(default_factory=dict, hash=False)

  def __post_init__(self):
    if self.task not in TASKS:
      raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
    if self.input_dtype not in INPUT_DTYPES:
      raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got "
                       f"{self.input_dtype!r}")


@dataclasses.dataclass(frozen=True)
class Shard:
  """One process's slice of every global batch.

  Attributes:
    index: the process index, in `[0, count)`.
    count: the number of processes.
    size: the local batch size, `global batch size // count`.
  """
  index: int
  count: int
  size: int

  def positions(self, batch_start: int) -> np.ndarray:
    """Epoch positions of this slice of the batch starting at `batch_start`."""
    lo = batch_start + self.index * self.size
    return np.arange(lo, lo + self.size)


class Dataset(abc.ABC):
  """A dataset: static :attr:`info` plus deterministic batch iterators.

  Subclasses implement `_train_batches` and `_test_batches`; the public
  methods check their arguments first, so a bad argument raises at the call
  rather than at the first `next()`.
  """

  info: DatasetInfo

  def steps_per_epoch(self, batch_size: int) -> int:
    """Training batches per epoch: `train_size // batch_size`."""
    _positive_int("batch_size", batch_size)
    if batch_size > self.info.train_size:
      raise ValueError(
          f"batch_size must be at most the {self.info.train_size} training "
          f"examples of {self.info.name!r}, got {batch_size}")
    return self.info.train_size // batch_size

  def train_batches(self, batch_size: int, *, seed: int, epoch: int,
                    start_step: int = 0, process_index: int = 0,
                    process_count: int = 1) -> Iterator[Batch]:
    """The batches of epoch `epoch` from batch `start_step` on.

    Args:
      batch_size: the global batch size.
      seed: a non-negative integer; with `epoch` it fixes the epoch's order.
      epoch: a non-negative integer; every epoch has its own order.
      start_step: the first batch to yield, in `[0, steps_per_epoch]`.
      process_index: this process, in `[0, process_count)`.
      process_count: the number of processes sharing each global batch.

    Returns:
      An iterator over `steps_per_epoch(batch_size) - start_step` batches of
      this process's `batch_size // process_count` examples.
    """
    steps = self.steps_per_epoch(batch_size)
    shard = make_shard(batch_size, process_index, process_count)
    _non_negative_int("seed", seed)
    _non_negative_int("epoch", epoch)
    if not (_is_int(start_step) and 0 <= start_step <= steps):
      raise ValueError(
          f"start_step must be an integer in [0, {steps}] (the batches per "
          f"epoch at batch_size {batch_size}), got {start_step!r}")
    return self._train_batches(batch_size, seed=int(seed), epoch=int(epoch),
                               start_step=int(start_step), shard=shard)

  def test_batches(self, batch_size: int, *, process_index: int = 0,
                   process_count: int = 1) -> Iterator[Batch]:
    """The whole test set in order, the last batch padded with weight 0."""
    _positive_int("batch_size", batch_size)
    shard = make_shard(batch_size, process_index, process_count)
    return self._test_batches(batch_size, shard=shard)

  @abc.abstractmethod
  def _train_batches(self, batch_size: int, *, seed: int, epoch: int,
                     start_step: int, shard: Shard) -> Iterator[Batch]:
    """Yields the (checked) training batches."""

  @abc.abstractmethod
  def _test_batches(self, batch_size: int, *, shard: Shard) -> Iterator[Batch]:
    """Yields the (checked) test batches."""


class ArrayDataset(Dataset):
  """A dataset held in memory as numpy arrays.

  Each split is a dict of arrays with the same leading size: "inputs",
  "labels", and optionally "weights" (all ones by default). An epoch's order is
  `np.random.default_rng([seed, epoch]).permutation(train_size)`.
  """

  def __init__(self, info: DatasetInfo, train: Mapping[str, np.ndarray],
               test: Mapping[str, np.ndarray]):
    self.info = info
    self._train = _complete(train)
    self._test = _complete(test)

  def subset(self, train_size: int) -> "ArrayDataset":
    """The same dataset with a fixed random `train_size` of its training
    examples (drawn with seed 0, the same for every run); test unchanged."""
    if not 0 < train_size <= self.info.train_size:
      raise ValueError(
          f"train_size must be in [1, {self.info.train_size}] for "
          f"{self.info.name!r}, got {train_size!r}")
    keep = np.sort(np.random.default_rng(0).permutation(
        self.info.train_size)[:train_size])
    info = dataclasses.replace(self.info, train_size=int(train_size))
    return ArrayDataset(info, take(self._train, keep), self._test)

  def validation_split(self, fraction: float = 0.1) -> "ArrayDataset":
    """Training on all but a fixed random `fraction` of the training
    examples, evaluated on that held-out part instead of the test set.

    The held-out examples are drawn with seed 1 (seed 0 draws `subset`'s),
    the same for every run, so settings chosen on them never see the test
    set. `info.test_size` becomes the number held out.
    """
    held_out = int(round(fraction * self.info.train_size))
    if not (0 < fraction < 1 and 0 < held_out < self.info.train_size):
      raise ValueError(f"fraction must hold out between 1 and "
                       f"{self.info.train_size - 1} of the "
                       f"{self.info.train_size} training examples of "
                       f"{self.info.name!r}, got {fraction!r}")
    order = np.random.default_rng(1).permutation(self.info.train_size)
    validation, keep = np.sort(order[:held_out]), np.sort(order[held_out:])
    info = dataclasses.replace(self.info, train_size=len(keep),
                               test_size=held_out)
    return ArrayDataset(info, take(self._train, keep),
                        take(self._train, validation))

  def _train_batches(self, batch_size, *, seed, epoch, start_step, shard):
    order = epoch_permutation(seed, epoch, self.info.train_size)
    for step in range(start_step, self.info.train_size // batch_size):
      yield take(self._train, order[shard.positions(step * batch_size)])

  def _test_batches(self, batch_size, *, shard):
    return padded_test_batches(self._test, batch_size, shard)


# ---------------------------------------------------------------- helpers


def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
  """The order of epoch `epoch`: a permutation of `range(size)`."""
  return np.random.default_rng([seed, epoch]).permutation(size)


def take(arrays: Mapping[str, np.ndarray], index: np.ndarray) -> Batch:
  """The rows `index` of every array."""
  return {key: value[index] for key, value in arrays.items()}


def padded_test_batches(arrays: Mapping[str, np.ndarray], batch_size: int,
                        shard: Shard) -> Iterator[Batch]:
  """Batches over all rows in order; padding repeats rows, with weight 0.

  Padded position `i >= n` holds row `i % n`, so every batch has one shape.
  """
  n = len(arrays["labels"])
  for start in range(0, -(-n // batch_size) * batch_size, batch_size):
    positions = shard.positions(start)
    batch = take(arrays, positions % n)
    real = (positions < n).astype(np.float32)
    weights = batch["weights"]
    batch["weights"] = weights * real.reshape((-1,) + (1,) * (weights.ndim - 1))
    yield batch


def classification_arrays(inputs: np.ndarray, labels: np.ndarray) -> Batch:
  """The arrays of a classification split, weights all ones."""
  return {"inputs": inputs, "labels": labels.astype(np.int32),
          "weights": np.ones(len(labels), np.float32)}


def make_shard(batch_size: int, process_index: int,
               process_count: int) -> Shard:
  """Checks the process arguments and returns this process's slice."""
  _positive_int("process_count", process_count)
  if not (_is_int(process_index) and 0 <= process_index < process_count):
    raise ValueError(
        f"process_index must be an integer in [0, {process_count}) (the "
        f"process_count), got {process_index!r}")
  if batch_size % process_count:
    raise ValueError(
        f"batch_size ({batch_size}, the global batch size) must be divisible "
        f"by process_count ({process_count})")
  return Shard(int(process_index), int(process_count),
               batch_size // process_count)


def check_options(name: str, options: Mapping[str, Any],
                  defaults: Mapping[str, Any]) -> dict[str, Any]:
  """The defaults updated by `options`; raises on an unknown option."""
  unknown = sorted(set(options) - set(defaults))
  if unknown:
    allowed = sorted(defaults) or "none"
    raise ValueError(f"unknown option(s) {unknown} for dataset {name!r}; "
                     f"allowed options: {allowed}")
  return {**defaults, **options}


def positive_int(name: str, value: Any) -> int:
  """Returns `value` as an int, or raises unless it is a positive integer."""
  _positive_int(name, value)
  return int(value)


def _complete(arrays: Mapping[str, np.ndarray]) -> Batch:
  arrays = dict(arrays)
  arrays.setdefault("weights", np.ones(len(arrays["labels"]), np.float32))
  sizes = {key: len(value) for key, value in arrays.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"the arrays of a split must have one leading size, got "
                     f"{sizes}")
  return arrays


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _positive_int(name: str, value: Any) -> None:
  if not (_is_int(value) and value > 0):
    raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _non_negative_int(name: str, value: Any) -> None:
  if not (_is_int(value) and value >= 0):
    raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
