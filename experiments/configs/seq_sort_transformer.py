"""Sorting (16 symbols, length 16), 8-layer Transformer in 4 blocks."""
from experiments.configs import SEQUENCE
from experiments.configs.seq_reverse_transformer import BUDGET

EXPERIMENT = {
    "title": "Sort, 8-layer pre-LN Transformer (d 128), 4 blocks, 128 steps",
    "preset": "seq_transformer",
    "flags": ["--dataset.name", "sort", *BUDGET],
    "methods": SEQUENCE,
    "metrics": ("test_accuracy", "test_exact_match"),
    # What the runs show; rerun make_table after new runs and check that
    # this still holds.
    "notes": """
**Reading it** (3 seeds for every row). Sorting separates the methods where
reversal could not: after 128 steps `bp` decodes 0.49 of the test sequences
exactly (0.35 to 0.61 over seeds), `local` 0.16, `bll` 0.036 and `drtp`
0.003. The default `bll` is ahead of `drtp` and far behind `local` and
`bp`. Its per-block accuracies (per token, teacher-forced) show the depth
degradation of THEORY.md: 0.866 for block 1, then 0.791 and 0.726, and
0.818 at the output, so the first block alone predicts the next token
better than the whole network; `local` falls much less (0.918 to 0.892).
The history shows why: averaged over the first 32 steps (the first record)
the local losses of blocks 1 to 3 are 2.0, 5.1 and 10.7 nats, against
log 18 = 2.89 for a uniform guess over the 18 classes, so the deeper blocks
start out confidently wrong (`experiments/depth_probe.py` measures why). Direct
feedback is worse everywhere (10.7 nats at block 3 again). The Bernoulli
and Categorical families start near the uniform loss and learn a better
first block (0.94, 0.95), then fall further at the output (0.70, 0.76;
exact match 0.002 and 0.013): their depth loss is not this one. What lifts
the Gaussian default is the temperature, which divides the scores: in the
sorting ablation, temperature 5 gives 0.342 +- 0.028 exact match over 3
seeds (block 1 to output 0.942, 0.940, 0.922, 0.934), ahead of `local` by
18 points and 15 points behind `bp`; chosen on held-out validation
sequences (`ablation_sort_validation`) the temperature is the same, 5.
Per-block temperatures calibrated at init (`bll-calibrated`, no constant
tuned; 2.7-4.5, 6.3-7.2 and 11.1-15.2 for blocks 1-3) give 0.291 +- 0.027,
with the per-block accuracies flat too (0.942, 0.937, 0.930, 0.924). With
16 times the updates, on a GPU (`seq_sort_transformer_gpu`), every method
but `drtp` decodes more than 0.97 of the test sequences and the gap is gone:
this table measures how fast the methods learn, not where they end.
""",
}
