"""Fashion-MNIST, ResNet-18 (CIFAR stem) cut at its stages into 4 blocks.

Sized for this 2-core CPU: first-stage width 16 (the standard network has
64; the stages double it), a fixed random 12,000 of the 60,000 training
images, 4 epochs, Adam 1e-3; tested on all 10,000 test images. On a GPU drop
the three size overrides.
"""

EXPERIMENT = {
    "title": "Fashion-MNIST, ResNet-18 (width 16), 4 blocks, 12k training "
             "images, 4 epochs",
    "preset": "fashion_mnist_resnet18",
    "overrides": {"model.width": 16, "dataset.train_examples": 12000,
                  "epochs": 4},
    # The main comparison, and the authors' recipe with its fixes (the
    # published form is in the MLP and CNN tables); 5 x 3 runs of ~4 min.
    # Then the other feedback modes (3 seeds) and families (seed 0) of `bll`.
    "methods": ("bp", "bll", "drtp", "local", "authors+fixes", "bll-direct",
                "bll-bootstrapped", "bll-bernoulli", "bll-categorical",
                "bll-learned-variance", "bll-calibrated"),
}
