"""bll_jax.parallel.mesh: stage-major grids, each stage's devices on one
host where they fit (8 fake CPU devices; 2 processes of 4 for the hosts)."""

import json
import os
import subprocess
import sys

import numpy as np

from bll_jax.cli import launch
from bll_jax.parallel import mesh as mesh_lib

# Two processes of 4 fake CPU devices each: where do the stages land?
WORKER = """
import json, os, sys
os.environ["JAX_NUM_CPU_DEVICES"] = "4"
import jax
import numpy as np
from bll_jax.parallel import mesh as mesh_lib
jax.distributed.initialize(f"127.0.0.1:{sys.argv[2]}", num_processes=2,
                           process_id=int(sys.argv[1]))
mesh = mesh_lib.make_mesh(mesh_lib.MeshSpec(4, 2), 4)
grid = np.asarray(mesh.devices)
print(json.dumps([[int(d.process_index) for d in grid[:, s]]
                  for s in range(grid.shape[1])]))
"""


def test_stages_take_consecutive_devices():
  mesh = mesh_lib.make_mesh(mesh_lib.MeshSpec(2, 4), 4)
  ids = [[d.id for d in np.asarray(mesh.devices)[:, s]] for s in range(4)]
  assert ids == [[0, 1], [2, 3], [4, 5], [6, 7]]
  assert mesh_lib.describe(mesh)["devices"] == ids


def test_a_stage_fits_on_one_host_so_its_all_reduce_stays_there(tmp_path):
  """Two hosts of 4 devices, mesh data=4,block=2: each stage's 4 data
  devices are one process's (they were split 2 + 2 over both before)."""
  port = launch.free_port_block(1)
  env = {k: v for k, v in os.environ.items()
         if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(i),
                               str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
  outputs = [w.communicate(timeout=180) for w in workers]
  for w, (out, err) in zip(workers, outputs):
    assert w.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1]) == [[0, 0, 0, 0],
                                                        [1, 1, 1, 1]]
