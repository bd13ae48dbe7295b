"""Fashion-MNIST, ResNet-18 at full size on a GPU: width 64, all 60k images.

The `fashion_mnist_resnet18` experiment without its three size overrides
except the epochs: first-stage width 64 (the standard network), all 60,000
training images, 4 epochs, Adam 1e-3, batch 128; tested on all 10,000 test
images. That is about 80 times the compute of the width-16 experiment (16
times the multiply-adds per image, 5 times the images), hours a run on this
project's 2-core CPU, so it runs where `jax.default_backend()` is a GPU:

    bash experiments/gpu_rows.sh OUT_DIR     # this and the benchmark rows
"""
EXPERIMENT = {
    "title": "Fashion-MNIST, ResNet-18 (full width 64), 4 blocks, all 60k "
             "training images, 4 epochs, on a GPU",
    "preset": "fashion_mnist_resnet18",
    "overrides": {"epochs": 4},
    "methods": ("bp", "bll", "drtp", "local", "bll-bootstrapped",
                "bll-direct"),
    "run_here": False,
    "needs": "gpu",
    "why_not": "sized for a GPU (80 times the compute of the width-16 "
               "experiment); `experiments.sweep` runs it where the JAX "
               "backend is a GPU",
}
