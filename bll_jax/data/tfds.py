"""MNIST, Fashion-MNIST, CIFAR-10 and ImageNet through TensorFlow Datasets.

TensorFlow is imported here only, and only when one of these datasets is
loaded; it never sees a GPU. Images are read still encoded and decoded after
the epoch's order and this process's slice are fixed, so a process decodes
(and augments) only its own examples.

Determinism: the epoch's order is a `tf.data` shuffle seeded by
`epoch_seed = default_rng([seed, epoch]).integers(2**31 - 1)`, the same on
every process; augmentation is stateless, keyed by `(epoch_seed, example
index)`, so a run resumed at `start_step` sees the very same augmented
examples. With `shuffle_buffer >= train_size` the shuffle is a full
permutation; ImageNet uses a 10000-example buffer by default. TensorFlow mixes
its global seed into the shuffle: leave `tf.random.set_seed` alone (or set it
alike on every process and run).

Preprocessing: pixels / 255, then normalised with the training set's mean and
standard deviation (one scalar for the MNISTs, per channel otherwise).

* cifar10 train: reflect-pad by 4, random 32x32 crop, random left-right flip.
* imagenet2012 train: Inception-style random resized crop to `image_size` and
  flip; test (the "validation" split): resize the shorter side to
  `image_size / 0.875`, then a central `image_size` crop.
* mnist, fashion_mnist: no augmentation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bll_jax.data import base

NAMES = ("mnist", "fashion_mnist", "cifar10", "imagenet2012")


@dataclasses.dataclass(frozen=True)
class _Spec:
  channels: int
  mean: tuple[float, ...]       # of pixels in [0, 1]: one scalar or per channel
  std: tuple[float, ...]
  test_split: str
  shuffle_buffer: int           # the default
  augmentation: str | None      # "crop_flip", "inception" or None


_SPECS = {
    "mnist": _Spec(1, (0.1307,), (0.3081,), "test", 60_000, None),
    "fashion_mnist": _Spec(1, (0.2860,), (0.3530,), "test", 60_000, None),
    "cifar10": _Spec(3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                     "test", 50_000, "crop_flip"),
    "imagenet2012": _Spec(3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                          "validation", 10_000, "inception"),
}
CROP_FRACTION = 0.875   # ImageNet evaluation: central crop of the resized image


def load(name: str, *, data_dir: str | None = None,
         **options) -> TfdsDataset:
  """The tfds dataset `name`, prepared (downloaded) first if need be.

  Args:
    name: one of `NAMES`.
    data_dir: the tfds data directory (tfds's default when None).
    **options: `shuffle_buffer` (int); `augment` (bool, default True) for
      cifar10 and imagenet2012; `image_size` (default 224) for imagenet2012;
      `progressive` for imagenet2012: `(min_res, max_res, start_epoch,
      end_epoch)`, training crops of `min_res` until `start_epoch`, growing
      linearly to `max_res` at `end_epoch`, in multiples of 32 (ffcv's
      progressive resizing); evaluation stays at `image_size`.

  Returns:
    The dataset, inputs float32 images `(height, width, channels)`.
  """
  if name not in NAMES:
    raise ValueError(f"name must be one of {NAMES} for tfds, got {name!r}")
  spec = _SPECS[name]
  defaults = {"shuffle_buffer": spec.shuffle_buffer}
  if spec.augmentation:
    defaults["augment"] = True
  if name == "imagenet2012":
    defaults["image_size"] = 224
    defaults["progressive"] = None
  options = base.check_options(name, options, defaults)
  progressive = options.get("progressive")
  if progressive is not None:
    progressive = tuple(int(v) for v in progressive)
    if len(progressive) != 4 or not (0 < progressive[0] <= progressive[1]) or (
        not 0 <= progressive[2] <= progressive[3]):
      raise ValueError(
          "progressive must be (min_res, max_res, start_epoch, end_epoch) with "
          f"0 < min_res <= max_res and start_epoch <= end_epoch, got "
          f"{options.get('progressive')!r}")
  augment = options.get("augment", False)
  if not isinstance(augment, bool):
    raise ValueError(f"augment must be True or False, got {augment!r}")
  shuffle_buffer = base.positive_int("shuffle_buffer",
                                    options["shuffle_buffer"])
  image_size = options.get("image_size")
  if image_size is not None:
    image_size = base.positive_int("image_size", image_size)
  tf, tfds = _import_tensorflow()
  builder = tfds.builder(name, data_dir=data_dir)
  builder.download_and_prepare()
  return TfdsDataset(name, builder, tf, tfds, shuffle_buffer=shuffle_buffer,
                     augment=augment, image_size=image_size,
                     progressive=progressive)


def progressive_resolution(epoch: int, min_res: int, max_res: int,
                           start_epoch: int, end_epoch: int) -> int:
  """The training resolution of `epoch`: a linear ramp, in multiples of 32."""
  if end_epoch == start_epoch:
    res = min_res if epoch < start_epoch else max_res
  else:
    frac = min(max((epoch - start_epoch) / (end_epoch - start_epoch), 0.0), 1.0)
    res = min_res + frac * (max_res - min_res)
  return int(round(res / 32)) * 32


class TfdsDataset(base.Dataset):
  """A tfds image classification dataset, streamed through `tf.data`."""

  def __init__(self, name, builder, tf, tfds, *, shuffle_buffer: int,
               augment: bool, image_size: int | None,
               progressive: tuple[int, int, int, int] | None = None):
    self._spec = spec = _SPECS[name]
    self._builder, self._tf, self._tfds = builder, tf, tfds
    self._augment, self._image_size = augment, image_size
    self._progressive = progressive
    shape = tuple(builder.info.features["image"].shape)
    if name == "imagenet2012":
      shape = (image_size, image_size, spec.channels)
    self.info = base.DatasetInfo(
        name=name, task="classification",
        num_classes=builder.info.features["label"].num_classes,
        input_shape=shape, input_dtype="float32",
        train_size=self._split_size("train"),
        test_size=self._split_size(spec.test_split), metadata={})
    self._shuffle_buffer = min(shuffle_buffer, self.info.train_size)

  def _train_batches(self, batch_size, *, seed, epoch, start_step, shard):
    tf = self._tf
    epoch_seed = int(np.random.default_rng([seed, epoch]).integers(2**31 - 1))
    steps = self.info.train_size // batch_size
    ds = self._examples("train").shuffle(
        self._shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
    ds = ds.take(steps * batch_size).skip(start_step * batch_size)

    size = self.train_resolution(epoch)
    shape = ((size, size, self._spec.channels) if size
             else self.info.input_shape)

    def prepare(position, example):
      del position
      index, (image, label) = example
      key = tf.stack([tf.constant(epoch_seed, tf.int64), index])
      return self._fields(self._train_image(image, key, size), label, 1.0,
                          shape)

    return self._batches(_keep_slices(ds, shard), prepare, shard)

  def _test_batches(self, batch_size, *, shard):
    n = self.info.test_size
    ds = self._examples(self._spec.test_split).repeat()
    ds = ds.take(-(-n // batch_size) * batch_size)   # padded: row i is i % n

    def prepare(position, example):
      _, (image, label) = example
      weight = self._tf.cast(position < n, self._tf.float32)
      return self._fields(self._test_image(image), label, weight)

    return self._batches(_keep_slices(ds, shard), prepare, shard)

  # ---------------------------------------------------------------- plumbing

  def _examples(self, split: str):
    """`(index in split, (encoded image, label))`, in the split's order."""
    ds = self._builder.as_dataset(
        split=split, as_supervised=True, shuffle_files=False,
        decoders={"image": self._tfds.decode.SkipDecoding()})
    options = self._tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).enumerate()

  def _batches(self, ds, prepare, shard):
    tf = self._tf
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(shard.size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return iter(self._tfds.as_numpy(ds))

  def train_resolution(self, epoch: int) -> int | None:
    """The training crop size of `epoch` (imagenet2012), else None."""
    if self._spec.augmentation != "inception":
      return None
    if self._progressive is None:
      return self._image_size
    return progressive_resolution(epoch, *self._progressive)

  def _fields(self, image, label, weight, shape=None):
    tf = self._tf
    image = tf.ensure_shape(image, shape or self.info.input_shape)
    return {"inputs": image, "labels": tf.cast(label, tf.int32),
            "weights": tf.cast(weight, tf.float32)}

  def _split_size(self, split: str) -> int:
    try:
      size = self._builder.info.splits[split].num_examples
    except KeyError:   # no split metadata, as under tfds.testing.mock_data
      size = 0
    if not size:
      size = int(self._examples(split).cardinality())
    if size <= 0:
      raise ValueError(f"cannot tell the size of split {split!r} of "
                       f"{self._builder.name!r} (got {size})")
    return size

  # ----------------------------------------------------------- preprocessing

  def _normalise(self, image):
    image = self._tf.cast(image, self._tf.float32) / 255.0
    return (image - self._spec.mean) / self._spec.std

  def _train_image(self, encoded, key, size=None):
    tf, augmentation = self._tf, self._spec.augmentation
    if not (self._augment and augmentation):
      return self._test_image(encoded, size)
    crop_key, flip_key = tf.unstack(tf.random.split(key, 2))
    if augmentation == "crop_flip":
      image = self._decode(encoded)
      image = tf.pad(image, [[4, 4], [4, 4], [0, 0]], mode="REFLECT")
      image = tf.image.stateless_random_crop(image, self.info.input_shape,
                                             seed=crop_key)
    else:
      image = self._inception_crop(encoded, crop_key, size)
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_key)
    return self._normalise(image)

  def _test_image(self, encoded, size=None):
    if self._spec.augmentation != "inception":
      return self._normalise(self._decode(encoded))
    tf, size = self._tf, size or self._image_size
    image = tf.io.decode_jpeg(encoded, channels=3)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = round(size / CROP_FRACTION) / tf.reduce_min(hw)
    new_hw = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), size)
    image = tf.image.resize(image, new_hw, antialias=True)
    top, left = tf.unstack((new_hw - size) // 2)
    image = tf.image.crop_to_bounding_box(image, top, left, size, size)
    return self._normalise(image)

  def _inception_crop(self, encoded, key, size=None):
    """A random crop of 8%-100% of the area, aspect 3/4-4/3, resized."""
    tf, size = self._tf, size or self._image_size
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.io.extract_jpeg_shape(encoded),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=key,
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    window = tf.concat([begin[:2], crop[:2]], axis=0)
    image = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
    return tf.image.resize(image, (size, size))

  def _decode(self, encoded):
    return self._tf.io.decode_image(encoded, channels=self._spec.channels,
                                    expand_animations=False)


def _keep_slices(ds, shard: base.Shard):
  """`(position, element)` for this process's slice of every global batch."""
  ds = ds.enumerate()
  if shard.count == 1:
    return ds
  return ds.filter(
      lambda position, _: position // shard.size % shard.count == shard.index)


def _import_tensorflow():
  """Imports TensorFlow (hiding every GPU from it) and TensorFlow Datasets."""
  try:
    import tensorflow as tf
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise ImportError(
        "the datasets mnist, fashion_mnist (from tfds), cifar10 and "
        "imagenet2012 need TensorFlow and TensorFlow Datasets: "
        'pip install "bll_jax[data]"') from e
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:   # TF was initialised before: too late to hide GPUs
    pass
  return tf, tfds
