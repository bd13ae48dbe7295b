"""The authors' recipe against our principled loss and backprop, same budget.

    python -m experiments.authors_recipe --out experiments/results/authors

For each preset (default: `fashion_mnist_mlp`, `mnist1d`) and seed, five
runs of `bll-train` with the preset's budget, on one device:

* `authors`: `recipe="authors"` (as published);
* `authors+fixes`: the similarity term pulls, the auxiliary heads train;
* `authors+fixes-no-aux`: the same without the auxiliary classifiers
  (`authors.auxiliary=0`), to see what they contribute;
* `bll`: the principled losses (the defaults);
* `bp`: backprop on the same network.

For the two recipe runs it also measures each loss term's share of the
gradient norm, per block, at the start and at the end of training: on one
training batch, `|grad_theta_k (w_t * term_t)| / sum_t |grad_theta_k (w_t *
term_t)|`. Writes one summary JSON per run, `term_shares.json` and
`<preset>.md` (tables) under `--out`; each run's summary goes to
`experiments/results/<experiment>/<variant>-seed<S>.json`, beside the
sweep's runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from bll_jax import config as config_lib
from bll_jax import training
from bll_jax.training import checkpoint as checkpoint_lib
from experiments.configs import METHODS
from experiments.lib import results as results_lib
from experiments.make_table import mean_std
from experiments.make_table import per_block_cell

# The experiment (experiments/configs) each preset's runs belong to.
EXPERIMENT_OF = {"fashion_mnist_mlp": "fashion_mnist_mlp",
                 "mnist1d": "mnist1d_cnn"}

# Variant -> overrides (the sweep's methods, and one more).
VARIANTS = {
    "authors": METHODS["authors"],
    "authors+fixes": METHODS["authors+fixes"],
    # Why authors+fixes does well: the same without its auxiliary classifiers.
    "authors+fixes-no-aux": {**METHODS["authors+fixes"],
                             "authors.auxiliary": 0.0},
    "bll": METHODS["bll"],
    "bp": METHODS["bp"],
}


# The variants whose terms' shares of the gradient are recorded.
SHARES_OF = ("authors", "authors+fixes")


def term_shares(run: training.Run, state, batch
                ) -> list[dict[str, float]]:
  """Per hidden block: each term's share of the gradient norm (one batch).

  The norm is over the block's own weights only: the auxiliary head
  (`params["aux"]`) is left out, since its gradient (zeroed as published)
  says nothing about what shapes the block's features.
  """
  engine, recipe = run.engine, run.engine.recipe
  key = jax.random.key(0)
  fb = engine.feedback_forward(state.feedback.params, None)
  h, shares = jnp.asarray(batch["inputs"]), []
  labels, weights = jnp.asarray(batch["labels"]), jnp.asarray(batch["weights"])
  for k in range(engine.num_blocks - 1):
    block = state.blocks[k]

    def term(params, name, h=h, k=k, block=block):
      def rerun(x):
        return engine.block_forward(k, params, block.batch_stats, x, True, key)

      terms = recipe.block_terms(engine, k, rerun(h), fb[k], labels, weights,
                                 h_in=h, key=key, rerun=rerun)
      return recipe.weight(name) * terms[name]

    norms = {}
    for name in ("decorrelation", "similarity", "auxiliary", "denoising"):
      grads = jax.grad(term)(block.params, name)
      grads = {part: g for part, g in grads.items() if part != "aux"}
      norms[name] = float(jnp.sqrt(sum(jnp.sum(jnp.square(g))
                                       for g in jax.tree.leaves(grads))))
    total = sum(norms.values()) or 1.0
    shares.append({n: v / total for n, v in norms.items()})
    h = engine.block_forward(k, block.params, block.batch_stats, h, False,
                             None).h_out
  return shares


def run_one(preset: str, variant: str, seed: int, results: str,
            shares: dict):
  """Trains one variant; records its term shares (`SHARES_OF` only) in
  `shares` and writes its summary where the sweep's runs go."""
  overrides = {"seed": seed, "progress": False, "mesh": "data=1",
               **VARIANTS[variant]}
  config = config_lib.from_overrides(preset, overrides)
  with tempfile.TemporaryDirectory(prefix="bll-authors-",
                                   ignore_cleanup_errors=True) as workdir:
    if variant in SHARES_OF:
      run = training.prepare(config)
      batch = next(run.dataset.train_batches(int(config.batch_size),
                                             seed=seed, epoch=0))
      sample = np.zeros((int(config.batch_size),)
                        + run.dataset.info.input_shape,
                        run.dataset.info.input_dtype)
      initial = run.engine.init(jax.random.key(seed), sample)
    summary = training.train_and_evaluate(config, workdir)
    if variant in SHARES_OF:
      checkpoints = checkpoint_lib.Checkpointer(
          os.path.join(workdir, "checkpoints"))
      final, _ = checkpoints.restore(checkpoints.latest_step(), initial)
      checkpoints.close()
      shares.setdefault(preset, {}).setdefault(variant, []).append(
          {"seed": seed, "start": term_shares(run, initial, batch),
           "end": term_shares(run, jax.device_get(final), batch)})
  # The run's summary goes where the sweep keeps its runs, so that the
  # tables of RESULTS.md include it (and the sweep does not run it again).
  return results_lib.write_run(EXPERIMENT_OF.get(preset, preset), variant,
                               seed, overrides, summary, results)


