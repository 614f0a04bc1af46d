"""The record a :class:`~hgq_fpga.constraints.ResourceBudget` keeps of its exact checks, and its messages.

:class:`CheckLog` holds ``history`` (one dict per check: :data:`HISTORY_COLUMNS`
plus the monitored metric), writes the check into Keras's ``logs`` (``lut``,
``dsp``, ``budget_lambda``, ``budget_feasible``, ``feasible_<monitor>``) and
keeps the best feasible epoch's weights.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any, Callable, Iterator

import keras
import numpy as np

from ..resources import ResourceReport
from .budget_result import budget_text
from .repair import within_budget

__all__ = ["CHECK_SHARE", "CheckClock", "CheckLog", "check_due", "excess_text", "first_input", "rescale_due", "say",
           "start_line"]

#: with ``check_every="auto"``, the exact checks take at most this share of the training time (the epochs
#: after the first)
CHECK_SHARE = 0.1

_log = logging.getLogger("hgq_fpga.constraints")


def say(message: str) -> None:
    """Print like Keras: to stdout, or to logging when Keras's interactive logging is off."""
    if keras.config.is_interactive_logging_enabled():
        print(message, flush=True)
    else:
        _log.info(message)


def first_input(x: Any) -> Any:
    """The first input's array (``x`` is one array, or a list of them for several inputs)."""
    return x[0] if isinstance(x, list) else x


class CheckLog:
    """The checks of one ``fit`` (see the module docstring)."""

    def __init__(self, lut: float | None, dsp: int | None, monitor: str, mode: str, log_feasible: bool) -> None:
        self.lut, self.dsp = lut, dsp
        self.monitor, self.mode, self.log_feasible = monitor, mode, log_feasible
        self.history: list[dict[str, Any]] = []
        #: (metric, epoch, weights) of the best feasible check so far
        self.best: tuple[float, int, list[np.ndarray]] | None = None

    def record(self, model: Any, epoch: int, phase: str, report: ResourceReport, logs: dict,
               budget_lambda: float | None = None) -> dict[str, Any]:
        """Keep the check in ``history``, log it for Keras, and track the best feasible epoch."""
        feasible = within_budget(report, self.lut, self.dsp)
        value = logs.get(self.monitor)
        record: dict[str, Any] = {"epoch": epoch, "phase": phase, "lut": report.lut, "dsp": report.dsp,
                                  "feasible": feasible, "projected_lut": None}
        if value is not None:
            record[self.monitor] = float(value)
        self.history.append(record)
        if self.lut is not None:
            logs["lut"] = int(round(report.lut))
        if self.dsp is not None:
            logs["dsp"] = int(report.dsp)
        if budget_lambda is not None:
            logs["budget_lambda"] = budget_lambda
        if self.log_feasible:
            logs["budget_feasible"] = int(feasible)
            if value is not None:
                logs[f"feasible_{self.monitor}"] = float(value) if feasible else (
                    -np.inf if self.mode == "max" else np.inf)
        if value is not None:
            better = self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])
            if feasible and better:
                self.best = (float(value), epoch, model.get_weights())
        elif feasible:  # no metric: the latest feasible epoch
            self.best = (0.0, epoch, model.get_weights())
        return record


def excess_text(report: ResourceReport, lut: float | None, dsp: int | None) -> str:
    """``"120 LUTs"``, ``"2 DSPs"`` or both: how far over the budget."""
    parts = []
    if lut is not None and report.lut > lut:
        parts.append(f"{math.ceil(report.lut - lut)} LUTs")
    if dsp is not None and report.dsp > dsp:
        parts.append(f"{report.dsp - dsp} DSPs")
    return " and ".join(parts)


