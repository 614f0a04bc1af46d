"""``hgq_fpga.sweep``: train architectures x LUT budgets x seeds, in parallel,
resumably, into one folder.

Example (8 trials on a local pool of 2 processes)::

    import hgq_fpga
    result = hgq_fpga.sweep(
        "mlp", "digits", "out/sweep",
        architectures={"small": {"widths": [16, 10]}, "wide": {"widths": [32, 32, 10]}},
        budgets=[1500, 4000], seeds=[0, 1], epochs=10, workers=2)
    result.rows[0]["accuracy"], result.rows[0]["lut"]
    result.to_pandas()                # one row per trial

The same call again runs nothing (every trial is stored); with a new budget
added it runs only that budget's trials. ``runner="ray"`` runs the trials as
Ray tasks on the cluster at ``address`` (or ``RAY_ADDRESS``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .folder import SweepFolder
from .runners import Outcome, run_tasks
from .spec import SweepSpec, Trial, build_name, data_fingerprint, resolve_build
from .trial import run_trial, thread_env

__all__ = ["SweepError", "SweepResult", "load_sweep_data", "sweep"]


class SweepError(RuntimeError):
    """Some trials failed (the others are stored; re-running the sweep retries the failed ones)."""


@dataclass
class SweepResult:
    """What a sweep call did, and the folder's table.

    Attributes:
        path: the sweep folder.
        rows: one dict per stored trial (this call's and earlier ones'), see
            :data:`~hgq_fpga.sweeps.folder.RESULT_COLUMNS`.
        ran: keys of the trials this call ran and stored.
        skipped: keys of the trials that were already stored.
        failed: ``{key: error text}`` of the trials that failed in this call.
        files: the tables and the plot written.
    """

    path: Path
    rows: list[dict[str, Any]]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"SweepResult({self.path}: {len(self.rows)} trial(s) stored; this call ran {len(self.ran)}, "
                f"skipped {len(self.skipped)}, {len(self.failed)} failed)")

    def to_pandas(self) -> Any:
        """The rows as a ``pandas.DataFrame``."""
        from ..tables import Column, to_dataframe

        keys = dict.fromkeys(k for r in self.rows for k in r)
        return to_dataframe([Column(k, k) for k in keys], self.rows)

    def _repr_html_(self) -> str:
        from ..tables import Column, html_table

        cols = [Column("trial", "trial"), Column("budget_lut", "budget", ".0f"), Column("lut", "LUT", ".0f"),
                Column("dsp", "DSP", "d"), Column("accuracy", "accuracy", ".4f"), Column("feasible", "within"),
                Column("attempts", "attempts", "d"), Column("seconds", "s", ".1f")]
        return html_table(cols, self.rows, caption=repr(self))


def load_sweep_data(data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, x_test, y_test)`` from ``"digits"``, ``"digits-image"``, a
    :class:`~hgq_fpga.datasets.Split`, or a 4-tuple of arrays."""
    from ..datasets import digits

    if isinstance(data, str):
        if data not in ("digits", "digits-image"):
            raise ValueError(f"data must be 'digits', 'digits-image' or (x, y, x_test, y_test); received {data!r}")
        data = digits(image=data == "digits-image")
    if not isinstance(data, Sequence) or len(data) != 4:
        raise ValueError(f"data must be (x, y, x_test, y_test) arrays; received {type(data).__name__}")
    x, y, xt, yt = (np.asarray(a) for a in data)
    if len(x) != len(y) or len(xt) != len(yt) or not len(x) or not len(xt):
        raise ValueError(f"data: x and y (and x_test and y_test) need the same non-zero length; received "
                         f"{len(x)}, {len(y)}, {len(xt)}, {len(yt)}")
    return x, y, xt, yt


