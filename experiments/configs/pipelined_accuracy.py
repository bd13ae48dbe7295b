"""Accuracy under the pipelined schedule (issue 19): MNIST-1D CNN.

The main tables train every block in step (`sync`, one device). Here the
same runs are cut into 2 pipeline stages of 2 blocks (`mesh block=2`,
`schedule pipelined`): each stage works on a different micro-batch in the
same tick, the blocks of stage 1 see activations of parameters one tick
old, and the feedback is updated every tick (docs/parallel.md). The math of
the schedule does not depend on where the stages run (the runners equal the
one-device reference, tested), so 2 simulated CPU devices in one process
give the accuracy of 2 processes. The `chained_local` rows own the
feedback on the stages (no all-reduce, `bll_jax.parallel.owned`): on 2
stages nothing is stale, on 4 the layers two stages up are read a tick
late (docs/parallel.md); the `ablation_feedback_locality` rows are their
sync references.

    JAX_NUM_CPU_DEVICES=4 python -m experiments.sweep pipelined_accuracy
"""

EXPERIMENT = {
    "title": "Pipelined against sync: MNIST-1D CNN, 4 blocks",
    "preset": "mnist1d",
    "variants": {
        "bll sync (1 device)": {"mesh": "data=1,block=1"},
        "bll pipelined (2 stages)": {"mesh": "data=1,block=2",
                                     "schedule": "pipelined"},
        "bll chained_local pipelined (2 stages, feedback owned)": {
            "mesh": "data=1,block=2", "schedule": "pipelined",
            "feedback": "chained_local"},
        "bll chained_local pipelined (4 stages, feedback owned)": {
            "mesh": "data=1,block=4", "schedule": "pipelined",
            "feedback": "chained_local"},
    },
}
