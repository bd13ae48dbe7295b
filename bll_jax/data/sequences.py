"""Synthetic sequence tasks for a decoder-only Transformer: reverse, sort, copy.

An example is a source `s` of `L` symbols, drawn uniformly with replacement,
and its target `t`: `reverse(s)`, `sorted(s)` or `s`. The model reads the
whole sequence `seq = [s_1 .. s_L, SEP, t_1 .. t_L]` (length `2L + 1`):

* `inputs = seq[:-1]` and `labels = seq[1:]`, both int32 of length `2L`;
* `weights[j] = 1` exactly where position `j` predicts a target token,
  `j = L .. 2L - 1` (position `L` holds SEP and predicts `t_1`), else 0.

Token ids: 0 is padding / BOS and never a label, symbols are
`1 .. num_symbols`, `SEP = num_symbols + 1`; the vocabulary has
`num_symbols + 2` tokens (`info.num_classes`).

Training batches are generated on the fly, batch `step` of epoch `epoch` from
`np.random.default_rng([seed, epoch, step])`, so a resumed run sees the same
data. The test set comes from a fixed seed of its own, the child
`SeedSequence(TEST_ENTROPY, spawn_key=(1,))`, a stream apart from every
training stream (plain `default_rng([TEST_ENTROPY])` would equal the training
batch `[TEST_ENTROPY, 0, 0]`): it is the same in every run and for every seed.
With `eval_split="validation"` the sequences evaluated come from the child
`spawn_key=(2,)` instead: a validation set apart from the test set and from
training, to choose settings on without looking at the test set. Training
does not depend on it, so a run evaluated on either split trains the same.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from bll_jax.data import base

TARGETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "reverse": lambda source: source[:, ::-1],
    "sort": lambda source: np.sort(source, axis=1),
    "copy": lambda source: source,
}
DEFAULTS = {"length": 16, "num_symbols": 16, "train_size": 65536,
            "test_size": 1000, "eval_split": "test"}
TEST_ENTROPY = 2**31 - 1
EVAL_STREAMS = {"test": 1, "validation": 2}   # spawn keys of TEST_ENTROPY


def load(name: str, **options) -> SequenceDataset:
  """The sequence task `name` ("reverse", "sort" or "copy").

  Args:
    name: the task.
    **options: `length` (L, default 16), `num_symbols` (default 16),
      `train_size` (examples per epoch, default 65536), `test_size` (default
      1000), `eval_split` ("test", the default, or "validation": which
      held-out sequences `test_batches` hands out).

  Returns:
    The dataset, inputs int32 of shape `(2L,)`.
  """
  if name not in TARGETS:
    raise ValueError(f"name must be one of {tuple(TARGETS)}, got {name!r}")
  options = base.check_options(name, options, DEFAULTS)
  split = options.pop("eval_split")
  if split not in EVAL_STREAMS:
    raise ValueError(f"eval_split must be one of {tuple(EVAL_STREAMS)}, got "
                     f"{split!r}")
  return SequenceDataset(name, eval_split=split,
                         **{key: base.positive_int(key, value)
                            for key, value in options.items()})


class SequenceDataset(base.Dataset):
  """One sequence task; see the module docstring for the format."""

  def __init__(self, name: str, *, length: int, num_symbols: int,
               train_size: int, test_size: int, eval_split: str = "test"):
    self._target = TARGETS[name]
    self._length = length
    self._num_symbols = num_symbols
    self.info = base.DatasetInfo(
        name=name, task="sequence", num_classes=num_symbols + 2,
        input_shape=(2 * length,), input_dtype="int32", train_size=train_size,
        test_size=test_size,
        metadata={"source_length": length, "separator": num_symbols + 1})
    test_rng = np.random.default_rng(np.random.SeedSequence(
        TEST_ENTROPY, spawn_key=(EVAL_STREAMS[eval_split],)))
    self._test = self._examples(test_rng, test_size)

  def _train_batches(self, batch_size, *, seed, epoch, start_step, shard):
    for step in range(start_step, self.info.train_size // batch_size):
      # The whole global batch, then this process's rows: the data does not
      # depend on the number of processes.
      batch = self._examples(np.random.default_rng([seed, epoch, step]),
                             batch_size)
      yield base.take(batch, shard.positions(0))

  def _test_batches(self, batch_size, *, shard):
    return base.padded_test_batches(self._test, batch_size, shard)

  def _examples(self, rng: np.random.Generator, count: int) -> base.Batch:
    """`count` fresh examples drawn from `rng`."""
    length = self._length
    source = rng.integers(1, self._num_symbols + 1, size=(count, length),
                          dtype=np.int32)
    separator = np.full((count, 1), self._num_symbols + 1, np.int32)
    seq = np.concatenate([source, separator, self._target(source)], axis=1)
    weights = np.zeros((count, 2 * length), np.float32)
    weights[:, length:] = 1.0
    return {"inputs": seq[:, :-1], "labels": seq[:, 1:], "weights": weights}
