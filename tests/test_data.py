"""bll_jax.data against independently computed data, orders and slices."""

import gzip
import os
import random
import struct
import subprocess
import sys

import numpy as np
import pytest

from bll_jax import data
from bll_jax.data import base
from bll_jax.data import idx
from bll_jax.data import mnist1d as mnist1d_source
from tests import conftest

IMAGE_SHAPE = (4, 5)          # synthetic IDX images: small and fast
TRAIN_SIZE, TEST_SIZE = 50, 13


def _write_idx(path, magic, array, compress):
  payload = struct.pack(f">I{array.ndim}I", magic, *array.shape)
  payload += array.astype(np.uint8).tobytes()
  opener = gzip.open if compress else open
  with opener(path, "wb") as f:
    f.write(payload)


def _write_idx_dir(directory, content):
  """The four IDX files of `content`: train raw, test gzipped."""
  for key, file in idx.FILES.items():
    magic = idx.IMAGES_MAGIC if "images" in key else idx.LABELS_MAGIC
    compress = key.startswith("test")
    _write_idx(directory / (file + (".gz" if compress else "")), magic,
               content[key], compress)


def _nearest_rows(rows, reference):
  """For each row, the index of the (numerically) equal reference row."""
  rows = rows.reshape(len(rows), -1).astype(np.float64)
  reference = reference.reshape(len(reference), -1).astype(np.float64)
  distance = ((rows**2).sum(1)[:, None] + (reference**2).sum(1)[None, :]
              - 2 * rows @ reference.T)
  nearest = distance.argmin(axis=1)
  np.testing.assert_allclose(rows, reference[nearest], atol=1e-4)
  return nearest


def _epoch(dataset, batch_size, **kwargs):
  return list(dataset.train_batches(batch_size, **kwargs))


def _concat(batches):
  return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def _assert_same_batches(got, expected):
  assert len(got) == len(expected)
  for g, e in zip(got, expected):
    assert g.keys() == e.keys() == {"inputs", "labels", "weights"}
    for key in e:
      assert g[key].dtype == e[key].dtype
      np.testing.assert_array_equal(g[key], e[key], err_msg=key)


# ------------------------------------------------------------------ datasets


@pytest.fixture(scope="module")
def idx_files(tmp_path_factory):
  """Synthetic IDX files (train raw, test gzipped) and their known content."""
  rng = np.random.default_rng(0)
  content = {
      "train_images": rng.integers(0, 256, (TRAIN_SIZE,) + IMAGE_SHAPE),
      "train_labels": rng.integers(0, 10, TRAIN_SIZE),
      "test_images": rng.integers(0, 256, (TEST_SIZE,) + IMAGE_SHAPE),
      "test_labels": rng.integers(0, 10, TEST_SIZE),
  }
  directory = tmp_path_factory.mktemp("idx")
  _write_idx_dir(directory, content)
  return directory, content


def _idx_expected(content):
  """The standardised images, computed here in float64."""
  train, test = content["train_images"] / 255.0, content["test_images"] / 255.0
  mean, std = train.mean(), train.std()
  return ((train - mean) / std)[..., None], ((test - mean) / std)[..., None]


@pytest.fixture(scope="module")
def mnist1d_dataset():
  return data.load("mnist1d")


@pytest.fixture(scope="module")
def mnist1d_reference():
  """The `mnist1d` package's arrays, standardised here."""
  from mnist1d.data import get_dataset_args, make_dataset
  state = np.random.get_state()
  raw = make_dataset(get_dataset_args())
  np.random.set_state(state)
  mean, std = raw["x"].mean(), raw["x"].std()
  return ((raw["x"] - mean) / std, raw["y"], (raw["x_test"] - mean) / std,
          raw["y_test"])


