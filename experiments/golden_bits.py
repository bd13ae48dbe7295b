"""Golden bits: whether two checkouts train the same bits.

Runs a fixed list of short `bll-train` runs (every method, recipe, latent
kind, stochastic transformers, ResNet grids, MPMD and SPMD meshes on 4 fake
CPU devices), saves every parameter leaf of the last checkpoint and the
summary's history, and compares two such folders leaf by leaf.

  python -m experiments.golden_bits OUT [name ...]   # this checkout
  GOLDEN_ROOT=/path/to/other/checkout python -m experiments.golden_bits OUT_OLD
  python -m experiments.golden_bits --compare OUT_OLD OUT

`GOLDEN_ROOT` runs another checkout's `bll_jax` (e.g. a `git worktree` of an
older commit) with this interpreter. Issue 18's closing note compares commit
27f8417 with the redesign this way.
"""
import json
import os
import shutil
import subprocess
import sys

os.environ["JAX_NUM_CPU_DEVICES"] = "4"   # to read the mesh runs' checkpoints
import numpy as np  # noqa: E402

LAUNCH = ("import os, sys; root = os.environ.get('GOLDEN_ROOT');\n"
          "if root:\n"
          "  sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in type(f).__name__]\n"
          "  sys.path.insert(0, root)\n"
          "import bll_jax; assert not root or bll_jax.__file__.startswith(root), bll_jax.__file__\n"
          "from bll_jax import cli; sys.argv[0] = 'bll-train'; cli.entry_point()")

RUNS = {
  "mnist1d-bll": ["--steps", "40", "--epochs", "1"],
  "mnist1d-bp": ["--method", "bp", "--steps", "40", "--epochs", "1"],
  "mnist1d-local": ["--method", "local", "--steps", "40", "--epochs", "1"],
  "mnist1d-drtp": ["--method", "drtp", "--steps", "40", "--epochs", "1"],
  "mnist1d-authors": ["--recipe", "authors", "--steps", "40", "--epochs", "1"],
  "mnist1d-authors-fixed": ["--recipe", "authors", "--authors.train-auxiliary", "true", "--authors.similarity-pulls", "true", "--optimizer", "adamw", "--weight-decay", "0.01", "--steps", "40", "--epochs", "1"],
  "mnist1d-calibrated": ["--temperature-calibration", "init", "--steps", "40", "--epochs", "1"],
  "mnist1d-perblock": ["--step-mode", "per_block", "--steps", "40", "--epochs", "1"],
  "mnist1d-bootstrapped-decor": ["--feedback", "bootstrapped", "--decorrelation", "0.5", "--steps", "40", "--epochs", "1"],
  "reverse-dropout-sample": ["--preset", "seq_transformer", "--model.num-layers", "4", "--model.d-model", "32", "--model.mlp-dim", "64", "--cuts", "2,3,4", "--model.dropout", "0.1", "--transmit", "sample", "--family", "bernoulli", "--steps", "20", "--epochs", "1", "--dataset.train-size", "4096"],
  "fashion-mlp-bootstrapped": ["--preset", "fashion_mnist_mlp", "--model.widths", "64,64,64", "--feedback", "bootstrapped", "--dataset.train-examples", "2000", "--steps", "20", "--epochs", "1"],
  "fashion-resnet18-grid": ["--preset", "fashion_mnist_resnet18", "--model.width", "4", "--dataset.train-examples", "512", "--steps", "6", "--epochs", "1", "--batch-size", "32"],
  # multi-device (4 fake devices)
  "mesh-sync-data2-block2": ["--mesh", "data=2,block=2", "--steps", "20", "--epochs", "1"],
  "mesh-pipelined-block4": ["--mesh", "block=4", "--schedule", "pipelined", "--steps", "20", "--epochs", "1"],
  "mesh-pipelined-block2-lag1": ["--mesh", "block=2", "--schedule", "pipelined", "--feedback-lag", "1", "--steps", "20", "--epochs", "1"],
  "mesh-spmd": ["--preset", "seq_transformer", "--model.num-layers", "4", "--model.d-model", "32", "--model.mlp-dim", "64", "--cuts", "1,2,3,4,5", "--mesh", "block=2", "--schedule", "pipelined", "--pipeline", "spmd", "--steps", "12", "--epochs", "1", "--dataset.train-size", "4096"],
  "mesh-spmd-data2": ["--preset", "seq_transformer", "--model.num-layers", "4", "--model.d-model", "32", "--model.mlp-dim", "64", "--cuts", "1,2,3,4,5", "--mesh", "data=2,block=2", "--schedule", "pipelined", "--pipeline", "spmd", "--steps", "12", "--epochs", "1", "--dataset.train-size", "4096"],
}


