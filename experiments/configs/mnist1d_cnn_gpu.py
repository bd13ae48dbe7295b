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
    "why_not": "the CPU rows are `mnist1d_cnn`; this is the same experiment "
               "where the JAX backend is a GPU",
}
