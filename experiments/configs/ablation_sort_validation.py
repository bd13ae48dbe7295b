"""The sorting temperature chosen on held-out validation sequences.

`ablation_sort` compared temperatures on the test sequences, which makes the
best one's margin optimistic. These runs train exactly as those do (same
overrides, seeds and training batches: the split changes only what is evaluated)
and are evaluated on 1000 validation sequences of their own stream
(`--dataset.eval-split validation`), so the temperature can be chosen here
and its test accuracy read off `ablation_sort` without the test set having
chosen it. The accuracy columns below are validation accuracies.
"""
from experiments.configs.seq_reverse_transformer import BUDGET

TEMPERATURES = (1, 2, 3, 5, 10)

EXPERIMENT = {
    "title": "Ablation: sorting temperature chosen on validation sequences, "
             "8-layer Transformer, 4 blocks, 128 steps",
    "preset": "seq_transformer",
    "overrides": {"dataset.name": "sort", **BUDGET,
                  "dataset.eval_split": "validation"},
    "metrics": ("test_accuracy", "test_exact_match"),
    "seeds": (0, 1, 2),
    "variants": {
        **{f"temperature {t}": {"temperature": float(t)}
           for t in TEMPERATURES},
        # Per-block temperatures from the scores' spread at init.
        **{f"calibrated, temperature {t}": {
            "temperature_calibration": "init", "temperature": float(t)}
           for t in (0.5, 1, 2)}},
}
