"""`experiments.make_table`, `experiments.sweep` and the experiment configs
on fabricated runs.

Nothing trains and nothing compiles: `make_table` reads run JSONs written
into `tmp_path` by the tests; `sweep.main` runs with `sweep.run` replaced by
a fake that records its calls and writes the JSON a real run would (so the
sweep's resuming is exercised); `sweep.run` itself runs once with
`training.train_and_evaluate` replaced. Expected numbers are computed here
with `statistics` or written out by hand. (`tests/test_experiments.py` runs
one real sweep.)
"""

import json
import os
import pathlib
import statistics

import pytest

from bll_jax import config as config_lib
from experiments import configs
from experiments import make_table
from experiments import sweep
from experiments.lib import overrides
from experiments.lib import results as results_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
MACHINE = {"platform": "Linux", "processor": "x86_64", "cpu_count": 2,
           "jax": "0.10.2", "backend": "cpu"}
MACHINE_CELL = "cpu (x86_64, 2 CPUs), jax 0.10.2"


def _summary(label, accuracy, seed=0, **fields):
  """A minimal run summary: the keys `make_table` reads."""
  summary = {
      "label": label,
      "method": label,
      "seed": seed,
      "test_accuracy": accuracy,
      "per_block_test_accuracy": [accuracy] * 4,
      "train_seconds": 10.0,
      "machine": MACHINE,
      "history": [{"epoch": 1, "test/accuracy": accuracy / 2},
                  {"epoch": 2, "test/accuracy": accuracy}],
  }
  summary.update(fields)
  return summary


def _write(results, experiment, label, accuracies, **fields):
  """Writes one JSON per seed (0, 1, ...) where `sweep` would put it.

  Each field (a summary key) is a list with one value per seed.
  """
  for seed, accuracy in enumerate(accuracies):
    per_seed = {k: v[seed] for k, v in fields.items()}
    path = results_lib.result_path(experiment, label, seed, str(results))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      json.dump(_summary(label, accuracy, seed, **per_seed), f)


def _row(lines, start):
  """The one line that starts with `start`."""
  (line,) = [line for line in lines if line.startswith(start)]
  return line


def _cells(line):
  return [c.strip() for c in line.strip().strip("|").split("|")]


# make_table.targets


def test_targets_met_missed_and_signed_gap(tmp_path):
  # fashion_mnist_resnet18 (1 point): bll 0.5 points below bp, met.
  _write(tmp_path, "fashion_mnist_resnet18", "bp", [0.8600, 0.8650, 0.8550])
  _write(tmp_path, "fashion_mnist_resnet18", "bll", [0.8550, 0.8560, 0.8540])
  # mnist1d_cnn (2 points): bll 3 points below bp, missed.
  _write(tmp_path, "mnist1d_cnn", "bp", [0.95, 0.96, 0.94])
  _write(tmp_path, "mnist1d_cnn", "bll", [0.92, 0.93, 0.91])
  # seq_reverse_transformer is judged on exact match, not token accuracy
  # (on which bll would miss by far); bll is ahead, so the gap is negative.
  # A run without the metric (None) does not count.
  _write(tmp_path, "seq_reverse_transformer", "bp", [0.999, 0.999],
         test_exact_match=[0.99, None])
  _write(tmp_path, "seq_reverse_transformer", "bll", [0.5],
         test_exact_match=[1.0])

  lines = make_table.targets(str(tmp_path))

  assert lines[:4] == ["## Targets", "", "| target | bll | bp | gap | |",
                       "| --- | --- | --- | --- | --- |"]
  assert statistics.mean([0.8600, 0.8650, 0.8550]) == pytest.approx(0.86)
  assert statistics.mean([0.8550, 0.8560, 0.8540]) == pytest.approx(0.855)
  assert lines[4] == ("| fashion_mnist_resnet18: bll test_accuracy within "
                      "1 point of bp | 0.8550 | 0.8600 | +0.50 points | met |")
  assert lines[5] == ("| mnist1d_cnn: bll test_accuracy within 2 points of "
                      "bp | 0.9200 | 0.9500 | +3.00 points | missed |")
  assert lines[6] == ("| seq_reverse_transformer: bll test_exact_match "
                      "within 2 points of bp | 1.0000 | 0.9900 | -1.00 points "
                      "| met |")
  assert lines[-1] == ""


def test_targets_not_run_yet_without_bll_or_bp(tmp_path):
  _write(tmp_path, "fashion_mnist_resnet18", "bll", [0.85])   # no bp
  _write(tmp_path, "mnist1d_cnn", "bp", [0.95])               # no bll
  _write(tmp_path, "mnist1d_cnn", "drtp", [0.90])
  # seq_reverse_transformer: no runs at all.

  lines = make_table.targets(str(tmp_path))

  for name, metric, points in (
      ("fashion_mnist_resnet18", "test_accuracy", "1 point"),
      ("mnist1d_cnn", "test_accuracy", "2 points"),
      ("seq_reverse_transformer", "test_exact_match", "2 points")):
    assert _row(lines, f"| {name}: ") == (
        f"| {name}: bll {metric} within {points} of bp | - | - | - "
        "| not run yet |")
  # Without all of bll, drtp and local no experiment has an "ahead" row.
  header = lines.index("| experiment | bll | drtp | local | |")
  assert lines[header + 1] == "| --- | --- | --- | --- | --- |"
  assert lines[header + 2] == ""


