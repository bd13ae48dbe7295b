"""Sorting with 16 times the updates, on a GPU: does `bll` catch up?

The `seq_sort_transformer` experiment stops after 128 steps, where `bp`
decodes about half the test sequences exactly and `bll` almost none. Here the
same network trains for the preset's own budget, 4 epochs of 65,536
sequences (2048 steps of 128, evaluated every 512), which would take about
20 minutes a run on this project's 2-core CPU. `bll-temperature-5` is `bll`
at the temperature chosen on validation sequences (`ablation_sort_validation`).
Run with

    GPU_BENCH=0 GPU_EXPERIMENTS=seq_sort_transformer_gpu bash experiments/gpu_rows.sh OUT_DIR
"""
EXPERIMENT = {
    "title": "Sort, 8-layer pre-LN Transformer (d 128), 4 blocks, 2048 steps, "
             "on a GPU",
    "preset": "seq_transformer",
    "overrides": {"dataset.name": "sort"},
    "methods": ("bp", "bll", "bll-temperature-5", "drtp", "local"),
    "metrics": ("test_accuracy", "test_exact_match"),
    "run_here": False,
    "needs": "gpu",
    "why_not": "2048 steps of an 8-layer Transformer, about 20 minutes a run "
               "on the 2-core CPU; `experiments.sweep` runs it where the JAX "
               "backend is a GPU",
}
