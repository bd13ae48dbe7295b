"""The experiments: their configs, runs and notes, and the scripts.

Every script runs from the repository root as `python -m experiments.<name>`:

* `sweep` trains the runs of `configs/` (one JSON each under `results/`);
  `make_table` rebuilds `RESULTS.md` from them and the prose of `notes/`;
  `authors_recipe` adds the authors' recipe's runs and term shares;
* `parallel_benchmark`, `process_benchmark`, `loop_overhead`,
  `init_compile_cost` and `depth_probe` measure what `docs/` and the notes
  cite (each writes or prints its own tables);
* `plain_jax_loop` is README.md's example, a plain script.

`lib/` holds what more than one script uses.
"""
