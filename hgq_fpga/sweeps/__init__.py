"""Sweeps over architectures, LUT budgets and seeds, and syntheses of their
results, on this machine or on a Ray cluster; resumable and fault-tolerant.

* :func:`sweep` -- train the trials into a sweep folder (:mod:`.folder`);
* :func:`synthesize_many` -- synthesize the stored models (yosys, or Vivado
  where installed) in parallel, and add the counts to the sweep's table;
* :mod:`.runners` -- the runners behind both: ``"inline"``, ``"local"``
  (a pool of processes) and ``"ray"`` (``pip install 'hgq_fpga[cluster]'``).
"""

from __future__ import annotations

from .core import SweepError, SweepResult, load_sweep_data, sweep
from .folder import RESULT_COLUMNS, SweepConflictError, SweepFolder
from .runners import RUNNERS, Outcome, run_tasks
from .spec import SweepSpec, Trial
from .synth import SYNTH_TOOLS, synthesize_many

__all__ = [
    "RESULT_COLUMNS", "RUNNERS", "Outcome", "SweepConflictError", "SweepError", "SweepFolder", "SweepResult",
    "SYNTH_TOOLS", "SweepSpec", "Trial", "load_sweep_data", "run_tasks", "sweep", "synthesize_many",
]
