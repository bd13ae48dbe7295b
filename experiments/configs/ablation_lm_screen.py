"""What keeps the language model's depth in use: a 600-update screen, K = 4.

`shakespeare_char_blocks` found every block of a 4-block cut reaching the
same token accuracy, the output block no better than the first, and
greedy `local` classifiers 10% above backprop's validation loss. Two
explanations, each with the changes that would follow from it, screened
on the validation split with 600 of the preset's 2000 updates, one seed
(a screen: the rows that pass are run in full in `shakespeare_char_blocks`):

* the local target throws away what later positions need from a latent:
  score each position against more targets (`horizon`: the next 4 tokens;
  `history`: the token it has read, an InfoPro-like term; docs/theory.md
  section 6);
* a block must make the next token *linearly* decodable from its output, so
  it commits early: a deeper local head (`readout mlp`: LayerNorm, an MLP;
  `readout unit`: a fresh decoder layer, then LayerNorm and a dense layer,
  AugLocal's auxiliary network; `readout_depth` 2 and 3: two or three
  such layers);
* (an optimiser effect: the blocks above chase a moving input) a cosine
  schedule, for every method alike;
* the output block reads the stream with fewer layers than the hidden
  blocks' heads: cuts that give it two decoder layers;
* and cut probes: `local` with only the embedding (`cuts 1`) or the
  embedding and the first decoder layer (`cuts 2`) trained greedily, the
  rest end to end; the latter with the two-layer heads, and with one more
  greedy block (`cuts 2,4`), to tell a greedy cut from stacked ones;
* (stacking: each block relearns the prediction the blocks below made)
  each block's prediction a Bayesian update of the one below's
  (`accumulate_evidence`).

    python -m experiments.sweep ablation_lm_screen
"""

from experiments.configs import METHODS

_LOCAL = METHODS["local"]
_COSINE = {"lr_schedule": "cosine", "warmup_epochs": 0.05}
# local's settings written out (family, groups and feedback as `--method
# local` sets them for the corpus's 84 characters) with a deeper head.
_LOCAL_AS_BLL = {"family": "categorical", "group_size": 84,
                 "readout_features": 84, "feedback": "onehot"}
# Calibrated bll read through a decoder-layer head of 128 latent units.
CALIBRATED_UNIT = {**METHODS["bll-calibrated"], "readout": "unit",
                    "readout_features": 128}


def _calibrated_cuts(*cuts):
  """Calibrated bll with two-layer heads, cut at each of `cuts`."""
  return {f"bll-calibrated readout=unit depth=2 cuts={','.join(map(str, c))}":
          {**CALIBRATED_UNIT, "readout_depth": 2, "cuts": c} for c in cuts}


VARIANTS = {
    "bp": METHODS["bp"],
    "bll": METHODS["bll"],
    "local": _LOCAL,
    "bll horizon=4": {"horizon": 4},
    "local horizon=4": {**_LOCAL, "horizon": 4},
    "bll history=1": {"history": 1},
    "local history=1": {**_LOCAL, "history": 1},
    "bll readout=mlp": {"readout": "mlp", "readout_features": 128},
    "local readout=mlp": {**_LOCAL_AS_BLL, "readout": "mlp"},
    "bll readout=unit": {"readout": "unit", "readout_features": 128},
    "local readout=unit": {**_LOCAL_AS_BLL, "readout": "unit"},
    "bll-calibrated": METHODS["bll-calibrated"],
    "bll-calibrated readout=unit": CALIBRATED_UNIT,
    # Two or three decoder layers copied into each head (AugLocal's deeper
    # auxiliary networks): the block's output need only be decodable that
    # many layers on.
    "bll-calibrated readout=unit depth=2": {**CALIBRATED_UNIT,
                                            "readout_depth": 2},
    "local readout=unit depth=2": {**_LOCAL_AS_BLL, "readout": "unit",
                                   "readout_depth": 2},
    "bll-calibrated readout=unit depth=3": {**CALIBRATED_UNIT,
                                            "readout_depth": 3},
    # Where the cuts fall, with the two-layer heads: every block's own loss
    # rises from the second block to the output (1.949 to 1.979 nats on
    # this screen). The output block holds one decoder layer and a linear
    # readout, a shallower reader of the stream below than the hidden
    # blocks' two-layer heads; these cuts give it two decoder layers (and
    # take one from a hidden block, or the embedding's companion layer).
    **_calibrated_cuts((2, 4, 5), (2, 3, 5), (1, 3, 5)),
    "bp cosine": {**METHODS["bp"], **_COSINE},
    "bll cosine": _COSINE,
    "local cosine": {**_LOCAL, **_COSINE},
    "local cuts=1": {**_LOCAL, "cuts": (1,)},
    "local cuts=2": {**_LOCAL, "cuts": (2,)},
    # The same probe with the two-layer heads: does a block trained
    # greedily through a deeper head still lose what the layers above need?
    "local readout=unit depth=2 cuts=2": {**_LOCAL_AS_BLL, "readout": "unit",
                                          "readout_depth": 2, "cuts": (2,)},
    **_calibrated_cuts((2,), (2, 4)),
    # Stacking greedy blocks costs about 1.4% per block (the probes above).
    # Each block's prediction a Bayesian update of the one below's
    # (`accumulate_evidence`, docs/theory.md section 8): a block learns what
    # its latent adds to the posterior below, not the prediction afresh.
    "bll-calibrated readout=unit depth=2 evidence": {
        **CALIBRATED_UNIT, "readout_depth": 2, "accumulate_evidence": True},
    "local readout=unit depth=2 evidence": {
        **_LOCAL_AS_BLL, "readout": "unit", "readout_depth": 2,
        "accumulate_evidence": True},
    # It helped `local` and not calibrated bll. Between the two: local's
    # latent (one categorical of 84 states) with bll's learned, chained
    # feedback and calibrated temperatures, without and with the chain.
    **{f"bll-calibrated categorical readout=unit depth=2{suffix}": {
        **METHODS["bll-calibrated"], **_LOCAL_AS_BLL, "feedback": "chained",
        "readout": "unit", "readout_depth": 2, "accumulate_evidence": on}
       for suffix, on in (("", False), (" evidence", True))},
}

EXPERIMENT = {
    "title": "Screen: what keeps the language model's depth in use "
             "(Shakespeare, 6-layer Transformer, K = 4, 600 updates, "
             "validation)",
    "preset": "shakespeare_char",
    "overrides": {"dataset.eval_split": "validation", "steps": 600},
    "variants": VARIANTS,
    "seeds": (0,),
    # The blocks' mixture for the runs made since it was scored (the
    # notes quote it for the cut probes).
    "metrics": ("test_accuracy", "mixture_test_bits_per_token",
                "test_bits_per_token"),
}
