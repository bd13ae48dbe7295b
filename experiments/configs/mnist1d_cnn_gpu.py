"""MNIST-1D CNN on a GPU: the `mnist1d_cnn` experiment, unchanged, on a GPU.

Same preset, budget and seeds as the CPU rows, the main comparison only. The
two tables side by side show what the backend changes: the accuracies
(floating-point order differs, so runs are not bit-identical) and the time a
run takes. Run with

    GPU_BENCH=0 GPU_EXPERIMENTS=mnist1d_cnn_gpu bash experiments/gpu_rows.sh OUT_DIR
"""
EXPERIMENT = {
    "title": "MNIST-1D, CNN (3 conv units + dense head), 4 blocks, on a GPU",
    "preset": "mnist1d",
    "methods": ("bp", "bll", "drtp", "local"),
    "run_here": False,
    "needs": "gpu",
    "notes": """
**Reading it** (one NVIDIA H200, 2026-11-30, 3 seeds). The GPU reproduces
the CPU table within a standard deviation over seeds for every method:
`bp` 0.9523 against 0.9527 on the CPU, `bll` 0.9470 against 0.9480, `drtp`
0.8887 against 0.8920, `local` 0.9167 against 0.9150; the runs are not
bit-identical (the two backends sum in different orders). The 2-point
target holds on the GPU too (0.53 points), and `bll` is ahead of `drtp`
and `local`. A run trains in 2-3 s here against 5-7 s on the 2-core CPU: a
network this small (4000 signals of length 40) leaves the GPU waiting on
the training loop's host work per step (about 1 ms here, from
`experiments/loop_overhead.py`).
""",
    "why_not": "the CPU rows are `mnist1d_cnn`; this is the same experiment "
               "where the JAX backend is a GPU",
}
