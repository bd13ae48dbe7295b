"""The language model on the test split, the exit chosen on validation.

`shakespeare_char_blocks` chose every setting on the validation split: the
two-layer decoder heads for calibrated `bll` at K = 4, the one-layer head
at K = 2, and, for each run label, the block to predict with (the block
with the lowest mean validation loss, `experiments/lib/exits.py`). Those
choices are read here on the test split, which no setting has seen: the
same labels, the same preset and budget (2000 updates of 32 windows of 64
characters), 3 seeds each, every block's own loss and the blocks' mixture
scored. The exit table under this experiment's table quotes, for each
label, the block chosen on validation and its loss on both splits.

    python -m experiments.sweep shakespeare_char_test --seeds 0,1,2
"""

from experiments.configs import shakespeare_char_blocks

_BLOCKS = shakespeare_char_blocks.VARIANTS
LABELS = ("bp", "bll-calibrated readout=unit depth=2 K=4",
          "bll-calibrated readout=unit K=2")

EXPERIMENT = {
    "title": "Shakespeare, character LM on the test split: backprop and "
             "calibrated bll at K = 2 and 4, with the exit chosen on "
             "validation (6-layer Transformer, 2000 updates)",
    "preset": "shakespeare_char",
    "overrides": {"dataset.eval_split": "test"},
    "variants": {label: _BLOCKS[label] for label in LABELS},
    "seeds": (0, 1, 2),
    "metrics": ("test_accuracy", "mixture_test_bits_per_token",
                "test_bits_per_token"),
    # The block to predict with, chosen by mean validation loss.
    "exits_from": "shakespeare_char_blocks",
    "exit_metric": "loss",
}
