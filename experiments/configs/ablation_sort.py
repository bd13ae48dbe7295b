"""What holds `bll` back on sorting (8-layer Transformer, 4 blocks).

The sort table's `bll` row is the reference: the default `bll` (Gaussian
latents, chained feedback trained discriminatively, temperature 1), same
budget (128 steps) and seed. Each row here changes the knobs that moved
the MLP's depth ablation: the feedback loss, the temperature, decorrelation.
The families and direct feedback are rows of the sort table itself.
"""
from experiments.configs.seq_reverse_transformer import BUDGET

EXPERIMENT = {
    "title": "Ablation: sorting, 8-layer Transformer, 4 blocks, 128 steps",
    "preset": "seq_transformer",
    "flags": ["--dataset.name", "sort", *BUDGET],
    "metrics": ("test_accuracy", "test_exact_match"),
    "seeds": (0, 1, 2),
    "variants": {
        "feedback chained, both": ["--feedback-loss", "both"],
        "temperature 2": ["--temperature", "2"],
        "temperature 3": ["--temperature", "3"],
        "temperature 5": ["--temperature", "5"],
        "temperature 10": ["--temperature", "10"],
        "decorrelation 1": ["--decorrelation", "1"],
        "temperature 3, decorrelation 1": ["--temperature", "3",
                                           "--decorrelation", "1"],
    },
    # What the runs show; rerun make_table after new runs and check that
    # this still holds.
    "notes": """
**Reading it** (seed 0; the default `bll` of the sort table has 0.7054
token accuracy and 0.039 exact match at this seed). Only the temperature
matters here: temperature 3 gives 0.8442 and 0.265 (7 times the default's
exact match, ahead of `local`'s 0.191), and the per-block accuracies fall
much less with depth (0.934, 0.922, 0.889, 0.920 against 0.875, 0.798,
0.735, 0.829). Decorrelation 1 and the `both` feedback loss (0.031 and
0.030) stay inside the default's range over seeds (0.013 to 0.057), and
decorrelation added to temperature 3 costs two fifths of its gain (0.172;
per block 0.922, 0.907, 0.871, 0.898). Temperature 3 divides every block's class scores by 3, a softer
`q(y | alpha_k)`, as in the MLP's depth ablation; why that helps the
deeper blocks has not been isolated. Whether 3 is the best value, and
whether the gain holds over seeds, has not been run.
""",
}
