"""One process per block on this machine: `bll-train --processes N ...`.

    python -m bll_jax.cli.launch -n 2 -- --preset mnist1d --schedule pipelined
    bll-train --processes 2 --preset mnist1d --schedule pipelined

starts `N` worker processes, each pinned to its own core
(`os.sched_setaffinity`) with XLA's CPU thread pools cut to one thread, each
calling `jax.distributed.initialize` on a free localhost port with CPU
collectives over gloo and cross-process transfers over sockets. The mesh
axis `block` then spans the processes (`--mesh block=N` unless given), one
stage per process: exactly the program a cluster's launcher would start on
several hosts (docs/parallel.md), here on one machine.

The launcher checks its input before any worker starts (more processes than
blocks or than cores, a port in use: one line each, exit status 2), watches
the workers, and if one dies (a crash, SIGKILL) stops the others within
seconds with one line naming the lost worker (exit status 1). Orbax commits
checkpoints atomically, so the last one stays intact and `--resume` continues
from it. Workers other than 0 write their output to `<workdir>/worker-<i>.log`;
`<workdir>/workers.json` lists their pids and cores, and after a clean run
`<workdir>/launch.json` holds each worker's affinity, CPU and wall time.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from typing import Sequence

from bll_jax import config as config_lib
from bll_jax.config import flags

GRACE_SECONDS = 5.0
ENTRY = "bll_jax.cli:main"


class LaunchError(ValueError):
  """Bad launcher input, reported in one line before any worker starts."""


def _port_free(port: int) -> bool:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind(("127.0.0.1", port))
    except OSError:
      return False
  return True


def free_port_block(count: int) -> int:
  """A port `p` with `p .. p + count - 1` all free."""
  for _ in range(100):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
      s.bind(("127.0.0.1", 0))
      base = s.getsockname()[1]
    if base + count < 65536 and all(_port_free(base + i)
                                    for i in range(count)):
      return base
  raise LaunchError(f"could not find {count} consecutive free ports")


def _num_blocks(train_args: Sequence[str]) -> int:
  config, _, _ = flags.config_from_args(list(train_args))
  return config_lib.num_blocks(config)


def check(num_processes: int, cores: Sequence[int], port: int | None,
          train_args: Sequence[str], num_blocks: int | None = None
          ) -> tuple[list[int], int]:
  """Validates the launch; returns `(cores, port)`.

  Raises:
    LaunchError: one line naming the problem.
  """
  if num_processes < 1:
    raise LaunchError(f"processes must be >= 1, got {num_processes}")
  available = sorted(os.sched_getaffinity(0))
  if num_processes > len(available):
    raise LaunchError(
        f"{num_processes} processes need {num_processes} cores, but this "
        f"process may run on {len(available)} ({available}); one core per "
        "worker is the point")
  cores = list(cores) if cores else available[:num_processes]
  if len(cores) != num_processes or len(set(cores)) != num_processes or any(
      c not in available for c in cores):
    raise LaunchError(f"cores must be {num_processes} distinct cores of "
                      f"{available}, got {list(cores)}")
  blocks = _num_blocks(train_args) if num_blocks is None else num_blocks
  if num_processes > blocks:
    raise LaunchError(f"{num_processes} processes for {blocks} blocks: one "
                      f"block per process at most (use --processes <= "
                      f"{blocks})")
  # The coordinator's port, then one port per worker for transfers.
  if port is None:
    port = free_port_block(num_processes + 1)
  else:
    busy = [p for p in range(port, port + num_processes + 1)
            if not _port_free(p)]
    if busy:
      raise LaunchError(f"port {busy[0]} is in use (the launcher needs ports "
                        f"{port}..{port + num_processes}); choose another "
                        "--port or leave it out")
  return cores, port


def worker_environment(core: int) -> dict[str, str]:
  """The environment of a worker pinned to `core`: one XLA CPU thread.

  XLA's CPU runtime sizes its thread pool from the process's CPU affinity,
  which the worker sets to `core` before JAX starts (:func:`run_worker`);
  `--xla_cpu_multi_thread_eigen=false` keeps Eigen's kernels on one thread.
  (XLA has no `intra_op_parallelism_threads` flag: given with `--` it
  aborts the process, without it the word is ignored.)
  """
  env = dict(os.environ)
  env.pop("JAX_NUM_CPU_DEVICES", None)
  env["JAX_PLATFORMS"] = "cpu"
  xla_flags = env.get("XLA_FLAGS", "")
  env["XLA_FLAGS"] = (xla_flags
                      + " --xla_cpu_multi_thread_eigen=false").strip()
  for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    env[name] = "1"
  env["BLL_WORKER_CORE"] = str(core)
  return env


def _workdir(train_args: Sequence[str]) -> str:
  config, _, _ = flags.config_from_args(list(train_args))
  return config.workdir or config_lib.default_workdir(config)


def launch(num_processes: int, train_args: Sequence[str],
           cores: Sequence[int] = (), port: int | None = None,
           entry: str = ENTRY, num_blocks: int | None = None,
           workdir: str | None = None) -> int:
  """Starts the workers and waits; returns the exit status (0, 1 or 2).

  Args:
    num_processes: workers, one core each.
    train_args: the `bll-train` command line of every worker.
    cores: the cores (default: the first `num_processes` this process may
      use).
    port: the coordinator's port (default: a free one).
    entry: `module:function` each worker runs with `train_args` (default
      `bll-train` itself; benchmarks run their own, and then give
      `num_blocks` and `workdir`, which are otherwise read from the
      `bll-train` command line).
  """
  try:
    cores, port = check(num_processes, cores, port, train_args, num_blocks)
  except LaunchError as e:
    print(f"bll-train: error: {e}", file=sys.stderr)
    return 2
  train_args = list(train_args)
  if entry == ENTRY:
    if not any(a == "--mesh" or a.startswith("--mesh=") for a in train_args):
      train_args += ["--mesh", f"block={num_processes}"]
    workdir = _workdir(train_args)
    if not any(a == "--workdir" or a.startswith("--workdir=")
               for a in train_args):
      train_args += ["--workdir", workdir]
  elif workdir is None:
    raise ValueError("a custom entry needs its workdir")
  os.makedirs(workdir, exist_ok=True)
  workers = []
  for i, core in enumerate(cores):
    command = [sys.executable, "-m", "bll_jax.cli.launch", "--worker", str(i),
               "--num-processes", str(num_processes), "--port", str(port),
               "--entry", entry, "--workdir", workdir, "--", *train_args]
    out = None if i == 0 else open(
        os.path.join(workdir, f"worker-{i}.log"), "w")
    workers.append((subprocess.Popen(command, env=worker_environment(core),
                                     stdout=out, stderr=subprocess.STDOUT
                                     if out else None,
                                     preexec_fn=_die_with_parent), core, out))
  with open(os.path.join(workdir, "workers.json"), "w") as f:
    json.dump([{"index": i, "pid": p.pid, "core": c}
               for i, (p, c, _) in enumerate(workers)], f)
  status = _watch(workers)
  if status == 0:
    _report(workdir, num_processes)
  return status


def _die_with_parent() -> None:
  """In a worker, before it runs: SIGKILL when the launcher dies (Linux).

  A launcher killed outright (SIGKILL, a job scheduler's timeout) cannot
  stop its workers; without this they would wait on their collectives
  forever.
  """
  try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PDEATHSIG
  except (OSError, AttributeError):
    pass


def _report(workdir: str, num_processes: int) -> None:
  """Collects the workers' own measurements into `launch.json`."""
  stats = []
  for i in range(num_processes):
    path = os.path.join(workdir, f"worker-{i}.json")
    if os.path.exists(path):
      with open(path) as f:
        stats.append(json.load(f))
  if not stats:
    return
  with open(os.path.join(workdir, "launch.json"), "w") as f:
    json.dump({"workers": stats}, f, indent=2)
  usage = ", ".join(f"{w['cpu_seconds'] / max(w['wall_seconds'], 1e-9):.2f}"
                    for w in stats)
  print(f"{len(stats)} workers, cores {[w['affinity'] for w in stats]}; "
        f"CPU time / wall time per worker: {usage}")


def _describe(code: int) -> str:
  if code < 0:
    return f"killed by {signal.Signals(-code).name}"
  return f"exited with status {code}"


def _watch(workers) -> int:
  """Waits for all; on the first failure stops the rest and names it."""
  try:
    while True:
      codes = [p.poll() for p, _, _ in workers]
      failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
      if failed:
        # A worker killed by a signal is the cause; peers that exit with an
        # error in the same poll interval are its consequence (their
        # collectives lost a partner).
        i, code = min(failed, key=lambda f: (f[1] > 0, f[0]))
        process, core, _ = workers[i]
        _stop([p for j, (p, _, _) in enumerate(workers) if j != i])
        # Printed after the others are stopped, so that no worker's traceback
        # (worker 0 shares this stderr) can split the line.
        print(f"bll-train: error: worker {i} (pid {process.pid}, core {core}) "
              f"{_describe(code)}; stopped the other workers",
              file=sys.stderr, flush=True)
        return 1
      if all(c == 0 for c in codes):
        return 0
      time.sleep(0.1)
  except KeyboardInterrupt:
    _stop([p for p, _, _ in workers])
    return 1
  finally:
    for _, _, out in workers:
      if out:
        out.close()


def _stop(processes) -> None:
  for p in processes:
    if p.poll() is None:
      p.send_signal(signal.SIGTERM)
  deadline = time.monotonic() + GRACE_SECONDS
  for p in processes:
    try:
      p.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def run_worker(index: int, num_processes: int, port: int,
               train_args: Sequence[str], entry: str = ENTRY,
               workdir: str = ".") -> int:
  """Inside a worker: pin, initialise the distributed runtime, train.

  Writes `<workdir>/worker-<index>.json`: its core, its affinity, and its
  CPU and wall time, so that "one core each" is measured, not assumed.
  """
  faulthandler.enable()           # a crashing worker leaves a traceback
  start = time.perf_counter()
  before = resource.getrusage(resource.RUSAGE_SELF)
  core = int(os.environ.get("BLL_WORKER_CORE", index))
  os.sched_setaffinity(0, {core})
  import jax
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.config.update("jax_cross_host_transfer_socket_address",
                    f"127.0.0.1:{port + 1 + index}")
  jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=num_processes,
                             process_id=index, heartbeat_timeout_seconds=10)
  module, _, function = entry.partition(":")
  status = getattr(importlib.import_module(module), function)(list(train_args))
  usage = resource.getrusage(resource.RUSAGE_SELF)
  record = {"index": index, "pid": os.getpid(), "core": core,
            "affinity": sorted(os.sched_getaffinity(0)),
            # Since pinning: the start-up before it ran on any core.
            "cpu_seconds": (usage.ru_utime + usage.ru_stime
                            - before.ru_utime - before.ru_stime),
            "wall_seconds": time.perf_counter() - start,
            "max_rss_mib": usage.ru_maxrss / 1024}
  with open(os.path.join(workdir, f"worker-{index}.json"), "w") as f:
    json.dump(record, f)
  return status


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if "--" in argv:
    split = argv.index("--")
    own, train_args = argv[:split], argv[split + 1:]
  else:
    own, train_args = argv, []
  parser = argparse.ArgumentParser(
      prog="python -m bll_jax.cli.launch",
      description="Run bll-train as one process per block on this machine.")
  parser.add_argument("-n", "--processes", type=int, default=2)
  parser.add_argument("--cores", default="",
                      help="comma-separated cores (default: the first N)")
  parser.add_argument("--port", type=int, default=None,
                      help="coordinator port (default: a free one)")
  parser.add_argument("--entry", default=ENTRY,
                      help="module:function each worker runs (default "
                           "bll-train)")
  parser.add_argument("--worker", type=int, default=None,
                      help=argparse.SUPPRESS)
  parser.add_argument("--num-processes", type=int, default=None,
                      help=argparse.SUPPRESS)
  parser.add_argument("--workdir", default=".", help=argparse.SUPPRESS)
  args = parser.parse_args(own)
  if args.worker is not None:
    return run_worker(args.worker, args.num_processes, args.port, train_args,
                      args.entry, args.workdir)
  cores = [int(c) for c in args.cores.split(",") if c]
  return launch(args.processes, train_args, cores, args.port, args.entry)


if __name__ == "__main__":
  sys.exit(main())
