"""MNIST and Fashion-MNIST from IDX files on disk, offline.

A directory holds the four files of the original distribution, each either
raw or gzipped (`name` or `name.gz`):

  train-images-idx3-ubyte  train-labels-idx1-ubyte
  t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte

The IDX format: a big-endian magic number `0x00000803` (unsigned bytes, 3
dimensions) for images or `0x00000801` (1 dimension) for labels, one
big-endian uint32 per dimension, then the bytes. Every file is checked
against its header. Images become float32 in [0, 1], standardised with the
training set's scalar mean and standard deviation, shape `(rows, cols, 1)`.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

from bll_jax.data import base

NAMES = ("fashion_mnist", "mnist")
NUM_CLASSES = 10
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def has_files(directory: str) -> bool:
  """Whether `directory` holds all four IDX files (raw or gzipped)."""
  return all(_find(directory, file) for file in FILES.values())


def load(name: str, directory: str, **options) -> base.ArrayDataset:
  """The dataset `name` from the IDX files in `directory`.

  Args:
    name: "fashion_mnist" or "mnist" (only the dataset's name in `info`).
    directory: the folder holding the four IDX files.
    **options: none.

  Returns:
    The dataset, inputs float32 of shape `(rows, cols, 1)`.

  Raises:
    FileNotFoundError: a file is missing.
    ValueError: a file is truncated, corrupted or inconsistent.
  """
  if name not in NAMES:
    raise ValueError(f"name must be one of {NAMES} for IDX files, got {name!r}")
  base.check_options(name, options, {})
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"IDX directory {directory!r} does not exist")
  missing = [file for file in FILES.values() if not _find(directory, file)]
  if missing:
    raise FileNotFoundError(
        f"{directory!r} lacks the IDX file(s) {missing} (each raw or .gz); "
        f"expected all of {list(FILES.values())}")
  paths = {key: _find(directory, file) for key, file in FILES.items()}
  x, y = _split(paths["train_images"], paths["train_labels"])
  x_test, y_test = _split(paths["test_images"], paths["test_labels"])
  if x.shape[1:] != x_test.shape[1:]:
    raise ValueError(f"train and test images differ in shape: {x.shape[1:]} "
                     f"in {paths['train_images']!r}, {x_test.shape[1:]} in "
                     f"{paths['test_images']!r}")
  x = x.astype(np.float32) / 255.0
  x_test = x_test.astype(np.float32) / 255.0
  mean, std = x.mean(dtype=np.float64), x.std(dtype=np.float64)
  info = base.DatasetInfo(
      name=name, task="classification", num_classes=NUM_CLASSES,
      input_shape=x.shape[1:] + (1,), input_dtype="float32",
      train_size=len(y), test_size=len(y_test), metadata={})
  return base.ArrayDataset(
      info, base.classification_arrays(_standardise(x, mean, std), y),
      base.classification_arrays(_standardise(x_test, mean, std), y_test))


def read(path: str, magic: int) -> np.ndarray:
  """The uint8 array in the IDX file `path`, checked against its header.

  Args:
    path: the file; gzipped if its name ends in ".gz".
    magic: the expected magic number, `IMAGES_MAGIC` or `LABELS_MAGIC`.

  Returns:
    A uint8 array of the header's shape.
  """
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    try:
      data = f.read()
    except (EOFError, OSError, zlib.error) as e:   # a broken gzip stream
      raise ValueError(f"IDX file {path!r} is corrupted: {e}") from e
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"IDX file {path!r} is truncated: {len(data)} bytes, "
                     f"shorter than its {header}-byte header")
  found = struct.unpack(">I", data[:4])[0]
  if found != magic:
    raise ValueError(f"IDX file {path!r} has magic number {found:#010x}, "
                     f"expected {magic:#010x}")
  shape = struct.unpack(f">{ndim}I", data[4:header])
  size = math.prod(shape)
  if len(data) - header != size:
    what = "truncated" if len(data) - header < size else "too long"
    raise ValueError(f"IDX file {path!r} is {what}: its header {shape} "
                     f"promises {size} bytes of data, it holds "
                     f"{len(data) - header}")
  return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _split(images_path: str, labels_path: str):
  images = read(images_path, IMAGES_MAGIC)
  labels = read(labels_path, LABELS_MAGIC)
  if len(images) != len(labels):
    raise ValueError(f"{images_path!r} holds {len(images)} images but "
                     f"{labels_path!r} holds {len(labels)} labels")
  if labels.size and labels.max() >= NUM_CLASSES:
    raise ValueError(f"IDX file {labels_path!r} holds label {labels.max()}, "
                     f"outside [0, {NUM_CLASSES})")
  return images, labels


def _standardise(images: np.ndarray, mean: float, std: float) -> np.ndarray:
  """`[N, rows, cols]` in [0, 1] -> standardised float32 `[..., 1]`."""
  return ((images - mean) / std).astype(np.float32)[..., None]


def _find(directory: str, file: str) -> str | None:
  """The path of `file` or `file.gz` in `directory`, raw first; else None."""
  for candidate in (file, file + ".gz"):
    path = os.path.join(directory, candidate)
    if os.path.isfile(path):
      return path
  return None