def test_targets_gap_of_exactly_the_target_is_met(tmp_path):
  _write(tmp_path, "fashion_mnist_resnet18", "bp", [0.862])
  _write(tmp_path, "fashion_mnist_resnet18", "bll", [0.852])

  line = _row(make_table.targets(str(tmp_path)), "| fashion_mnist_resnet18: ")

  assert line.endswith("| 0.8520 | 0.8620 | +1.00 points | met |")


def test_targets_bll_ahead_of_drtp_and_local(tmp_path):
  # Ahead of both.
  _write(tmp_path, "mnist1d_cnn", "bll", [0.95, 0.94, 0.96])
  _write(tmp_path, "mnist1d_cnn", "drtp", [0.89, 0.90, 0.88])
  _write(tmp_path, "mnist1d_cnn", "local", [0.91, 0.92, 0.90])
  # Behind local by less than bll's standard deviation over seeds.
  fm_bll, fm_local = [0.870, 0.875, 0.880], [0.878, 0.879, 0.880]
  _write(tmp_path, "fashion_mnist_mlp", "bll", fm_bll)
  _write(tmp_path, "fashion_mnist_mlp", "drtp", [0.85, 0.85, 0.85])
  _write(tmp_path, "fashion_mnist_mlp", "local", fm_local)
  # Behind drtp within one standard deviation, behind local by more.
  m1_bll, m1_drtp, m1_local = ([0.60, 0.61, 0.62], [0.6145, 0.615, 0.6155],
                               [0.64, 0.65, 0.66])
  _write(tmp_path, "mnist1d_mlp", "bll", m1_bll)
  _write(tmp_path, "mnist1d_mlp", "drtp", m1_drtp)
  _write(tmp_path, "mnist1d_mlp", "local", m1_local)
  # One seed each: no standard deviation, so never "within" one.
  _write(tmp_path, "fashion_mnist_resnet18", "bll", [0.850])
  _write(tmp_path, "fashion_mnist_resnet18", "drtp", [0.800])
  _write(tmp_path, "fashion_mnist_resnet18", "local", [0.851])
  # A tie is not ahead. Sequence tasks are judged on exact match: the token
  # accuracies (first list) would put bll ahead of both.
  _write(tmp_path, "seq_sort_transformer", "bll", [0.99],
         test_exact_match=[0.9])
  _write(tmp_path, "seq_sort_transformer", "drtp", [0.5],
         test_exact_match=[0.9])
  _write(tmp_path, "seq_sort_transformer", "local", [0.5],
         test_exact_match=[0.8])
  # No drtp: no row.
  _write(tmp_path, "seq_reverse_transformer", "bll", [0.9],
         test_exact_match=[0.9])
  _write(tmp_path, "seq_reverse_transformer", "local", [0.8],
         test_exact_match=[0.8])

  # The cases are what they claim to be.
  sd = max(statistics.stdev(fm_bll), statistics.stdev(fm_local))
  gap = statistics.mean(fm_local) - statistics.mean(fm_bll)
  assert 0 < gap <= sd and gap == pytest.approx(0.004)
  sd_drtp = max(statistics.stdev(m1_bll), statistics.stdev(m1_drtp))
  sd_local = max(statistics.stdev(m1_bll), statistics.stdev(m1_local))
  assert (0 < statistics.mean(m1_drtp) - statistics.mean(m1_bll) <= sd_drtp)
  assert statistics.mean(m1_local) - statistics.mean(m1_bll) > sd_local

  lines = make_table.targets(str(tmp_path))
  within = " (within one standard deviation over seeds)"

  # The rows follow configs.names(): only experiments with all three.
  header = lines.index("| experiment | bll | drtp | local | |")
  rows = lines[header + 2:lines.index("", header)]
  assert [_cells(r)[0] for r in rows] == [
      "fashion_mnist_mlp", "fashion_mnist_resnet18", "mnist1d_cnn",
      "mnist1d_mlp", "seq_sort_transformer"]
  assert _row(rows, "| mnist1d_cnn |") == (
      "| mnist1d_cnn | 0.9500 | 0.8900 | 0.9100 | ahead of both |")
  assert _row(rows, "| fashion_mnist_mlp |") == (
      "| fashion_mnist_mlp | 0.8750 | 0.8500 | 0.8790 | not ahead of local "
      f"by 0.40 points{within} |")
  assert _row(rows, "| mnist1d_mlp |") == (
      "| mnist1d_mlp | 0.6100 | 0.6150 | 0.6500 | not ahead of drtp by 0.50 "
      f"points{within}; local by 4.00 points |")
  assert _row(rows, "| fashion_mnist_resnet18 |") == (
      "| fashion_mnist_resnet18 | 0.8500 | 0.8000 | 0.8510 | not ahead of "
      "local by 0.10 points |")
  assert _row(rows, "| seq_sort_transformer |") == (
      "| seq_sort_transformer | 0.9000 | 0.9000 | 0.8000 | not ahead of drtp "
      "by 0.00 points |")


