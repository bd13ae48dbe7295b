"""How the language model's validation loss moves as the cuts multiply.

The `shakespeare_char` preset (6-layer pre-LN Transformer, 128 wide,
context 64, 2000 updates of 32 windows) cut into K = 2, 4 and 8 blocks
(8 = every unit its own block: the deepest cut this network allows; 7 =
every decoder layer its own block, the embedding with the first),
evaluated on the validation split (settings are chosen on it, never on the
test split). Backprop does not depend on the cut: one run is its band.
"""

from experiments.configs import METHODS
from experiments.configs import ablation_lm_screen
from experiments.configs import blocks_sweep
from experiments.configs import by_blocks

VARIANTS = blocks_sweep(("bll", "local", "bll-calibrated", "drtp"), (2, 4, 8))

# What might hold the loss as K grows (chosen on validation): a softer
# local loss (temperature), the decorrelation the MLP's depth ablation
# found to help, a linear readout, at K = 4.
for _label, _overrides in {
    "bll T=3": {"temperature": 3.0},
    "bll T=10": {"temperature": 10.0},
    "bll T=3 decorrelation=1": {"temperature": 3.0, "decorrelation": 1.0},
    # The latent read through a linear map of the stream (128 units), so
    # the local loss shapes a projection, not the whole residual stream.
    "bll readout=linear": {"readout": "linear", "readout_features": 128},
}.items():
  VARIANTS[f"{_label} K=4"] = {**_overrides, "blocks": 4}
# The temperature again at the deeper cut.
VARIANTS["bll T=3 K=8"] = {"temperature": 3.0, "blocks": 8}
# K = 7: every decoder layer its own block, the embedding with the first
# (the even cut gives the first block the extra unit), so no block is an
# embedding alone.
VARIANTS["bll K=7"] = {**METHODS["bll"], "blocks": 7}

# What the screen (`ablation_lm_screen`, 600 updates, validation) passed:
# a deeper local head, a fresh decoder layer then LayerNorm and a dense
# layer (AugLocal's auxiliary network), for greedy classifiers and for bll
# with calibrated temperatures (the screen's settings, named there).
CALIBRATED_UNIT = ablation_lm_screen.CALIBRATED_UNIT
for _k in (2, 4, 8):
  VARIANTS[f"local readout=unit K={_k}"] = {**METHODS["local"],
                                            "readout": "unit", "blocks": _k}
  VARIANTS[f"bll-calibrated readout=unit K={_k}"] = {**CALIBRATED_UNIT,
                                                     "blocks": _k}

# Two or three decoder layers copied into each head (`readout_depth`; the
# screen: 2.855 and 2.841 bits against 2.870 with one).
for _depth in (2, 3):
  VARIANTS[f"bll-calibrated readout=unit depth={_depth} K=4"] = {
      **CALIBRATED_UNIT, "readout_depth": _depth, "blocks": 4}
# Greedy classifiers given the same two-layer heads (the screen: 2.838
# bits against calibrated bll's 2.855): the comparison at equal heads.
VARIANTS["local readout=unit depth=2 K=4"] = {
    **METHODS["local"], "readout": "unit", "readout_depth": 2, "blocks": 4}
# Each block's prediction a Bayesian update of the one below's
# (`accumulate_evidence`, docs/theory.md section 8), with the same heads.
# The screen (ablation_lm_screen) passed it for greedy classifiers (output
# 2.803 bits against 2.838) and not for calibrated bll (2.855, unchanged).
VARIANTS["local readout=unit depth=2 evidence K=4"] = {
    **METHODS["local"], "readout": "unit", "readout_depth": 2, "blocks": 4,
    "accumulate_evidence": True}
# And where stacking costs most: every unit its own block, one-layer heads
# (against `local readout=unit K=8`, output 1.699).
VARIANTS["local readout=unit evidence K=8"] = {
    **METHODS["local"], "readout": "unit", "blocks": 8,
    "accumulate_evidence": True}

# Does the fall from the second block to the output close with training?
# (At 600 updates the first block predicts best, at 2000 the second.) The
# two-layer-head row and backprop, both given twice the updates (4 epochs
# of 1000; the same tokens each; no " K=" in the labels: they are not
# points of the K plot).
VARIANTS["bp 4000 updates"] = {**METHODS["bp"], "epochs": 4}
VARIANTS["bll-calibrated readout=unit depth=2 blocks=4 4000 updates"] = {
    **CALIBRATED_UNIT, "readout_depth": 2, "blocks": 4, "epochs": 4}

# What the block-local runs reach, in backprop's terms: the same network,
# trained end to end, with only its first one or two decoder layers.
for _layers in (1, 2):
  VARIANTS[f"bp {_layers} layer{'s' if _layers > 1 else ''}"] = {
      **METHODS["bp"], "model.num_layers": _layers, "blocks": 1}

EXPERIMENT = {
    "title": "Shakespeare, character LM: validation loss against the number "
             "of blocks K (6-layer Transformer, 2000 updates)",
    "preset": "shakespeare_char",
    "overrides": {"dataset.eval_split": "validation"},
    "variants": VARIANTS,
    "seeds": (0,),
    # The blocks' mixture (evaluation only, docs/theory.md section 8) for
    # the runs made since it was scored; the plot shows the last metric.
    "metrics": ("test_accuracy", "mixture_test_bits_per_token",
                "test_bits_per_token"),
    "by_blocks": by_blocks(VARIANTS),
}
