"""Helpers shared by the experiment scripts.

* :mod:`~experiments.lib.results` -- where a run's summary JSON goes, writing
  it, and writing a benchmark's report.
* :mod:`~experiments.lib.overrides` -- `--set field=value` read by the
  field's type, and overrides written back as text.
* :mod:`~experiments.lib.models` -- the benchmarks' engines (a network in 4
  blocks, `bll` or `bp`) and their random batches.
* :mod:`~experiments.lib.timing` -- :func:`~experiments.lib.timing.timed`,
  a call's time over repetitions.
* :mod:`~experiments.lib.memory` -- peak resident memory and the sampler of
  the bytes alive on the devices.
* :mod:`~experiments.lib.machine` -- the names of the CPU and the device.
"""