# make_table.table


def test_table_means_seeds_blocks_and_missing_runs(tmp_path):
  experiment = configs.load("seq_reverse_transformer")
  _write(tmp_path, "seq_reverse_transformer", "bp", [0.90, 0.92, 0.94],
         test_exact_match=[0.5, 0.6, 0.7],
         per_block_test_accuracy=[[None, None, None, 0.90],
                                  [None, None, None, 0.92],
                                  [None, None, None, 0.94]],
         train_seconds=[10.0, 20.0, 33.0])
  _write(tmp_path, "seq_reverse_transformer", "bll", [0.95],
         test_exact_match=[0.8],
         per_block_test_accuracy=[[0.5, 0.6, 0.7, 0.95]],
         train_seconds=[None])                  # counts as 0 seconds
  _write(tmp_path, "seq_reverse_transformer", "drtp", [0.80, 0.84],
         per_block_test_accuracy=[[0.6, 0.7, 0.8, 0.80],
                                  [0.8, 0.9, 1.0, 0.84]])   # no exact match
  runs = make_table.load_runs(str(tmp_path), "seq_reverse_transformer")
  assert [r["seed"] for r in runs["bp"]] == [0, 1, 2]

  lines = make_table.table(experiment, runs)

  assert lines[0] == (
      "| run | seeds | test accuracy | test exact match | per-block test "
      "accuracy (mean, block 1 ... output) | train s/run | machine |")
  assert lines[1] == "|" + " --- |" * 7
  # One row per label of the config, in its order; every row has 7 cells.
  assert [_cells(line)[0] for line in lines[2:]] == list(configs.SEQUENCE)
  assert all(len(_cells(line)) == 7 for line in lines)
  acc = (f"{statistics.mean([0.90, 0.92, 0.94]):.4f} ± "
         f"{statistics.stdev([0.90, 0.92, 0.94]):.4f}")
  assert acc == "0.9200 ± 0.0200"
  assert _row(lines, "| bp |") == (
      "| bp | 3 | 0.9200 ± 0.0200 | 0.6000 ± 0.1000 | -, -, -, 0.920 | 21 | "
      f"{MACHINE_CELL} |")
  assert _row(lines, "| bll |") == (
      f"| bll | 1 | 0.9500 | 0.8000 | 0.500, 0.600, 0.700, 0.950 | 0 | "
      f"{MACHINE_CELL} |")
  drtp_sd = statistics.stdev([0.80, 0.84])
  assert _row(lines, "| drtp |") == (
      f"| drtp | 2 | 0.8200 ± {drtp_sd:.4f} | - | 0.700, 0.800, 0.900, 0.820 "
      f"| 10 | {MACHINE_CELL} |")
  for label in ("bll-direct", "bll-bernoulli", "bll-categorical", "local"):
    assert _row(lines, f"| {label} |") == (
        f"| {label} | 0 | not run yet | | | | |")


def test_table_ignores_runs_of_labels_not_in_the_config():
  experiment = configs.load("mnist1d_mlp")
  runs = {"bp": [_summary("bp", 0.7)], "old-method": [_summary("x", 0.1)]}

  lines = make_table.table(experiment, runs)

  assert not any("old-method" in line for line in lines)
  assert _row(lines, "| bp |").startswith("| bp | 1 | 0.7000 | ")
  assert len(lines) == 2 + len(experiment["runs"])


def test_table_not_run_here():
  experiment = configs.load("cifar10_resnet18")
  assert not experiment["run_here"]

  lines = make_table.table(experiment, {})

  assert lines == [
      ("| run | seeds | test accuracy | per-block test accuracy (mean, block "
       "1 ... output) | train s/run | machine |"),
      "|" + " --- |" * 6,
      f"| all | - | not run here: {experiment['why_not']} | | | |"]
  # Runs made elsewhere (sweep --force) are shown like any other.
  lines = make_table.table(experiment, {"bp": [_summary("bp", 0.93)]})
  assert _row(lines, "| bp |").startswith("| bp | 1 | 0.9300 | ")
  assert _row(lines, "| bll |") == "| bll | 0 | not run yet | | | |"


# make_table.main