def sweep(
    build: str | Callable[..., Any], data: Any, output_dir: str | os.PathLike, *,
    budgets: Sequence[float | None], epochs: int, architectures: Mapping[str, Mapping[str, Any]] | None = None,
    seeds: Sequence[int] = (0,), batch_size: int = 32, learning_rate: float = 3e-3, method: str = "constraint",
    budget_options: Mapping[str, Any] | None = None, runner: str = "local", workers: int | None = None,
    cpus_per_trial: float = 1, gpus_per_trial: float = 0, address: str | None = None, retries: int = 2,
    overwrite: bool = False, progress: bool = True, raise_on_failure: bool = True,
) -> SweepResult:
    """Train every architecture at every LUT budget with every seed; store each trial in ``output_dir``.

    A trial: ``keras.utils.set_random_seed(seed)``, build, ``fit`` with
    :class:`~hgq_fpga.ResourceBudget` (``lut=budget``; none for ``None``), the exact
    estimate, and the emulated firmware's accuracy on the test data (argmax).

    Args:
        build: ``"mlp"``, ``"cnn"``, ``"package.module:function"`` or a module-level
            function, called as ``build(**architectures[name])``.
        data: ``"digits"``, ``"digits-image"`` or ``(x, y, x_test, y_test)``.
        output_dir: the sweep folder (:mod:`hgq_fpga.sweeps.folder`); an existing one resumes.
        budgets: LUT budgets; ``None`` trains without a budget (a reference point).
        epochs, batch_size, learning_rate: of the training.
        architectures: ``{name: options for build}``; default ``{"model": {}}``.
        seeds: one trial per seed.
        method, budget_options: :class:`~hgq_fpga.ResourceBudget`'s rule and other arguments.
        runner: ``"local"`` (a pool of processes), ``"ray"`` or ``"inline"`` (this process).
        workers: ``local``: processes (default: CPUs // cpus_per_trial).
        cpus_per_trial, gpus_per_trial: each trial's resources (its math libraries' threads).
        address: ``ray``: the cluster (default ``RAY_ADDRESS``; else a local Ray for this call).
        retries: more attempts for a trial whose worker died.
        overwrite: start over when ``output_dir`` holds a sweep with other settings.
        progress: a progress bar over trials (stderr).
        raise_on_failure: raise :class:`SweepError` at the end if a trial failed (the others are stored).
    """
    spec, arrays, folder = _open(build, data, output_dir, runner, overwrite, workers, retries, budgets=list(budgets),
                                 epochs=epochs,
                                 architectures=dict(architectures or {"model": {}}), seeds=list(seeds),
                                 batch_size=batch_size, learning_rate=learning_rate, method=method,
                                 budget_options=dict(budget_options or {}))
    done, trials = folder.finished(), spec.trials()
    todo = [t for t in trials if t.key not in done]
    result = SweepResult(folder.path, [], skipped=[t.key for t in trials if t.key in done])
    shared = {"spec": spec, "data": arrays, "cpus": cpus_per_trial, "build": None if isinstance(build, str) else build}
    _run(shared, todo, folder, result, runner=runner, workers=workers, cpus=cpus_per_trial, gpus=gpus_per_trial,
         address=address, retries=retries, progress=progress)
    result.rows = folder.rows()
    result.files = folder.write_tables(result.rows)
    plot = folder.write_plot(result.rows)
    result.files += [plot] if plot else []
    if result.failed and raise_on_failure:
        key, error = next(iter(result.failed.items()))
        raise SweepError(f"{len(result.failed)} of {len(todo)} trial(s) failed (the others are stored in "
                         f"{folder.path}; run the sweep again to retry the failed ones). First, {key}: "
                         f"{error.splitlines()[0]}")
    return result


def _open(build: str | Callable[..., Any], data: Any, output_dir: str | os.PathLike, runner: str, overwrite: bool,
          workers: int | None, retries: int, **settings: Any) -> tuple[SweepSpec, tuple[np.ndarray, ...], SweepFolder]:
    """Check everything a trial would trip over, then open the folder: the spec, the data, the folder."""
    from ..startup import import_keras_quietly
    from .runners import check_runner

    check_runner(runner, workers, retries)
    if runner == "ray":
        from .ray_runner import require_ray

        require_ray()
    if runner == "local" and getattr(build, "__module__", None) == "__main__":
        raise ValueError(f"build={build_name(build)} is defined in the script being run (__main__), which the "
                         f"worker processes of runner='local' cannot import; move it into a module, or use "
                         f"runner='inline' (this process) or runner='ray'")
    import_keras_quietly()
    arrays = load_sweep_data(data)
    spec = SweepSpec(build=build_name(build), data=data_fingerprint(arrays), **settings)
    _check_here(spec, build, arrays)
    folder = SweepFolder(output_dir)
    folder.open(spec, overwrite=overwrite)
    return spec, arrays, folder


def _check_here(spec: SweepSpec, build: str | Callable[..., Any], arrays: tuple[np.ndarray, ...]) -> None:
    """The errors every trial would raise, raised once here: an unknown builder, bad budget options."""
    from ..constraints.budget import ResourceBudget

    if isinstance(build, str):
        resolve_build(build)
    budget = next((b for b in spec.budgets if b is not None), None)
    if budget is not None:
        ResourceBudget(lut=budget, calibration_data=arrays[0][:1], method=spec.method, verbose=0,
                       **spec.budget_options)


def _run(shared: dict[str, Any], todo: list[Trial], folder: SweepFolder, result: SweepResult, *, runner: str,
         workers: int | None, cpus: float, gpus: float, address: str | None, retries: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="trials", unit="trial", disable=not progress or not todo)

    def on_result(key: str, out: Outcome) -> None:
        if out.ok:
            folder.store(key, out.value, out.attempts)
            result.ran.append(key)
        else:
            result.failed[key] = out.error or "failed"
        bar.update(1)
        bar.set_postfix_str(f"{len(result.failed)} failed" if result.failed else "")

    try:
        run_tasks(run_trial, [(t.key, (t,)) for t in todo], shared=shared, on_result=on_result, runner=runner,
                  workers=workers, retries=retries, cpus=cpus, gpus=gpus, address=address, env=thread_env(cpus))
    finally:
        bar.close()