def leaves(tree, prefix=""):
  if isinstance(tree, dict):
    for k in sorted(tree):
      yield from leaves(tree[k], f"{prefix}/{k}")
  elif isinstance(tree, (list, tuple)):
    for i, v in enumerate(tree):
      yield from leaves(v, f"{prefix}/{i}")
  else:
    yield prefix, np.asarray(tree)


def run(name, out):
  workdir = os.path.join(out, name)
  shutil.rmtree(workdir, ignore_errors=True)
  env = dict(os.environ)
  if not name.startswith("mesh"):
    env.pop("JAX_NUM_CPU_DEVICES")
  argv = [sys.executable, "-c", LAUNCH, "--workdir", workdir, "--progress", "false"] + RUNS[name]
  p = subprocess.run(argv, env=env, capture_output=True, text=True)
  if p.returncode:
    print(name, "FAILED", p.stderr[-2000:]); return
  import orbax.checkpoint as ocp
  ckdir = os.path.join(workdir, "checkpoints")
  step = max(int(s) for s in os.listdir(ckdir) if s.isdigit())
  ck = ocp.PyTreeCheckpointer().restore(os.path.join(ckdir, str(step), "state"))
  params = {}
  for path, value in leaves(ck):
    if "opt_state" in path:
      continue
    params[path] = value
  np.savez(os.path.join(out, name + ".npz"), **params)
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  with open(os.path.join(out, name + ".json"), "w") as f:
    json.dump({"history": summary["history"], "temperature": summary["temperature"]}, f, indent=1, sort_keys=True)
  shutil.rmtree(workdir)
  print(name, "ok", flush=True)


def compare(a, b):
  for name in RUNS:
    pa, pb = os.path.join(a, name + ".npz"), os.path.join(b, name + ".npz")
    if not (os.path.exists(pa) and os.path.exists(pb)):
      print(f"{name}: missing"); continue
    x, y = np.load(pa), np.load(pb)
    kx, ky = set(x.files), set(y.files)
    diff = max((float(np.max(np.abs(x[k].astype(np.float64) - y[k].astype(np.float64)))) if x[k].size else 0.0) for k in kx & ky) if kx & ky else None
    ha = json.load(open(os.path.join(a, name + ".json"))); hb = json.load(open(os.path.join(b, name + ".json")))
    def flat(h):
      return {f"{i}/{k}": v for i, r in enumerate(h["history"]) for k, v in r.items()}
    fa, fb = flat(ha), flat(hb)
    mdiff = {k: (fa[k], fb.get(k)) for k in fa if fa[k] != fb.get(k)}
    print(f"{name}: params max diff {diff}; keys only in A {len(kx - ky)}, only in B {len(ky - kx)}; "
          f"history diffs {len(mdiff)}: {list(mdiff.items())[:4]}")


if __name__ == "__main__":
  if sys.argv[1] == "--compare":
    compare(sys.argv[2], sys.argv[3])
  else:
    out = sys.argv[1]; os.makedirs(out, exist_ok=True)
    for name in (sys.argv[2:] or RUNS):
      run(name, out)