def test_main_writes_every_section_and_the_plots(tmp_path, capsys):
  results = tmp_path / "results"
  _write(results, "mnist1d_cnn", "bp", [0.95, 0.96, 0.94],
         per_block_test_accuracy=[[None, None, None, 0.95]] * 3)
  _write(results, "mnist1d_cnn", "bll", [0.94, 0.95, 0.93])
  _write(results, "ablation_grid", "bll, grid 2", [0.84],
         history=[[{"epoch": 1, "test/accuracy": 0.8}]])
  (results / "authors").mkdir()
  (results / "authors" / "mnist1d.md").write_text("| term | share |\n")
  out = tmp_path / "RESULTS.md"

  make_table.main(["--results", str(results), "--out", str(out)])

  assert capsys.readouterr().out.strip() == f"wrote {out}"
  text = out.read_text()
  lines = text.splitlines()
  assert lines[0] == "# Results"
  assert "## Targets" in lines
  assert ("| mnist1d_cnn: bll test_accuracy within 2 points of bp | 0.9400 "
          "| 0.9500 | +1.00 points | met |") in lines
  titles = {name: configs.load(name)["title"] for name in configs.names()}
  sections = [line[3:] for line in lines if line.startswith("## ")]
  assert sections == (
      ["Targets"] + [titles[name] for name in configs.names()]
      + ["The authors' recipe: gradient share of its loss terms"])
  for name in configs.names():
    experiment = configs.load(name)
    assert (f"`experiments/configs/{name}.py`; preset `{experiment['preset']}`"
            f", overrides `{overrides.describe(experiment['overrides'])}`; "
            "seeds ") in text
    if not experiment["run_here"]:
      assert f"not run here: {experiment['why_not']}" in text
  assert ("`experiments/configs/fashion_mnist_resnet18.py`; preset "
          "`fashion_mnist_resnet18`, overrides `model.width=16 "
          "dataset.train_examples=12000 epochs=4`; seeds 0, 1, 2.") in lines
  assert ("`experiments/configs/mnist1d_cnn.py`; preset `mnist1d`, overrides "
          "`(none)`; seeds 0, 1, 2.") in lines
  assert "| bll, grid 2 | 1 | 0.8400 | " in text
  assert "| bll, grid 0 (one prototype per channel) | 0 | not run yet |" in text
  assert "| term | share |" in text
  # Notes (experiments/notes/<name>.md) are shown for experiments with runs
  # only, right after their table.
  notes = make_table.notes("mnist1d_cnn")
  assert notes.startswith("**Reading it.** With learned variances")
  assert "\n\n" + notes + "\n\n![mnist1d_cnn]" in text
  assert make_table.notes("ablation_depth") not in text
  # A plot per experiment with runs, under <results>/plots, linked relative
  # to the output file.
  plots = sorted(p.name for p in (results / "plots").iterdir())
  assert plots == ["ablation_grid.png", "mnist1d_cnn.png"]
  for name in ("ablation_grid", "mnist1d_cnn"):
    png = results / "plots" / f"{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"![{name}](results/plots/{name}.png)" in lines
  assert sum(line.startswith("![") for line in lines) == 2


def test_a_sweep_over_blocks_is_plotted_against_k(tmp_path):
  """The metric by K, a line per method, bp as a band: the series are the
  means and standard deviations over seeds, computed here by hand."""
  experiment = configs.load("shakespeare_char_blocks")
  results = tmp_path / "results"
  name = "shakespeare_char_blocks"
  _write(results, name, "bp", [0.5, 0.5],
         test_bits_per_token=[2.0, 2.2])
  _write(results, name, "bll K=2", [0.4], test_bits_per_token=[2.4])
  _write(results, name, "bll K=8", [0.3, 0.3],
         test_bits_per_token=[2.9, 3.1])
  _write(results, name, "local K=4", [0.3], test_bits_per_token=[2.6])
  runs = make_table.load_runs(str(results), name)
  lines, reference = make_table.blocks_series(experiment, runs)
  assert reference == pytest.approx((2.1, statistics.stdev([2.0, 2.2])))
  assert lines["bll"] == [(2, 2.4, 0.0),
                          (8, pytest.approx(3.0),
                           pytest.approx(statistics.stdev([2.9, 3.1])))]
  assert lines["local"] == [(4, 2.6, 0.0)]
  (path,) = make_table.blocks_plot(experiment, runs, str(tmp_path / "p"))
  assert pathlib.Path(path).name == f"{name}_by_blocks.png"
  assert pathlib.Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # One K per method is no line: nothing is drawn.
  del runs["bll K=8"]
  assert make_table.blocks_plot(experiment, runs, str(tmp_path / "q")) == []


def test_main_without_runs_draws_nothing(tmp_path):
  out = tmp_path / "RESULTS.md"

  make_table.main(["--results", str(tmp_path), "--out", str(out)])

  text = out.read_text()
  assert not (tmp_path / "plots").exists()
  assert "![" not in text
  assert "## The authors' recipe" not in text
  for name in configs.names():
    assert f"## {configs.load(name)['title']}" in text
  assert text.count("| not run yet |") == 3 + sum(
      len(configs.load(n)["runs"]) for n in configs.names()
      if configs.load(n)["run_here"])


# sweep.slug, sweep.result_path


@pytest.mark.parametrize("label, expected", [
    ("temperature 0.3", "temperature-0.3"),
    ("bll (chained, discriminative)", "bll-chained-discriminative"),
    ("authors+fixes", "authors+fixes"),
    ("temperature 3, decorrelation 1", "temperature-3-decorrelation-1"),
    ("family categorical (G=4)", "family-categorical-g-4"),
    ("bll, grid 4, temperature 3, decorrelation 1",
     "bll-grid-4-temperature-3-decorrelation-1"),
    ("bll-learned-variance", "bll-learned-variance"),
])
def test_slug(label, expected):
  assert results_lib.slug(label) == expected


