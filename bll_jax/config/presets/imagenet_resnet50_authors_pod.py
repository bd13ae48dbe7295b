"""`imagenet_resnet50_authors` on a TPU pod slice (v4-32: 16 chips).

The global batch stays 1024, so the learning rate stays 1.7.
`--mesh data=4,block=4` puts one block per column of 4 chips: every block
sees the whole batch, split over its column, so each chip holds
1024 / 4 = 256 examples of its block, and each block's gradients are
averaged over its 4 data replicas. For another global batch B the rule is
linear: `lr = 1.7 * B / 1024`, with the peak epoch unchanged (e.g.
B = 4096: `--batch-size 4096 --lr 6.8`, `--mesh data=16,block=4` on a
v4-128). Launch it with `--distributed true` (docs/parallel.md).
"""

from bll_jax.config.presets import imagenet_resnet50_authors


def get_config():
  c = imagenet_resnet50_authors.get_config()
  c.preset = "imagenet_resnet50_authors_pod"
  c.mesh = "data=4,block=4"
  c.distributed = True
  return c
