"""Feedback whose layers learn from their own block only (issue 19).

`chained_local` computes the same feedback tables as `chained`, but each
layer's gradient comes from its own block's loss alone (the message from the
layer above is a constant to it): the property that lets each pipeline stage
own its blocks' feedback layers with no all-reduce. Does it cost accuracy?
Both rows run here, on the same seeds.
"""

EXPERIMENT = {
    "title": "Ablation: feedback layers that learn locally, MNIST-1D CNN, "
             "4 blocks",
    "preset": "mnist1d",
    "variants": {
        "bll (chained)": {},
        "bll (chained_local)": {"feedback": "chained_local"},
    },
}