def test_slugs_are_unique_in_every_experiment():
  """Two labels with one slug would share a file (and `--methods` form)."""
  for name in configs.names():
    labels = list(configs.load(name)["runs"])
    slugs = {results_lib.slug(label) for label in labels}
    assert len(slugs) == len(labels), name


def test_result_path():
  assert results_lib.result_path(
      "ablation_depth", "temperature 3, decorrelation 1", 2, "/r") == (
          os.path.join("/r", "ablation_depth",
                       "temperature-3-decorrelation-1-seed2.json"))
  assert results_lib.RESULTS == str(ROOT / "experiments" / "results")
  assert results_lib.result_path("mnist1d_mlp", "authors+fixes", 0) == str(
      ROOT / "experiments" / "results" / "mnist1d_mlp" /
      "authors+fixes-seed0.json")


# sweep.main, with sweep.run faked


@pytest.fixture
def fake_run(monkeypatch):
  """Replaces `sweep.run`; returns the list of its calls.

  Each call is `(experiment name, label, seed, extra overrides)`; the fake
  writes the JSON of the run, as the real one does, so a second sweep
  resumes.
  """
  calls = []

  def run(experiment, label, seed, extra, root=results_lib.RESULTS):
    calls.append((experiment["name"], label, seed, dict(extra)))
    summary = {"experiment": experiment["name"], "label": label,
               "test_accuracy": 0.5}
    if "test_exact_match" in experiment["metrics"]:
      summary["test_exact_match"] = 0.25
    path = results_lib.result_path(experiment["name"], label, seed, root)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      json.dump(summary, f)
    return summary

  monkeypatch.setattr(sweep, "run", run)
  return calls


def _files(root):
  return sorted(str(p.relative_to(root)) for p in root.rglob("*.json"))


def test_sweep_methods_by_label_or_slug(tmp_path, fake_run, capsys):
  sweep.main(["ablation_depth", "--methods",
              ("temperature-3-decorrelation-1,temperature 0.3,"
               "bll-chained-discriminative"), "--seeds", "0,2",
              "--results", str(tmp_path)])

  labels = ["temperature 3, decorrelation 1", "temperature 0.3",
            "bll (chained, discriminative)"]
  assert fake_run == [("ablation_depth", label, seed, {})
                      for label in labels for seed in (0, 2)]
  assert _files(tmp_path) == sorted(
      f"ablation_depth/{results_lib.slug(label)}-seed{seed}.json"
      for label in labels for seed in (0, 2))
  out = capsys.readouterr().out
  assert ("ablation_depth | temperature 3, decorrelation 1 | seed 2: test "
          "accuracy 0.5000 (") in out
  assert "exact match" not in out


def test_sweep_defaults_to_every_run_and_seed(tmp_path, fake_run, capsys):
  sweep.main(["seq_reverse_transformer", "--results", str(tmp_path)])

  assert fake_run == [("seq_reverse_transformer", label, seed, {})
                      for label in configs.SEQUENCE for seed in (0, 1, 2)]
  assert ("seq_reverse_transformer | bp | seed 0: test accuracy 0.5000, "
          "exact match 0.2500 (") in capsys.readouterr().out


def test_sweep_passes_set_overrides_to_every_run(tmp_path, fake_run):
  sweep.main(["mnist1d_mlp", "--methods", "bp,bll", "--seeds", "1",
              "--set", "steps=20", "--set", "mesh=data=1",
              "--set", "model.widths=8,8", "--set", "lr=0.5",
              "--set", "nesterov=true", "--set", "dataset.train-examples=100",
              "--results", str(tmp_path)])

  # Each value has its field's type; a dashed name is the field's.
  extra = {"steps": 20, "mesh": "data=1", "model.widths": (8, 8), "lr": 0.5,
           "nesterov": True, "dataset.train_examples": 100}
  assert fake_run == [("mnist1d_mlp", "bp", 1, extra),
                      ("mnist1d_mlp", "bll", 1, extra)]
  assert [type(v) for v in fake_run[0][3].values()] == [
      int, str, tuple, float, bool, int]


@pytest.mark.parametrize("item, message", [
    ("nonsense=1", "unknown config field 'nonsense'"),
    ("steps=many", "steps: expected int, got 'many'"),
    ("nesterov=maybe", "nesterov: expected true or false, got 'maybe'"),
    ("model.widths=8,x", "model.widths: expected comma-separated integers"),
    ("steps", "expected field=value, got 'steps'"),
])
def test_sweep_refuses_a_bad_set_before_any_run(tmp_path, fake_run, capsys,
                                                item, message):
  with pytest.raises(SystemExit) as exit_info:
    sweep.main(["mnist1d_mlp", "--set", item, "--results", str(tmp_path)])

  assert exit_info.value.code == 2
  assert f"--set: {message}" in capsys.readouterr().err
  assert fake_run == []


