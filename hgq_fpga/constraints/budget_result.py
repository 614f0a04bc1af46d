"""What :class:`~hgq_fpga.constraints.ResourceBudget` hands back
(:class:`BudgetResult`), and the exact estimates it takes during training
without disturbing the model's training-time calibration state
(:func:`exact_estimate`, :func:`minimum_cost`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from ..calibration import TRACKED
from ..resources import ResourceReport, estimate
from ..tables import Column, key_value_table, to_dataframe
from .hook import hooked_layers, model_state
from .repair import RepairResult, recalibrate, within_budget

__all__ = ["HISTORY_COLUMNS", "BudgetResult", "exact_estimate", "minimum_cost"]

#: the columns of :meth:`BudgetResult.to_pandas` (and the keys of each ``history`` record)
HISTORY_COLUMNS = ("epoch", "lut", "dsp", "feasible", "projected_lut")


def budget_text(lut: float | None, dsp: int | None, latency: int | None = None) -> str:
    """``"LUT <= 1000, DSP <= 4, latency <= 3 cycles"`` (the parts that are set)."""
    parts = [f"{k} <= {v:g}" for k, v in (("LUT", lut), ("DSP", dsp)) if v is not None]
    return ", ".join(parts + ([f"latency <= {latency} cycles"] if latency is not None else []))


@dataclass(repr=False)
class BudgetResult:
    """The end of a budgeted training: the exact report and what the repair did.

    ``history``: one dict per check (see :data:`HISTORY_COLUMNS`, plus the
    monitored metric); ``best_epoch``: the restored epoch (from 0), if any;
    ``calibration``: what the exact estimates calibrated on: ``"calibration_data
    (N samples)"``, or ``"ranges tracked in training"`` (then calibrate on your
    data and estimate again before converting); ``sensitivities``: each layer's
    :class:`~hgq_fpga.constraints.sensitivity.LayerSensitivity` on the calibration data
    (None without it); ``train_seconds`` and ``check_seconds``: the time of the training
    epochs and of the exact estimates taken during training (the checks, the
    projections, the step rule's recalibrations and the warm-up's end; the time
    ``check_every="auto"`` keeps under 10% of the training time).
    In a notebook it shows as a small table; :meth:`to_pandas` gives the checks.
    """

    report: ResourceReport
    repair: RepairResult
    lut: float | None
    dsp: int | None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    calibration: str = "calibration_data"
    sensitivities: Any = None
    latency: int | None = None  # cycles of the RTL project (backend="rtl")
    train_seconds: float = 0.0
    check_seconds: float = 0.0

    @property
    def feasible(self) -> bool:
        """Whether the final exact estimate meets the budget."""
        return within_budget(self.report, self.lut, self.dsp, self.latency)

    def __str__(self) -> str:
        state = "within" if self.feasible else "OVER"
        best = f"; restored epoch {self.best_epoch + 1}" if self.best_epoch is not None else ""
        cycles = f", latency {self.report.latency_cycles} cycles" if self.report.latency_cycles is not None else ""
        text = (f"budget {budget_text(self.lut, self.dsp, self.latency)}: {state} -- LUT {self.report.lut:.0f}, "
                f"DSP {self.report.dsp}{cycles}{best}\n{self.repair}")
        if self.train_seconds > 0.0:
            text += f"\nexact estimates during training: {self.check_seconds:.1f} s, epochs {self.train_seconds:.1f} s"
        if self.sensitivities is not None:
            text += f"\n{self.sensitivities}"
        if self.calibration == TRACKED:
            text += (f"\nestimated with the {TRACKED} (no calibration_data): calibrate on your data "
                     f"(hgq_fpga.calibrate) and estimate again before converting")
        return text

    def __repr__(self) -> str:
        state = "within" if self.feasible else "OVER"
        repaired = f", repaired in {self.repair.rounds} round(s)" if self.repair.rounds else ""
        return (f"BudgetResult({state} {budget_text(self.lut, self.dsp, self.latency)}: LUT {self.report.lut:.0f}, "
                f"DSP {self.report.dsp}, {len(self.history)} check(s){repaired})")

    def _repr_html_(self) -> str:
        """A small table for notebooks."""
        best = "-" if self.best_epoch is None else f"{self.best_epoch + 1} (restored)"
        rows = [
            ("budget", budget_text(self.lut, self.dsp, self.latency)),
            ("result", "within the budget" if self.feasible else "OVER the budget"),
            ("LUT", f"{self.report.lut:.0f}"),
            ("DSP", str(self.report.dsp)),
            ("checks", f"{len(self.history)} ({sum(bool(h['feasible']) for h in self.history)} within, "
                       f"{sum(h.get('projected_lut') is not None for h in self.history)} projected)"),
            ("best epoch", best),
            ("repair", str(self.repair)),
            ("calibrated on", self.calibration),
        ]
        return key_value_table(rows, css_class="hgq-budget-result")

    def to_pandas(self) -> Any:
        """The checks as a ``pandas.DataFrame``, one row per checked epoch (``epoch`` from 0)."""
        keys = dict.fromkeys([*HISTORY_COLUMNS, *(k for h in self.history for k in h)])
        return to_dataframe([Column(k, k) for k in keys], self.history)


def snapshot(model: keras.Model) -> list[np.ndarray]:
    """The model's non-trainable state (calibration ranges, ...), not an attached budget hook's."""
    return [np.array(ops.convert_to_numpy(v)) for v in model_state(model)]


def restore(model: keras.Model, values: list[np.ndarray]) -> None:
    """Put back what :func:`snapshot` took."""
    for v, a in zip(model_state(model), values):
        v.assign(a)


def exact_estimate(model: keras.Model, x: Any, **kwargs: Any) -> ResourceReport:
    """The exact estimate of ``model`` calibrated on ``x`` (None: from the ranges tracked
    in training), leaving the model's calibration state as it was (for use during training)."""
    saved = snapshot(model)
    try:
        recalibrate(model, x)
        return estimate(model, **kwargs)
    finally:
        restore(model, saved)


def minimum_cost(model: keras.Model, x: Any, **kwargs: Any) -> ResourceReport:
    """The smallest non-trivial version of the architecture: every output of every
    layer keeps one weight, its largest, rounded to a power of two (no adders);
    everything else as it is. A budget below its estimate cannot be met."""
    layers = hooked_layers(model)
    saved = [np.array(ops.convert_to_numpy(layer.kernel)) for layer in layers]
    state = snapshot(model)
    try:
        for layer, w in zip(layers, saved):
            w2 = w.reshape(-1, w.shape[-1])
            keep = np.zeros_like(w2)
            j = np.arange(w2.shape[1])
            i = np.argmax(np.abs(w2), axis=0)
            big = w2[i, j]
            keep[i, j] = np.where(big != 0, np.sign(big) * np.exp2(np.round(np.log2(np.abs(big) + 1e-300))), 0)
            layer.kernel.assign(keep.reshape(w.shape).astype(w.dtype))
        recalibrate(model, x)
        return estimate(model, **kwargs)
    finally:
        for layer, w in zip(layers, saved):
            layer.kernel.assign(w)
        restore(model, state)