def tables(preset: str, results: dict, shares: dict) -> str:
  """The variants' accuracies and the recipes' term shares, as markdown."""
  first = next(iter(results.values()))[0]
  lines = [f"### {preset}: {first['dataset']}, {first['model']}, "
           f"{first['blocks']} blocks, {first['epochs']} epochs", "",
           "| variant | seeds | test accuracy | per-block (mean) |",
           "| --- | --- | --- | --- |"]
  for variant, runs in results.items():
    lines.append(f"| {variant} | {len(runs)} | "
                 f"{mean_std([r['test_accuracy'] for r in runs])} | "
                 f"{per_block_cell(runs)} |")
  for variant, records in shares.get(preset, {}).items():
    lines += ["", f"Gradient-norm share of each term, `{variant}` (mean over "
              "seeds), per hidden block: start -> end of training", "",
              "| block | decorrelation | similarity | auxiliary | denoising |",
              "| --- | --- | --- | --- | --- |"]
    for k in range(len(records[0]["start"])):
      cells = []
      for name in ("decorrelation", "similarity", "auxiliary", "denoising"):
        start = statistics.mean(r["start"][k][name] for r in records)
        end = statistics.mean(r["end"][k][name] for r in records)
        cells.append(f"{start:.2f} -> {end:.2f}")
      lines.append(f"| {k} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m experiments.authors_recipe",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--presets", default="fashion_mnist_mlp,mnist1d")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--out", default="experiments/results/authors",
                      help="the tables and term_shares.json")
  parser.add_argument("--results", default=results_lib.RESULTS,
                      help="where the runs' JSON files go (as the sweep's)")
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  shares: dict = {}
  texts = []
  for preset in args.presets.split(","):
    results = {}
    for variant in args.variants.split(","):
      for seed in (int(s) for s in args.seeds.split(",")):
        summary = run_one(preset, variant, seed, args.results, shares)
        print(f"{preset} {variant} seed {seed}: "
              f"{summary['test_accuracy']:.4f}", flush=True)
        results.setdefault(variant, []).append(summary)
    text = tables(preset, results, shares)
    with open(os.path.join(args.out, f"{preset}.md"), "w") as f:
      f.write(text + "\n")
    texts.append(text)
  with open(os.path.join(args.out, "term_shares.json"), "w") as f:
    json.dump(shares, f, indent=2)
  print("\n\n".join(texts))


if __name__ == "__main__":
  main()