def test_sweep_refuses_overrides_that_contradict_a_run(tmp_path, fake_run,
                                                       capsys):
  # local fixes the family: the whole sweep stops before its first run.
  with pytest.raises(SystemExit) as exit_info:
    sweep.main(["mnist1d_mlp", "--methods", "bp,local", "--set",
                "family=bernoulli", "--results", str(tmp_path)])

  assert exit_info.value.code == 2
  assert "mnist1d_mlp | local: method 'local' fixes family" in (
      capsys.readouterr().err)
  assert fake_run == []


@pytest.mark.parametrize("methods, bad", [
    ("bp,nonsense", "'nonsense'"),
    # A label with a comma must be given by its slug: as text it splits.
    ("temperature 3, decorrelation 1", "' decorrelation 1'"),
])
def test_sweep_unknown_label_stops_before_any_run(tmp_path, fake_run, capsys,
                                                  methods, bad):
  name = "mnist1d_mlp" if "bp" in methods else "ablation_depth"

  with pytest.raises(SystemExit) as exit_info:
    sweep.main([name, "--methods", methods, "--results", str(tmp_path)])

  assert exit_info.value.code == 2
  assert fake_run == []
  assert _files(tmp_path) == []
  assert f"{name} has no run {bad}" in capsys.readouterr().err


def test_sweep_needs_experiments(tmp_path, fake_run, capsys):
  with pytest.raises(SystemExit) as exit_info:
    sweep.main(["--results", str(tmp_path)])

  assert exit_info.value.code == 2
  assert "name experiments or pass --all" in capsys.readouterr().err
  assert fake_run == []


def test_sweep_refuses_an_unknown_experiment_and_all_with_no_such_run(
    tmp_path, fake_run):
  for argv in (["nope"], ["--all", "--methods", "nope"]):
    with pytest.raises(SystemExit) as exit_info:
      sweep.main(argv + ["--results", str(tmp_path)])
    assert exit_info.value.code == 2
  assert fake_run == []


def test_sweep_resumes_and_force_reruns(tmp_path, fake_run):
  done = pathlib.Path(results_lib.result_path("mnist1d_mlp", "bp", 0,
                                        str(tmp_path)))
  done.parent.mkdir(parents=True)
  done.write_text('{"marker": true}')
  argv = ["mnist1d_mlp", "--methods", "bp,bll", "--seeds", "0,1",
          "--results", str(tmp_path)]

  sweep.main(argv)

  assert fake_run == [("mnist1d_mlp", "bp", 1, {}),
                      ("mnist1d_mlp", "bll", 0, {}),
                      ("mnist1d_mlp", "bll", 1, {})]
  assert json.loads(done.read_text()) == {"marker": True}
  fake_run.clear()

  sweep.main(argv)                               # everything exists now

  assert fake_run == []
  sweep.main(argv + ["--force"])

  assert fake_run == [("mnist1d_mlp", label, seed, {})
                      for label in ("bp", "bll") for seed in (0, 1)]
  assert json.loads(done.read_text())["label"] == "bp"


def test_sweep_refuses_experiments_not_run_here(tmp_path, fake_run, capsys):
  why = configs.load("cifar10_resnet18")["why_not"]

  with pytest.raises(SystemExit) as exit_info:
    sweep.main(["cifar10_resnet18", "--results", str(tmp_path)])

  assert exit_info.value.code == 2
  assert f"cifar10_resnet18 is not run here: {why}" in capsys.readouterr().err
  assert fake_run == []
  sweep.main(["cifar10_resnet18", "--methods", "bp", "--seeds", "0",
              "--force", "--results", str(tmp_path)])

  assert fake_run == [("cifar10_resnet18", "bp", 0, {})]


def test_sweep_all_runs_every_experiment_run_here(tmp_path, fake_run):
  sweep.main(["--all", "--seeds", "0", "--results", str(tmp_path)])

  expected = []
  for name in configs.names():
    experiment = configs.load(name)
    if experiment["run_here"]:
      expected += [(name, label, 0, {}) for label in experiment["runs"]]
  assert fake_run == expected
  assert {call[0] for call in fake_run} >= {"mnist1d_mlp", "ablation_depth"}
  assert "cifar10_resnet18" not in {call[0] for call in fake_run}
  assert len(_files(tmp_path)) == len(expected)


def test_sweep_runs_gpu_experiments_only_on_a_gpu(tmp_path, fake_run,
                                                   monkeypatch, capsys):
  experiment = configs.load("fashion_mnist_resnet18_gpu")
  assert (experiment["run_here"], experiment["needs"]) == (False, "gpu")
  assert configs.load("cifar10_resnet18")["needs"] is None

  with pytest.raises(SystemExit):                  # this CPU machine
    sweep.main(["fashion_mnist_resnet18_gpu", "--results", str(tmp_path)])
  assert "fashion_mnist_resnet18_gpu is not run here: sized for a GPU" in (
      capsys.readouterr().err)
  assert fake_run == []

  monkeypatch.setattr(sweep.jax, "default_backend", lambda: "gpu")
  sweep.main(["fashion_mnist_resnet18_gpu", "--seeds", "0",
              "--results", str(tmp_path)])
  assert fake_run == [("fashion_mnist_resnet18_gpu", label, 0, {})
                      for label in experiment["runs"]]
  assert list(experiment["runs"])[:4] == ["bp", "bll", "drtp", "local"]
  fake_run.clear()
  with pytest.raises(SystemExit):            # needs a GPU, not any backend
    sweep.main(["cifar10_resnet18", "--results", str(tmp_path)])
  sweep.main(["--all", "--methods", "bp", "--seeds", "1",
              "--results", str(tmp_path)])
  assert ("fashion_mnist_resnet18_gpu", "bp", 1, {}) in fake_run