@pytest.fixture(params=["mnist1d", "idx", "sequences"])
def dataset(request):
  """Every offline source, with a batch size that leaves a remainder."""
  if request.param == "mnist1d":
    return request.getfixturevalue("mnist1d_dataset"), 96
  if request.param == "idx":
    directory, _ = request.getfixturevalue("idx_files")
    return data.load("mnist", data_dir=directory), 8
  return data.load("sort", length=5, num_symbols=7, train_size=100,
                   test_size=23), 8


# ---------------------------------------------------------- the contract


def test_same_seed_and_epoch_give_identical_batches(dataset):
  ds, batch_size = dataset
  _assert_same_batches(_epoch(ds, batch_size, seed=3, epoch=2),
                       _epoch(ds, batch_size, seed=3, epoch=2))


@pytest.mark.parametrize("other", [dict(seed=3, epoch=1),
                                   dict(seed=4, epoch=2)])
def test_another_epoch_or_seed_gives_another_order(dataset, other):
  ds, batch_size = dataset
  first = _concat(_epoch(ds, batch_size, seed=3, epoch=2))["inputs"]
  second = _concat(_epoch(ds, batch_size, **other))["inputs"]
  assert first.shape == second.shape
  assert (first != second).any(axis=tuple(range(1, first.ndim))).mean() > 0.5