def start_line(start: ResourceReport, lut: float | None, dsp: int | None, latency: int | None, method: str,
               phases: tuple[int, int, int], outside: bool = False, anneal: int = 0) -> str:
    """The budget, the starting cost, the schedule (``anneal``: the last epochs that anneal the
    learning rate), and what the shown loss includes (``outside``: the cost is read outside the
    training step, and the loss is the task's)."""
    over = not within_budget(start, lut, dsp)
    ratio = start.lut / lut if lut else 1.0
    if outside:
        term = ""
    elif method == "primal_dual":
        term = "lambda * LUT/budget (lambda starts at 0 and grows while the model is over)"
    elif over:
        term = f"LUT/budget (now {ratio:.1f}) in every step over the budget"
    else:
        term = "LUT/budget (at least 1) in any step that goes over the budget"
    warm, bits, fine = phases
    plan = "" if not (warm or fine) else (
        f" Epochs: {warm} warm-up (bits as they start), {bits} learning bits, {fine} fine-tuning the weights "
        f"(bits frozen).")
    if anneal:
        plan += f" The learning rate anneals over the last {anneal} epoch{'s' if anneal > 1 else ''} (half cosine)."
    loss = (f"The training loss includes {term} while the bits learn; val_loss is the task loss alone." if term
            else "The training loss is the task loss (the bits step down after a batch that ends over the budget; "
                 "LUT/budget is added only where a step cannot help).")
    return (f"budget: {budget_text(lut, dsp, latency)}; the model starts at LUT {start.lut:.0f}, "
            f"DSP {start.dsp} ({'over' if over else 'within'}).{plan} {loss}")


class CheckClock:
    """The time of a budgeted training's epochs (``train``) and of its exact estimates (``checks``).

    Every exact estimate taken during training is check time, the ones inside an epoch too
    (the step rule's recalibrations: 1.3 s each for a 64-256-256-10 MLP, whose JAX epoch takes
    25 ms, had counted as training time and let another check follow the epoch);
    ``check_every="auto"`` checks while ``checks <= CHECK_SHARE * steady``, ``steady`` being the
    epochs' time after the first. The first epoch traces and compiles the training step (1-2 s on
    JAX, 40-130 epochs of a small model): counted, it let the checks take twice the later epochs'
    time in a 20-epoch fit once they had become cheap (12 checks for the JAX digits MLP's 20 epochs
    of 15 ms, BENCHMARKS.md, thirtieth session), where the share promises a tenth."""

    def __init__(self) -> None:
        self.train = self.checks = self.steady = 0.0
        self._t0 = self._inside = 0.0
        self._epochs = 0

    def start_epoch(self) -> None:
        self._t0, self._inside = time.perf_counter(), 0.0

    def end_epoch(self) -> None:
        """The epoch's time, less its exact estimates, is training time."""
        spent = time.perf_counter() - self._t0 - self._inside
        self.train += spent
        if self._epochs:
            self.steady += spent
        self._epochs += 1
        self.checks += self._inside
        self._inside = 0.0

    def inside(self, estimate: Callable[[], Any]) -> Any:
        """``estimate()`` in the middle of an epoch, timed as check time."""
        t0 = time.perf_counter()
        try:
            return estimate()
        finally:
            self._inside += time.perf_counter() - t0

    @contextlib.contextmanager
    def check(self) -> Iterator[None]:
        """Time a check (between epochs)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.checks += time.perf_counter() - t0

    @property
    def allows_check(self) -> bool:
        return self.checks <= CHECK_SHARE * self.steady


def check_due(epoch: int, phases: tuple[int, int, int], check_every: int | str, clock: CheckClock) -> bool:
    """Whether an exact check follows ``epoch`` (from 0; ``phases``: the epochs of the warm-up, bits
    and fine-tune; see :class:`~hgq_fpga.constraints.ResourceBudget`'s ``check_every``; the last
    epoch, always checked, is the caller's): the bits phase's end always, the warm-up never."""
    warm, bits, _ = phases
    if epoch + 1 == warm + bits:
        return True
    if epoch < warm:
        return False
    if check_every == "auto":
        return clock.allows_check
    return (epoch + 1) % int(check_every) == 0


def rescale_due(epoch: int, phases: tuple[int, int, int], check_every: int | str) -> bool:
    """Whether the exact estimate calibrates the step's cost after ``epoch`` (not a check: nothing
    recorded or projected): at the warm-up's end, and with ``check_every="auto"`` two thirds into the
    bits phase, a third of it left for the rule to reach the budget on the exact scale (with none
    between the bits phase's start and its end, the 20-epoch digits MLP's ended over, projected)."""
    warm, bits, _ = phases
    return epoch + 1 == warm or (check_every == "auto" and epoch >= warm and epoch + 1 == warm + (2 * bits) // 3)