def test_machine_cell_names_the_accelerator():
  gpu = dict(MACHINE, backend="gpu", device_kind="NVIDIA H200",
             cpu_count=16, jax="0.11.2")
  assert make_table.machine_cell({"machine": gpu}) == (
      "gpu: NVIDIA H200 (x86_64, 16 CPUs), jax 0.11.2")
  cpu = dict(MACHINE, device_kind="cpu")
  assert make_table.machine_cell({"machine": cpu}) == MACHINE_CELL


def test_sweep_checks_every_experiment_before_any_run(tmp_path, fake_run):
  with pytest.raises(SystemExit):
    # bp is a run of mnist1d_mlp but not of the ablation.
    sweep.main(["mnist1d_mlp", "ablation_depth", "--methods", "bp",
                "--results", str(tmp_path)])

  assert fake_run == []


# sweep.run, with the training replaced


def test_run_applies_the_overrides_and_writes_the_summary(tmp_path,
                                                          monkeypatch):
  seen = {}

  def train_and_evaluate(config, workdir):
    seen["config"], seen["workdir"] = config, workdir
    assert os.path.isdir(workdir)
    return {"method": config.method, "seed": config.seed,
            "test_accuracy": 0.75, "per_block_test_accuracy": [0.5, 0.75]}

  monkeypatch.setattr(sweep.training, "train_and_evaluate",
                      train_and_evaluate)
  experiment = configs.load("mnist1d_mlp")

  summary = sweep.run(experiment, "drtp", 1, {"steps": 20}, str(tmp_path))

  # The experiment's, the method's, the seed's, then the extra overrides;
  # tuples written as lists.
  assert summary == {"experiment": "mnist1d_mlp", "label": "drtp",
                     "overrides": {"model.name": "mlp",
                                   "model.widths": [256, 256, 256],
                                   "method": "drtp", "seed": 1,
                                   "progress": False, "steps": 20},
                     "method": "drtp", "seed": 1, "test_accuracy": 0.75,
                     "per_block_test_accuracy": [0.5, 0.75]}
  config = seen["config"]
  assert (config.preset, config.method, config.seed, config.steps) == (
      "mnist1d", "drtp", 1, 20)
  assert (config.model.name, config.model.widths) == ("mlp", (256, 256, 256))
  assert config.progress is False
  assert not os.path.exists(seen["workdir"])       # removed after the run
  path = tmp_path / "mnist1d_mlp" / "drtp-seed1.json"
  assert json.loads(path.read_text()) == summary


def test_old_runs_with_argv_read_as_new_ones(tmp_path):
  """Runs written before the configs were overrides have `argv` instead of
  `overrides`; the table reads both."""
  _write(tmp_path, "mnist1d_mlp", "bp", [0.70, 0.72],
         argv=[["--preset", "mnist1d", "--method", "bp", "--seed", str(seed)]
               for seed in (0, 1)])
  _write(tmp_path, "mnist1d_mlp", "bll", [0.60],
         overrides=[{"method": "bll", "seed": 0}])
  runs = make_table.load_runs(str(tmp_path), "mnist1d_mlp")
  assert "argv" in runs["bp"][0] and "overrides" in runs["bll"][0]

  lines = make_table.table(configs.load("mnist1d_mlp"), runs)

  assert _row(lines, "| bp |").startswith("| bp | 2 | 0.7100 ± 0.0141 | ")
  assert _row(lines, "| bll |").startswith("| bll | 1 | 0.6000 | ")


# The configs


def test_every_run_of_every_experiment_is_a_valid_config():
  """Each run's overrides name real fields, fit together and pass the
  checks a run makes before it reads data (`bll_jax.config.check`)."""
  for name in configs.names():
    experiment = configs.load(name)
    for label in experiment["runs"]:
      config = config_lib.from_overrides(
          experiment["preset"], sweep.run_overrides(experiment, label, 0, {}))
      config_lib.check(config)
      assert config.seed == 0 and config.progress is False, (name, label)
  # What the overrides say is what the config holds.
  grid = configs.load("ablation_grid")
  config = config_lib.from_overrides(grid["preset"], sweep.run_overrides(
      grid, "drtp, grid 0", 2, {}))
  assert (config.model.width, config.dataset.train_examples, config.epochs,
          config.method, config.grid, config.seed) == (16, 12000, 4, "drtp",
                                                       0, 2)


