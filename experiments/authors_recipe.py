"""The authors' recipe against our principled loss and backprop, same budget.

    python experiments/authors_recipe.py --out experiments/results/authors

For each preset (default: `fashion_mnist_mlp`, `mnist1d`) and seed, five
runs of `bll-train` with the preset's budget:

* `authors`: `--recipe authors` (as published);
* `authors+fixes`: the similarity term pulls, the auxiliary heads train;
* `authors+fixes-no-aux`: the same without the auxiliary classifiers
  (`--authors.auxiliary 0`), to see what they contribute;
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
import shutil
import statistics
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bll_jax import authors  # noqa: E402
from bll_jax import checkpoint as checkpoint_lib  # noqa: E402
from bll_jax import cli  # noqa: E402
from bll_jax import train  # noqa: E402
from experiments import sweep  # noqa: E402

# The experiment (experiments/configs) each preset's runs belong to.
EXPERIMENT_OF = {"fashion_mnist_mlp": "fashion_mnist_mlp",
                 "mnist1d": "mnist1d_cnn"}

VARIANTS = {
    "authors": ["--recipe", "authors"],
    "authors+fixes": ["--recipe", "authors", "--authors.similarity-pulls",
                      "true", "--authors.train-auxiliary", "true"],
    # Why authors+fixes does well: the same without its auxiliary classifiers.
    "authors+fixes-no-aux": ["--recipe", "authors", "--authors.similarity-pulls",
                             "true", "--authors.train-auxiliary", "true",
                             "--authors.auxiliary", "0"],
    "bll": [],
    "bp": ["--method", "bp"],
}


SHARES_OF = ("authors", "authors+fixes")   # variants whose term shares we record


def term_shares(run: train.Run, state, batch) -> list[dict[str, float]]:
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
      terms, _ = authors.block_terms(recipe, engine, k, params,
                                     block.batch_stats, h, fb[k], labels,
                                     weights, key)
      return recipe.weight(name) * terms[name]

    norms = {}
    for name in ("decorrelation", "similarity", "auxiliary", "denoising"):
      grads = jax.grad(term)(block.params, name)
      grads = {part: g for part, g in grads.items() if part != "aux"}
      norms[name] = float(jnp.sqrt(sum(jnp.sum(jnp.square(g))
                                       for g in jax.tree.leaves(grads))))
    total = sum(norms.values()) or 1.0
    shares.append({n: v / total for n, v in norms.items()})
    _, h, _ = engine._forward(k, block.params, block.batch_stats, h, False,
                              None)
  return shares


def run_one(preset: str, variant: str, seed: int, results: str,
            shares: dict):
  argv = ["--preset", preset, "--seed", str(seed), "--progress", "false",
          "--mesh", "data=1", *VARIANTS[variant]]
  config, _ = cli.config_from_args(argv)
  del config.print_config
  workdir = tempfile.mkdtemp(prefix="bll-authors-")
  try:
    if variant in SHARES_OF:
      run = train.prepare(config)
      batch = next(run.dataset.train_batches(int(config.batch_size),
                                             seed=seed, epoch=0))
      sample = np.zeros((int(config.batch_size),)
                        + run.dataset.info.input_shape,
                        run.dataset.info.input_dtype)
      initial = run.engine.init(jax.random.key(seed), sample)
    summary = train.train_and_evaluate(config, workdir)
    if variant in SHARES_OF:
      checkpoints = checkpoint_lib.Checkpointer(
          os.path.join(workdir, "checkpoints"))
      final, _ = checkpoints.restore(checkpoints.latest_step(), initial)
      checkpoints.close()
      shares.setdefault(preset, {}).setdefault(variant, []).append(
          {"seed": seed, "start": term_shares(run, initial, batch),
           "end": term_shares(run, jax.device_get(final), batch)})
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  # The run's summary goes where the sweep keeps its runs, so that the
  # tables of RESULTS.md include it (and the sweep does not run it again).
  experiment = EXPERIMENT_OF.get(preset, preset)
  summary = {"experiment": experiment, "label": variant, "argv": argv,
             **summary}
  path = sweep.result_path(experiment, variant, seed, results)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(train._jsonable(summary), f, indent=2)
  return summary


def _stat(values):
  if len(values) == 1:
    return f"{values[0]:.4f}"
  return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def tables(preset: str, results: dict, shares: dict) -> str:
  first = next(iter(results.values()))[0]
  lines = [f"### {preset}: {first['dataset']}, {first['model']}, "
           f"{first['blocks']} blocks, {first['epochs']} epochs", "",
           "| variant | seeds | test accuracy | per-block (mean) |",
           "| --- | --- | --- | --- |"]
  for variant, runs in results.items():
    per_block = []
    for k in range(len(runs[0]["per_block_test_accuracy"])):
      vals = [r["per_block_test_accuracy"][k] for r in runs]
      per_block.append("-" if vals[0] is None else
                       f"{statistics.mean(vals):.3f}")
    lines.append(f"| {variant} | {len(runs)} | "
                 f"{_stat([r['test_accuracy'] for r in runs])} | "
                 f"{', '.join(per_block)} |")
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
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--presets", default="fashion_mnist_mlp,mnist1d")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--out", default="experiments/results/authors",
                      help="the tables and term_shares.json")
  parser.add_argument("--results", default=sweep.RESULTS,
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
