"""The authors' ResNet-50/ImageNet run (docs/theory.md), in this engine.

Their code: 8 GPUs x 128 = global batch 1024, SGD (momentum 0.9), the ffcv
"triangular" schedule peaking at lr 1.7, label smoothing 0.1, weight decay
1e-4, 32 epochs, progressive resolution 160 -> 192. Where the ramp of the
resolution starts and ends is not stated in docs/theory.md: here it grows
over epochs 23-27 (ours, in the spirit of ffcv's configs), and the peak
epoch of the schedule is ffcv's default, 2.
"""

from bll_jax.config.presets import imagenet_resnet50


def get_config():
  c = imagenet_resnet50.get_config()
  c.preset = "imagenet_resnet50_authors"
  c.recipe = "authors"
  c.feedback = "direct"
  c.batch_size = 1024
  c.lr = 1.7
  c.lr_schedule = "triangular"
  c.lr_peak_epoch = 2.0
  c.warmup_epochs = 0.0
  c.nesterov = False
  c.label_smoothing = 0.1
  c.weight_decay = 1e-4
  c.epochs = 32
  c.dataset.progressive = (160, 192, 23, 27)
  return c
