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
    "flags": ["--dataset.name", "sort"],
    "methods": ("bp", "bll", "bll-temperature-5", "drtp", "local"),
    "metrics": ("test_accuracy", "test_exact_match"),
    "run_here": False,
    "needs": "gpu",
    "notes": """
**Reading it** (one NVIDIA H200, 2026-11-30, 2 seeds: the device time ran
out before seed 2). With 16 times the updates of the CPU table the task is
solved by every method but `drtp`: exact match 0.993 for `bll` (both
seeds), 0.993 at temperature 5, 0.998 for `local` and 0.971 +- 0.036 for
`bp`, whose seed 1 fell from 0.986 to 0.945 at its last evaluation. So the
15-to-45-point gaps of the 128-step table measure how fast each method
learns, not where it ends. The speed shows at the first evaluation (step
512): `bll` 0.953 and 0.940, at temperature 5 0.972 and 0.965, `local`
0.971 and 0.983, `bp` 0.977 and 0.701. Temperature 5 still starts faster
and no longer ends ahead. The per-block accuracies do not fall with depth
(0.999 or more for every block of `bll`). The last evaluations are noisy
for every method, because nothing decays the learning rate (a constant
3e-4): `drtp` seed 1 collapsed from 0.982 to 0.125 at the end, `local`
seed 0 dropped to 0.003 at step 1024 and recovered to 0.998. A 2-seed
mean of such end points ranks nothing within a point; `bll` is 0.5 points
behind `local` here and 2.2 ahead of `bp`.
""",
    "why_not": "2048 steps of an 8-layer Transformer, about 20 minutes a run "
               "on the 2-core CPU; `sweep.py` runs it where the JAX backend "
               "is a GPU",
}