def test_overrides_written_as_text_read_back_the_same():
  """`describe` writes what `--set` reads: every override of every config
  (ints, floats, text, booleans, tuples) survives the round trip."""
  seen = set()
  for name in configs.names():
    experiment = configs.load(name)
    for run in [experiment["overrides"], *experiment["runs"].values()]:
      if not run:
        assert overrides.describe(run) == "(none)"
        continue
      words = overrides.describe(run).split(" ")
      assert overrides.parse(words) == run, (name, words)
      seen |= {type(v) for v in run.values()}
  assert seen == {int, float, str, bool, tuple}


def test_every_notes_file_belongs_to_an_experiment():
  notes = sorted(p.stem for p in pathlib.Path(make_table.NOTES).glob("*"))
  assert notes and set(notes) <= set(configs.names())
  assert all(make_table.notes(name) for name in notes)
  assert make_table.notes("ablation_calibration_test") == ""   # none


def test_per_block_means_skip_missing_blocks_and_seeds():
  runs = [{"per_block_test_accuracy": [0.5, None, 0.9]},
          {"per_block_test_accuracy": [0.7, 0.8]},
          {"per_block_test_accuracy": [None, None, 0.7]}]
  got = make_table.per_block_means(runs)
  assert got[0] == pytest.approx(0.6) and got[1] == pytest.approx(0.8)
  assert got[2] == pytest.approx(0.8)
  assert make_table.per_block_means(
      [{"per_block_test_accuracy": [None, 0.5]}] * 2)[0] is None


def test_sweep_all_with_methods_runs_them_where_they_exist(tmp_path,
                                                           fake_run):
  sweep.main(["--all", "--methods", "bp", "--seeds", "0", "--results",
              str(tmp_path)])
  ran = {call[0] for call in fake_run}
  assert ran == {name for name in configs.names()
                 if configs.load(name)["run_here"]
                 and "bp" in configs.load(name)["runs"]}
  assert {call[1] for call in fake_run} == {"bp"}


def test_targets_bll_ahead_by_less_than_the_spread_says_so(tmp_path):
  bll, local = [0.852, 0.862, 0.858], [0.855, 0.853, 0.858]
  _write(tmp_path, "fashion_mnist_resnet18", "bll", bll)
  _write(tmp_path, "fashion_mnist_resnet18", "drtp", [0.80, 0.80, 0.80])
  _write(tmp_path, "fashion_mnist_resnet18", "local", local)
  margin = statistics.mean(bll) - statistics.mean(local)
  assert 0 < margin <= max(statistics.stdev(bll), statistics.stdev(local))
  line = _row(make_table.targets(str(tmp_path)), "| fashion_mnist_resnet18 |")
  # drtp is 5.5 points behind, far outside the spread: not mentioned.
  assert line.endswith(
      f"| ahead of both (of local by {100 * margin:.2f} points: within one "
      "standard deviation over seeds) |")


def test_sequence_curves_show_exact_match_by_epoch(tmp_path, monkeypatch):
  # The curves plot the metric an experiment is judged on: for the sequence
  # tasks exact-sequence accuracy, the mean over seeds at each evaluation.
  import matplotlib.axes
  drawn = []
  real_plot = matplotlib.axes.Axes.plot

  def plot(self, *args, **kwargs):
    drawn.append((args, kwargs.get("label")))
    return real_plot(self, *args, **kwargs)

  monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
  history = [[{"epoch": 1, "test/accuracy": 0.5, "test/exact_match": 0.1},
              {"epoch": 2, "test/accuracy": 0.9, "test/exact_match": 0.6}],
             [{"epoch": 1, "test/accuracy": 0.7, "test/exact_match": 0.3},
              {"epoch": 2, "test/accuracy": 1.0, "test/exact_match": 1.0}]]
  _write(tmp_path, "seq_sort_transformer", "bll", [0.9, 1.0], history=history)
  experiment = configs.load("seq_sort_transformer")

  (path,) = make_table.plots(
      experiment, make_table.load_runs(str(tmp_path), "seq_sort_transformer"),
      str(tmp_path / "plots"))

  assert pathlib.Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # The learning curve has one point per evaluation (2); the depth plot 4.
  ((xs, ys, *_),) = [args for args, label in drawn
                     if label == "bll" and len(args[0]) == 2]
  assert list(xs) == [1, 2]
  assert ys == pytest.approx([0.2, 0.8])      # exact match, not accuracy


# ----------------------------------------------------------------------------
# make_table.time_to_accuracy


def test_time_to_accuracy_reports_are_appended_with_their_curves(tmp_path):
  folder = tmp_path / "results" / "time_to_accuracy"
  assert make_table.time_to_accuracy(str(tmp_path / "results"),
                                     str(tmp_path)) == []
  folder.mkdir(parents=True)
  (folder / "time_to_accuracy.md").write_text("| method | s |\n")
  (folder / "cost_model.md").write_text("gamma = 1.2\n")
  (folder / "cnn.png").write_bytes(b"png")
  lines = make_table.time_to_accuracy(str(tmp_path / "results"),
                                      str(tmp_path))
  text = "\n".join(lines)
  assert text.index("## Time to accuracy on 2 workers") < text.index(
      "| method | s |") < text.index("## Time to accuracy: the cost model")
  assert "![cnn](results/time_to_accuracy/cnn.png)" in text
  assert "gamma = 1.2" in text
