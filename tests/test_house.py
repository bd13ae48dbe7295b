"""The layout's rules, read from the code (docs/engine.md, "The layout").

Imports point down: the pure core imports nothing of bll_jax beyond itself;
the engine never imports recipes, parallel, training, config or cli; the
training loop reaches parallel code only through `bll_jax.parallel`'s
package API. No name starting with `_` is used outside its module, and only
`bll_jax/parallel` builds a mesh or a sharding or names a mesh axis.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bll_jax"
# Public despite the underscore: namedtuple methods, os._exit (documented).
PUBLIC_PRIVATES = {"_replace", "_asdict", "_fields", "_make", "_exit"}
OWNERS = {"self", "cls"}
MESH_NAMES = {"Mesh", "NamedSharding", "PartitionSpec", "shard_map",
              "make_mesh", "ppermute", "axis_index"}
AXES = {"data", "block"}
MESH_PACKAGE = PACKAGE / "parallel"


def _modules(root):
  out = {}
  for path in sorted(root.rglob("*.py")):
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    out[name.removesuffix(".__init__")] = path
  return out


MODULES = _modules(PACKAGE)
SOURCES = {**MODULES, **{f"experiments:{p}": p
                         for p in sorted((ROOT / "experiments").rglob("*.py"))}}


def _imports(path):
  """The bll_jax modules `path` imports (`from a import b` counts as a.b
  when that is a module)."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith("bll_jax")}
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
        "bll_jax"):
      for a in node.names:
        full = f"{node.module}.{a.name}"
        out.add(full if full in MODULES else node.module)
  return out


def test_the_walk_sees_the_whole_package():
  assert "bll_jax.engine.core" in MODULES and "bll_jax.parallel.mpmd" in MODULES
  assert len(MODULES) > 40


def test_no_import_cycles():
  edges = {m: {t for t in _imports(p) if t in MODULES and t != m}
           for m, p in MODULES.items()}
  # A package's __init__ re-exports its modules: an edge into a package is
  # an edge into the modules it re-exports, not a cycle of its own.
  def reach(start):
    seen, todo = set(), [start]
    while todo:
      for nxt in edges[todo.pop()]:
        if nxt not in seen:
          seen.add(nxt)
          todo.append(nxt)
    return seen
  cycles = sorted(m for m in MODULES
                  if MODULES[m].name != "__init__.py" and m in reach(m))
  assert cycles == [], f"modules on an import cycle: {cycles}"


@pytest.mark.parametrize("layer,forbidden", [
    ("bll_jax.families", {"bll_jax.engine", "bll_jax.parallel",
                          "bll_jax.training", "bll_jax.config", "bll_jax.cli",
                          "bll_jax.models", "bll_jax.recipes"}),
    ("bll_jax.losses", {"bll_jax.engine", "bll_jax.parallel",
                        "bll_jax.training", "bll_jax.config", "bll_jax.cli",
                        "bll_jax.models", "bll_jax.recipes"}),
    ("bll_jax.engine", {"bll_jax.recipes", "bll_jax.parallel",
                        "bll_jax.training", "bll_jax.config", "bll_jax.cli",
                        "bll_jax.baselines"}),
    ("bll_jax.recipes", {"bll_jax.parallel", "bll_jax.training",
                         "bll_jax.config", "bll_jax.cli"}),
    ("bll_jax.parallel", {"bll_jax.training", "bll_jax.config",
                          "bll_jax.cli", "bll_jax.recipes",
                          "bll_jax.baselines"}),
    ("bll_jax.baselines", {"bll_jax.training", "bll_jax.config",
                           "bll_jax.cli"}),
    ("bll_jax.config", {"bll_jax.engine", "bll_jax.parallel",
                        "bll_jax.training", "bll_jax.cli", "bll_jax.models",
                        "bll_jax.data"}),
    ("bll_jax.cli.launch", {"bll_jax.engine", "bll_jax.parallel",
                            "bll_jax.training", "bll_jax.cli.main"}),
])
def test_imports_point_down(layer, forbidden):
  offenders = []
  for name, path in MODULES.items():
    if name == layer or name.startswith(layer + "."):
      for target in _imports(path):
        if any(target == f or target.startswith(f + ".") for f in forbidden):
          offenders.append(f"{path.relative_to(ROOT)} imports {target}")
  assert offenders == []


def test_the_training_loop_reaches_parallel_code_through_the_package_api():
  for name, path in MODULES.items():
    if name.startswith("bll_jax.training"):
      deep = [t for t in _imports(path) if t.startswith("bll_jax.parallel.")]
      assert deep == [], (path, deep)


def test_no_private_name_is_used_outside_its_module():
  offenders = []
  for name, path in SOURCES.items():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
          ("bll_jax", "experiments")):
        # A private module (`bll_jax._checks`) is its package's to import.
        offenders += [f"{path.relative_to(ROOT)}:{node.lineno}: {a.name}"
                      for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")
                      and f"{node.module}.{a.name}" not in MODULES]
      elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.attr not in PUBLIC_PRIVATES
            and not (isinstance(node.value, ast.Name)
                     and node.value.id in OWNERS)):
        # `x._name` on anything but self/cls, unless the module defines it.
        defined = {n.name for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        if node.attr not in defined:
          offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                           f".{node.attr}")
  assert offenders == []


def test_only_bll_jax_parallel_builds_meshes_and_names_their_axes():
  offenders = []
  for name, path in MODULES.items():
    if MESH_PACKAGE in path.parents:
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      used = (node.attr if isinstance(node, ast.Attribute) else
              node.id if isinstance(node, ast.Name) else None)
      if used in MESH_NAMES:
        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {used}")
      if isinstance(node, ast.Subscript) and isinstance(
          node.slice, ast.Constant) and node.slice.value in AXES and (
              isinstance(node.value, ast.Attribute)
              and node.value.attr == "shape"):
        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                         f"shape[{node.slice.value!r}]")
  assert offenders == []
