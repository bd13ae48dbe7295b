"""ImageNet (tensorflow-datasets), ResNet-50 cut at its stages into 4
blocks, SGD with warm-up and a cosine schedule."""

from bll_jax.config import schema


def get_config():
  c = schema.base_config()
  c.preset = "imagenet_resnet50"
  c.dataset.name = "imagenet2012"
  c.dataset.image_size = 224
  c.model.name = "resnet50"
  c.model.stem = "imagenet"
  c.cuts = (4, 8, 14)           # at the stage boundaries: 4 blocks
  c.optimizer = "sgd"
  c.batch_size = 1024
  c.lr = 0.1 * 1024 / 256       # linear scaling from 0.1 at batch 256
  c.nesterov = True
  c.weight_decay = 1e-4
  c.lr_schedule = "cosine"
  c.warmup_epochs = 5.0
  c.label_smoothing = 0.1
  c.epochs = 90
  c.eval_batch_size = 1000
  return c
