"""Input pipelines: deterministic, resumable, sharded numpy batches.

`load(name)` returns a :class:`Dataset` (see :mod:`bll_jax.data.base` for the
contract). Where each dataset comes from (`source`):

=================  ============================================================
dataset            sources ("auto" picks the first that applies)
=================  ============================================================
mnist1d            "generated": the `mnist1d` package, offline (the default)
reverse/sort/copy  "generated": synthetic sequence tasks, offline
text               "files": UTF-8 text in `data_dir` (a file or a folder), by
                   default Shakespeare's plays (:mod:`bll_jax.data.text`)
fashion_mnist      "idx": IDX files in `data_dir`, else in the Debian package's
                   directory `/usr/share/datasets/fashion-mnist`; "tfds"
mnist              "idx": IDX files in `data_dir`; "tfds"
cifar10            "tfds"
imagenet2012       "tfds"
=================  ============================================================

With `source="auto"`, a `data_dir` without IDX files is taken for a tfds data
directory if it holds a folder of the dataset's name (one tfds prepared);
otherwise the files are missing, and `load` says so. Importing this package
is cheap: TensorFlow is imported only when a tfds dataset is loaded, and
MNIST-1D is generated on first use.
"""

from __future__ import annotations

import os

from bll_jax.data import idx
from bll_jax.data import mnist1d
from bll_jax.data import sequences
from bll_jax.data import text
from bll_jax.data.base import Batch
from bll_jax.data.base import Dataset
from bll_jax.data.base import DatasetInfo

DATASETS = ("mnist1d", "fashion_mnist", "mnist", "cifar10", "imagenet2012",
            "reverse", "sort", "copy", "text")
SOURCES = ("auto", "generated", "idx", "tfds", "files")
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

GENERATED = ("mnist1d", "reverse", "sort", "copy")
_IDX = ("fashion_mnist", "mnist")

__all__ = ["DATASETS", "GENERATED", "SOURCES", "Batch", "Dataset",
           "DatasetInfo", "load"]


def load(name: str, *, data_dir: str | os.PathLike | None = None,
         source: str = "auto", **options) -> Dataset:
  """The dataset `name`, ready to hand out batches.

  Args:
    name: one of `DATASETS`.
    data_dir: a folder holding the IDX files (fashion_mnist, mnist) or the tfds
      data directory; text: a text file or a folder; unused by the generated
      datasets.
    source: "auto", or one of the sources `name` allows (table above).
    **options: dataset options, e.g. `length=8` for the sequence tasks or
      `image_size=160` for imagenet2012; see each source module.

  Returns:
    The dataset.

  Raises:
    ValueError: an unknown name, source or option.
    FileNotFoundError: `data_dir` does not exist, or IDX files are missing.
    ImportError: a tfds dataset without TensorFlow installed.
  """
  if name not in DATASETS:
    raise ValueError(f"name must be one of {DATASETS}, got {name!r}")
  allowed = _sources(name)
  if source not in ("auto",) + allowed:
    raise ValueError(f"source must be one of {('auto',) + allowed} for "
                     f"{name!r}, got {source!r}")
  if data_dir is not None:
    data_dir = os.fspath(data_dir)
    if not (os.path.isdir(data_dir)
            or (name == "text" and os.path.isfile(data_dir))):
      raise FileNotFoundError(f"data_dir {data_dir!r} does not exist")
  if source == "auto":
    source = _auto_source(name, data_dir)
  if source == "files":
    return text.load(data_dir=data_dir, **options)
  if source == "generated":
    if name == "mnist1d":
      return mnist1d.load(**options)
    return sequences.load(name, **options)
  if source == "idx":
    directory = data_dir
    if directory is None and name == "fashion_mnist":
      directory = DEBIAN_FASHION_MNIST
    if directory is None:
      raise ValueError(f"source 'idx' for {name!r} needs data_dir, the folder "
                       f"holding the IDX files")
    return idx.load(name, directory, **options)
  # Imported on use only: it is the one module that imports TensorFlow.
  from bll_jax.data import tfds
  return tfds.load(name, data_dir=data_dir, **options)


def _sources(name: str) -> tuple[str, ...]:
  if name in GENERATED:
    return ("generated",)
  if name in _IDX:
    return ("idx", "tfds")
  if name == "text":
    return ("files",)
  return ("tfds",)


def _auto_source(name: str, data_dir: str | None) -> str:
  """The source "auto" stands for (see the module docstring)."""
  if name in GENERATED:
    return "generated"
  if name == "text":
    return "files"
  if name in _IDX:
    if data_dir is not None:
      if idx.has_files(data_dir):
        return "idx"
      if os.path.isdir(os.path.join(data_dir, name)):
        return "tfds"           # a tfds data directory that holds `name`
      raise FileNotFoundError(
          f"data_dir {data_dir!r} holds neither the IDX files of {name} "
          f"({', '.join(idx.FILES.values())}, each raw or .gz) nor a tfds "
          f"folder {name}/: put the files there, or pass source 'tfds' "
          "(--dataset.source tfds) to download and prepare it there")
    if name == "fashion_mnist" and idx.has_files(DEBIAN_FASHION_MNIST):
      return "idx"
  return "tfds"
