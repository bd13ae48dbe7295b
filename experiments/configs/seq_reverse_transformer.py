"""Sequence reversal (16 symbols, length 16), 8-layer Transformer in 4 blocks."""
from experiments.configs import SEQUENCE

# The budget: 4096 sequences per epoch, 4 epochs, i.e. 128 steps of 128,
# with a test evaluation every 32 steps. At the preset's own budget (4
# epochs of 65536) every method has the whole test set right after its
# first epoch, which says nothing; 128 steps is where backprop has just
# solved the task, so the table asks whether the others have too.
BUDGET = {"dataset.train_size": 4096, "epochs": 4}

EXPERIMENT = {
    "title": "Reverse, 8-layer pre-LN Transformer (d 128), 4 blocks, 128 steps",
    "preset": "seq_transformer",
    "overrides": BUDGET,
    "methods": SEQUENCE,
    "metrics": ("test_accuracy", "test_exact_match"),
}
