"""Accuracy under the pipelined schedule: the reverse Transformer (4 blocks).

The budget of `seq_reverse_transformer` (128 steps): the sync row is its
`bll`, bit for bit.

    JAX_NUM_CPU_DEVICES=4 python -m experiments.sweep pipelined_accuracy_reverse
"""

from experiments.configs import pipelined_accuracy
from experiments.configs import seq_reverse_transformer

EXPERIMENT = {
    **pipelined_accuracy.EXPERIMENT,
    "title": "Pipelined against sync: reverse, 8-layer pre-LN Transformer "
             "(d 128), 4 blocks, 128 steps",
    "preset": "seq_transformer",
    "overrides": seq_reverse_transformer.BUDGET,
    "metrics": ("test_accuracy", "test_exact_match"),
}
