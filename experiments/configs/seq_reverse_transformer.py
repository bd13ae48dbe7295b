"""Sequence reversal (16 symbols, length 16), 8-layer Transformer in 4 blocks."""
from experiments.configs import SEQUENCE

EXPERIMENT = {
    "title": "Reverse, 8-layer pre-LN Transformer (d 128), 4 blocks",
    "preset": "seq_transformer",
    "methods": SEQUENCE,
    "metrics": ("test_accuracy", "test_exact_match"),
    "notes": """
**Reading it.** Both runs already had every test sequence exactly right at
the first evaluation (after epoch 1 of 4, step 512; `history` in the JSON
files), so at this length (16) and alphabet (16 symbols) the task cannot
separate the methods: meeting the 2-point target here says little. A longer
sequence, or a budget of a fraction of an epoch, would. The other methods
and seeds have not run on this CPU (about 20 minutes per run).
""",
}