def test_start_step_yields_exactly_the_tail_of_the_epoch(dataset):
  ds, batch_size = dataset
  full = _epoch(ds, batch_size, seed=5, epoch=7)
  steps = ds.info.train_size // batch_size
  assert len(full) == ds.steps_per_epoch(batch_size) == steps
  for start in (1, steps // 2, steps - 1, steps):
    _assert_same_batches(
        _epoch(ds, batch_size, seed=5, epoch=7, start_step=start), full[start:])


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_slices_concatenate_to_the_global_batch(dataset, process_count):
  ds, batch_size = dataset
  whole = _epoch(ds, batch_size, seed=1, epoch=0, start_step=1)
  slices = [_epoch(ds, batch_size, seed=1, epoch=0, start_step=1,
                   process_index=p, process_count=process_count)
            for p in range(process_count)]
  for step, batch in enumerate(whole):
    _assert_same_batches([_concat([s[step] for s in slices])], [batch])
  test_whole = list(ds.test_batches(batch_size))
  test_slices = [list(ds.test_batches(batch_size, process_index=p,
                                      process_count=process_count))
                 for p in range(process_count)]
  for step, batch in enumerate(test_whole):
    _assert_same_batches([_concat([s[step] for s in test_slices])], [batch])


def test_test_batches_cover_the_test_set_in_order_with_zero_weight_padding(
    dataset):
  ds, batch_size = dataset
  batches = list(ds.test_batches(batch_size))
  n = ds.info.test_size
  assert n % batch_size, "the test needs a padded last batch"
  assert len(batches) == -(-n // batch_size)
  assert {tuple(b["inputs"].shape) for b in batches} == {
      (batch_size,) + ds.info.input_shape}
  got = _concat(batches)
  real = got["weights"].reshape(len(got["weights"]), -1).max(axis=1)
  np.testing.assert_array_equal(real, np.arange(len(real)) < n)
  pad = len(real) - n     # the padding repeats the first examples
  np.testing.assert_array_equal(got["inputs"][n:], got["inputs"][:pad])
  if ds.info.task == "classification":
    assert got["weights"].sum() == n
  else:
    assert got["weights"].sum() == n * ds.info.metadata["source_length"]


def test_bad_batching_arguments_raise(dataset):
  ds, batch_size = dataset
  steps = ds.steps_per_epoch(batch_size)
  with pytest.raises(ValueError, match="divisible by process_count"):
    ds.train_batches(batch_size, seed=0, epoch=0, process_count=5)
  with pytest.raises(ValueError, match="process_index"):
    ds.test_batches(batch_size, process_index=2, process_count=2)
  with pytest.raises(ValueError, match=rf"start_step .*\[0, {steps}\]"):
    ds.train_batches(batch_size, seed=0, epoch=0, start_step=steps + 1)
  with pytest.raises(ValueError, match="seed must be a non-negative"):
    ds.train_batches(batch_size, seed=-1, epoch=0)
  with pytest.raises(ValueError, match="batch_size must be at most"):
    ds.steps_per_epoch(ds.info.train_size + 1)


# ---------------------------------------------------------------- mnist1d


def test_mnist1d_matches_the_package_and_visits_each_example_once(
    mnist1d_dataset, mnist1d_reference):
  ds = mnist1d_dataset
  x, y, x_test, y_test = mnist1d_reference
  assert ds.info == base.DatasetInfo("mnist1d", "classification", 10, (40,),
                                     "float32", 4000, 1000, {})
  assert hash(ds.info) == hash(data.load("mnist1d").info)   # a jit static
  test = _concat(list(ds.test_batches(1000)))
  np.testing.assert_allclose(test["inputs"], x_test, atol=1e-5)
  np.testing.assert_array_equal(test["labels"], y_test)
  epoch = _concat(_epoch(ds, 96, seed=0, epoch=0))
  assert epoch["inputs"].dtype == np.float32
  assert epoch["labels"].dtype == np.int32
  found = _nearest_rows(epoch["inputs"], x)
  assert len(set(found)) == len(found) == 41 * 96
  np.testing.assert_array_equal(epoch["labels"], y[found])
  np.testing.assert_array_equal(epoch["weights"], 1.0)


def test_mnist1d_leaves_the_global_random_states_alone(tmp_path, monkeypatch):
  monkeypatch.setenv(mnist1d_source.CACHE_ENV, str(tmp_path))   # generate
  mnist1d_source._generate.cache_clear()
  np.random.seed(123)
  random.seed(456)
  numpy_before, python_before = np.random.random(3), random.random()
  np.random.seed(123)
  random.seed(456)
  data.load("mnist1d", num_samples=100)
  assert np.array_equal(np.random.random(3), numpy_before)
  assert random.random() == python_before


def test_mnist1d_is_generated_once_into_its_cache_and_read_back(
    tmp_path, monkeypatch):
  monkeypatch.setenv(mnist1d_source.CACHE_ENV, str(tmp_path))
  mnist1d_source._generate.cache_clear()
  generated = data.load("mnist1d", num_samples=100)
  files = list(tmp_path.glob("mnist1d-*.npz"))
  assert len(files) == 1
  mnist1d_source._generate.cache_clear()
  read = data.load("mnist1d", num_samples=100)
  for a, b in zip(_concat(list(generated.test_batches(20))).values(),
                  _concat(list(read.test_batches(20))).values()):
    np.testing.assert_array_equal(a, b)
  # A damaged cache file is generated anew (and replaced), never trusted.
  whole = files[0].read_bytes()
  for damaged in (b"not an npz file", whole[:len(whole) // 2]):
    files[0].write_bytes(damaged)
    mnist1d_source._generate.cache_clear()
    again = data.load("mnist1d", num_samples=100)
    np.testing.assert_array_equal(
        _concat(list(again.test_batches(20)))["inputs"],
        _concat(list(read.test_batches(20)))["inputs"])
    assert files[0].read_bytes() == whole
  mnist1d_source._generate.cache_clear()


# -------------------------------------------------------------------- idx


def test_idx_files_are_read_back_exactly(idx_files):
  directory, content = idx_files
  for key, file in idx.FILES.items():
    magic = idx.IMAGES_MAGIC if "images" in key else idx.LABELS_MAGIC
    path = directory / (file + (".gz" if key.startswith("test") else ""))
    np.testing.assert_array_equal(idx.read(str(path), magic), content[key])
  ds = data.load("fashion_mnist", data_dir=directory)
  assert isinstance(ds, base.ArrayDataset)
  assert ds.info == base.DatasetInfo("fashion_mnist", "classification", 10,
                                     IMAGE_SHAPE + (1,), "float32",
                                     TRAIN_SIZE, TEST_SIZE, {})
  train, test = _idx_expected(content)
  got = _concat(list(ds.test_batches(TEST_SIZE)))
  np.testing.assert_allclose(got["inputs"], test, atol=1e-5)
  np.testing.assert_array_equal(got["labels"], content["test_labels"])
  epoch = _concat(_epoch(ds, 10, seed=2, epoch=0))  # all 50, in the epoch order
  order = np.random.default_rng([2, 0]).permutation(TRAIN_SIZE)
  np.testing.assert_allclose(epoch["inputs"], train[order], atol=1e-5)
  np.testing.assert_array_equal(epoch["labels"], content["train_labels"][order])


@pytest.mark.parametrize("compress", [False, True])
def test_idx_truncated_or_wrong_magic_raises_naming_the_file(tmp_path,
                                                             compress):
  images = np.arange(3 * 4 * 5).reshape(3, 4, 5)
  path = str(tmp_path / ("images" + (".gz" if compress else "")))
  _write_idx(path, idx.IMAGES_MAGIC, images, compress)
  opener = gzip.open if compress else open
  with opener(path, "rb") as f:
    raw = f.read()
  for broken, match in [(raw[:-1], "truncated"), (raw[:6], "truncated"),
                        (raw + b"\0", "too long")]:
    with opener(path, "wb") as f:
      f.write(broken)
    with pytest.raises(ValueError, match=match) as error:
      idx.read(path, idx.IMAGES_MAGIC)
    assert path in str(error.value)
  _write_idx(path, idx.IMAGES_MAGIC, images, compress)
  with pytest.raises(ValueError, match="magic number 0x00000803") as error:
    idx.read(path, idx.LABELS_MAGIC)
  assert path in str(error.value)


def test_idx_broken_gzip_stream_raises_naming_the_file(tmp_path):
  path = str(tmp_path / "labels.gz")
  _write_idx(path, idx.LABELS_MAGIC, np.arange(1000) % 10, True)
  with open(path, "rb") as f:
    raw = f.read()
  with open(path, "wb") as f:
    f.write(raw[: len(raw) // 2])
  with pytest.raises(ValueError, match="corrupted") as error:
    idx.read(path, idx.LABELS_MAGIC)
  assert path in str(error.value)


def test_idx_missing_directory_or_files_raise(tmp_path, idx_files):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    idx.load("mnist", str(tmp_path / "absent"))
  with pytest.raises(FileNotFoundError) as error:
    data.load("mnist", data_dir=tmp_path, source="idx")
  message = str(error.value)
  assert str(tmp_path) in message
  assert all(file in message for file in idx.FILES.values())
  _, content = idx_files    # the labels must match the images in number
  short = tmp_path / "short"
  short.mkdir()
  _write_idx_dir(short, {**content,
                        "train_labels": content["train_labels"][1:]})
  with pytest.raises(ValueError, match=f"{TRAIN_SIZE - 1} labels"):
    data.load("mnist", data_dir=short)


def test_debian_fashion_mnist():
  directory = data.DEBIAN_FASHION_MNIST
  if not idx.has_files(directory):
    conftest.skip_unless_required(
        "BLL_REQUIRE_FASHION_MNIST",
        f"no Fashion-MNIST IDX files in {directory} (apt-get install "
        f"dataset-fashion-mnist)")
  ds = data.load("fashion_mnist")          # auto: the Debian directory
  assert isinstance(ds, base.ArrayDataset)
  assert ds.info == base.DatasetInfo("fashion_mnist", "classification", 10,
                                     (28, 28, 1), "float32", 60000, 10000, {})
  train = next(ds.train_batches(60000, seed=0, epoch=0))
  assert abs(train["inputs"].mean(dtype=np.float64)) < 1e-4
  assert abs(train["inputs"].std(dtype=np.float64) - 1.0) < 1e-4
  np.testing.assert_array_equal(np.bincount(train["labels"]), [6000] * 10)
  with gzip.open(os.path.join(directory, "t10k-labels-idx1-ubyte.gz")) as f:
    test_labels = np.frombuffer(f.read(), np.uint8, offset=8)
  test = next(ds.test_batches(10000))
  np.testing.assert_array_equal(test["labels"], test_labels)


# -------------------------------------------------------------- sequences


@pytest.mark.parametrize("name", ["reverse", "sort", "copy"])
def test_sequences_hold_the_task_and_weight_exactly_the_targets(name):
  length, num_symbols = 6, 5
  ds = data.load(name, length=length, num_symbols=num_symbols, train_size=64,
                 test_size=10)
  separator = num_symbols + 1
  assert ds.info == base.DatasetInfo(
      name, "sequence", num_symbols + 2, (2 * length,), "int32", 64, 10,
      {"source_length": length, "separator": separator})
  expected_weights = [0.0] * length + [1.0] * length
  batches = _epoch(ds, 16, seed=0, epoch=0) + list(ds.test_batches(10))
  for batch in batches:
    assert batch["inputs"].dtype == batch["labels"].dtype == np.int32
    for inputs, labels, weights in zip(batch["inputs"], batch["labels"],
                                       batch["weights"]):
      seq = list(inputs) + [labels[-1]]
      assert list(labels) == seq[1:]
      source, sep, target = seq[:length], seq[length], seq[length + 1:]
      assert sep == separator and all(1 <= s <= num_symbols for s in source)
      assert target == {"reverse": source[::-1], "sort": sorted(source),
                        "copy": source}[name]
      assert list(weights) == expected_weights
      assert 0 not in labels[weights > 0] and 0 not in labels


def test_sequence_test_set_is_fixed_and_apart_from_training():
  first = data.load("copy", length=8, test_size=50, train_size=50)
  second = data.load("copy", length=8, test_size=50, train_size=50)
  test = next(first.test_batches(50))
  _assert_same_batches([next(second.test_batches(50))], [test])
  train = {row.tobytes() for seed in range(3) for epoch in range(2)
           for batch in first.train_batches(10, seed=seed, epoch=epoch)
           for row in batch["inputs"]}
  assert not train & {row.tobytes() for row in test["inputs"]}


def test_sequence_validation_set_is_fixed_and_apart_from_test_and_training():
  def rows(batches):
    return {row.tobytes() for batch in batches for row in batch["inputs"]}

  test = data.load("sort", length=8, test_size=200, train_size=50)
  validation = data.load("sort", length=8, test_size=200, train_size=50,
                         eval_split="validation")
  again = data.load("sort", length=8, test_size=200, train_size=50,
                    eval_split="validation")
  _assert_same_batches(list(again.test_batches(64)),
                       list(validation.test_batches(64)))
  held_out = rows(validation.test_batches(64))
  assert len(held_out) > 190            # 16^8 sources: hardly any repeats
  assert not held_out & rows(test.test_batches(64))
  train = rows(batch for seed in range(3)
               for batch in validation.train_batches(10, seed=seed, epoch=0))
  assert not held_out & train
  # The split changes what is evaluated, never what is trained on.
  _assert_same_batches(list(validation.train_batches(10, seed=1, epoch=0)),
                       list(test.train_batches(10, seed=1, epoch=0)))
  with pytest.raises(ValueError, match=r"eval_split must be one of \('test', "
                     r"'validation'\), got 'train'"):
    data.load("sort", eval_split="train")


def _in_memory(train_size=50, test_size=7):
  """An ArrayDataset whose inputs name their rows: train i -> i, test -> -i."""
  info = base.DatasetInfo("mnist1d", "classification", 3, (1,), "float32",
                          train_size, test_size)
  train = {"inputs": np.arange(train_size, dtype=np.float32)[:, None],
           "labels": np.arange(train_size, dtype=np.int32) % 3}
  test = {"inputs": -1 - np.arange(test_size, dtype=np.float32)[:, None],
          "labels": np.zeros(test_size, np.int32)}
  return base.ArrayDataset(info, train, test)


def test_validation_split_holds_out_a_fixed_tenth_of_training():
  full = _in_memory()
  split = full.validation_split(0.1)
  again = _in_memory().validation_split(0.1)
  assert (split.info.train_size, split.info.test_size) == (45, 5)
  held_out = [int(v) for b in split.test_batches(5) for v in b["inputs"][:, 0]]
  _assert_same_batches(list(again.test_batches(5)), list(split.test_batches(5)))
  trained = {int(v) for epoch in range(3) for b in
             split.train_batches(5, seed=0, epoch=epoch)
             for v in b["inputs"][:, 0]}
  # Held out: training rows only, never trained on; together all 50 rows.
  assert min(held_out) >= 0 and not set(held_out) & trained
  assert sorted(set(held_out) | trained) == list(range(50))
  # Not the rows subset() keeps first (seed 0), and not the test set.
  assert held_out != sorted(np.random.default_rng(0).permutation(50)[:5])
  for fraction in (0.0, 1.0, 0.001):
    with pytest.raises(ValueError, match="fraction must hold out between 1 "
                       "and 49 of the 50 training examples"):
      full.validation_split(fraction)


def test_the_config_evaluates_mnist1d_on_held_out_training_examples():
  from bll_jax import config as configs
  from bll_jax.training import build as experiment
  config = configs.get_config("mnist1d")
  test = experiment.load_dataset(config)
  config.dataset.eval_split = "validation"
  validation = experiment.load_dataset(config)
  assert validation.info.test_size == round(
      experiment.VALIDATION_FRACTION * test.info.train_size)
  assert (validation.info.train_size + validation.info.test_size
          == test.info.train_size)
  config.dataset.train_examples = 1000        # then a subset of the rest
  assert experiment.load_dataset(config).info.train_size == 1000
  config.dataset.eval_split = "train"
  with pytest.raises(ValueError, match="eval_split must be one of "
                     r"\['test', 'validation'\], got 'train'"):
    configs.check(config)


# ----------------------------------------------------------------- load()


def test_load_rejects_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match="name must be one of .*'mnist1d'"):
    data.load("mnist2d")
  with pytest.raises(FileNotFoundError) as error:
    data.load("mnist", data_dir="/x")
  assert str(error.value) == "data_dir '/x' does not exist"
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\]"):
    data.load("mnist1d", colour="red")
  with pytest.raises(ValueError, match=r"source must be one of \('auto', "
                     r"'generated'\)"):
    data.load("reverse", source="tfds")
  with pytest.raises(ValueError, match="length must be a positive integer"):
    data.load("reverse", length=0)


def test_importing_the_package_stays_light():
  code = ("import sys, bll_jax.data; "
          "heavy = [m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'tensorflow_datasets', 'mnist1d') "
          "or m == 'bll_jax.data.tfds']; "
          "print(heavy); sys.exit(1 if heavy else 0)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr


def test_tfds_without_tensorflow_says_what_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow", None)   # import fails
  with pytest.raises(ImportError, match=r'pip install "bll_jax\[data\]"'):
    data.load("cifar10")


# ------------------------------------------------------------------- tfds


@pytest.fixture
def mock_tfds():
  """TFDS with 24 generated examples per split (no download)."""
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    conftest.skip_unless_required("BLL_REQUIRE_TFDS",
                          f"tensorflow_datasets is not importable: {e}")
  with tfds.testing.mock_data(num_examples=24):
    yield tfds


def _tfds_raw(tfds, name, split="test"):
  """The mock split decoded here: float64 pixels in [0, 1] and labels."""
  ds = tfds.load(name, split=split, as_supervised=True, shuffle_files=False)
  images, labels = zip(*tfds.as_numpy(ds))
  return np.stack(images) / 255.0, np.array(labels)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_tfds_contract(mock_tfds, name, tmp_path):
  ds = data.load(name, data_dir=tmp_path, source="tfds")
  shape = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}[name]
  assert ds.info == base.DatasetInfo(name, "classification", 10, shape,
                                     "float32", 24, 24, {})
  full = _epoch(ds, 8, seed=1, epoch=0)
  assert len(full) == 3
  assert full[0]["inputs"].shape == (8,) + shape
  assert full[0]["inputs"].dtype == np.float32
  assert full[0]["labels"].dtype == np.int32
  _assert_same_batches(_epoch(ds, 8, seed=1, epoch=0), full)
  _assert_same_batches(_epoch(ds, 8, seed=1, epoch=0, start_step=2), full[2:])
  for other in (dict(seed=2, epoch=0), dict(seed=1, epoch=1)):
    inputs = _concat(_epoch(ds, 8, **other))["inputs"]
    assert not np.array_equal(inputs, _concat(full)["inputs"])
  slices = [_epoch(ds, 8, seed=1, epoch=0, process_index=p, process_count=2)
            for p in range(2)]
  for step, batch in enumerate(full):
    _assert_same_batches([_concat([s[step] for s in slices])], [batch])
  test_slices = [list(ds.test_batches(10, process_index=p, process_count=2))
                 for p in range(2)]
  test = list(ds.test_batches(10))
  assert len(test) == 3
  for step, batch in enumerate(test):
    _assert_same_batches([_concat([s[step] for s in test_slices])], [batch])
  # The test split in order, standardised as documented; padding weighs 0.
  got = _concat(test)
  np.testing.assert_array_equal(got["weights"], np.arange(30) < 24)
  images, labels = _tfds_raw(mock_tfds, name)
  mean, std = {"mnist": (0.1307, 0.3081),
               "cifar10": ((0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616))}[name]
  np.testing.assert_allclose(got["inputs"][:24], (images - mean) / std,
                             atol=1e-4)
  np.testing.assert_array_equal(got["labels"][:24], labels)
  np.testing.assert_array_equal(got["inputs"][24:], got["inputs"][:6])


def test_tfds_epoch_is_a_permutation_of_the_train_split(mock_tfds):
  ds = data.load("mnist", source="tfds")
  images, labels = _tfds_raw(mock_tfds, "mnist", "train")
  epoch = _concat(_epoch(ds, 8, seed=4, epoch=3))
  found = _nearest_rows(epoch["inputs"], (images - 0.1307) / 0.3081)
  assert sorted(found) == list(range(24))
  np.testing.assert_array_equal(epoch["labels"], labels[found])


def test_cifar10_augmentation_is_a_reflect_padded_crop_maybe_flipped(mock_tfds):
  plain = data.load("cifar10", source="tfds", augment=False)
  augmented = data.load("cifar10", source="tfds")
  originals = _concat(_epoch(plain, 8, seed=0, epoch=1))
  crops = _concat(_epoch(augmented, 8, seed=0, epoch=1))
  np.testing.assert_array_equal(originals["labels"], crops["labels"])
  assert not np.allclose(originals["inputs"], crops["inputs"])
  for original, crop in zip(originals["inputs"], crops["inputs"]):
    padded = np.pad(original, [(4, 4), (4, 4), (0, 0)], mode="reflect")
    assert any(np.allclose(view[dy:dy + 32, dx:dx + 32], crop, atol=1e-5)
               for view in (padded, padded[:, ::-1])
               for dy in range(9) for dx in range(9))


def test_imagenet_crops_to_image_size(mock_tfds):
  ds = data.load("imagenet2012", source="tfds", image_size=24)
  assert ds.info.input_shape == (24, 24, 3) and ds.info.num_classes == 1000
  train = _epoch(ds, 8, seed=0, epoch=0)
  _assert_same_batches(_epoch(ds, 8, seed=0, epoch=0, start_step=1), train[1:])
  test = list(ds.test_batches(16))
  assert [b["inputs"].shape for b in train] == [(8, 24, 24, 3)] * 3
  assert [b["inputs"].shape for b in test] == [(16, 24, 24, 3)] * 2
  assert all(np.isfinite(b["inputs"]).all() for b in train + test)
