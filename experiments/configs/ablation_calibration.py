"""Per-block temperatures calibrated at init, chosen on held-out examples.

`--temperature-calibration init` sets each hidden block's temperature to
`T` times the spread of its class scores at initialisation
(`bll_jax.calibration`), which removes the blocks' different scales but
leaves one dimensionless `T`. These runs choose it on a tenth of the
training examples held out (`--dataset.eval-split validation`; the model
trains on the other nine tenths), so the accuracy columns are validation
accuracies; the test accuracy of the choice is the experiment's own table
(`mnist1d_cnn`, `bll-calibrated` rows, or the runs named in the notes).
"""

VARIANTS = {
    "temperature 1": {},
    **{f"calibrated, temperature {t}": {"temperature_calibration": "init",
                                        "temperature": float(t)}
       for t in (0.25, 0.5, 1)},
}

EXPERIMENT = {
    "title": "Ablation: per-block temperatures calibrated at init, chosen on "
             "held-out training examples, MNIST-1D CNN, 4 blocks",
    "preset": "mnist1d",
    "overrides": {"dataset.eval_split": "validation"},
    "variants": VARIANTS,
}
