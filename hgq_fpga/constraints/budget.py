"""``ResourceBudget``: train under a LUT/DSP budget, with a guarantee.

Two rules steer the bit-widths during ``model.fit``:

* ``method="constraint"`` (default; constraint-guided, after CGMQ,
  arXiv:2409.20138): after each batch, the differentiable LUT estimate
  (calibrated to the exact one) is compared with the budget. While it is
  within, the bits follow the task loss alone; while it is over, they follow
  the cost gradient alone (the weights always follow the task loss). No
  strength to tune.
* ``method="primal_dual"`` (after Hounie et al., arXiv:2210.15623): the loss
  is ``task + lambda * LUT / budget`` and ``lambda`` rises by
  ``dual_lr * (LUT / budget - 1)`` after each batch (never below 0).

Measured on the digits MLP at 5/10/20/50% budgets (BENCHMARKS.md): both
meet every budget and neither is consistently more accurate; the default is
the constraint-guided rule because it has no parameter at all.

The guarantee does not rest on either: at the end of training the model is
calibrated and its **exact** estimate checked; if it is over the budget, the
repair step (:func:`~hgq_fpga.constraints.repair_to_budget`) lowers bits
where they cost the least accuracy until it is within. A budget below what
the architecture can reach raises ``ValueError`` before training.

Training alone moves the bits by about one learning-rate step per batch,
which can be too slow for a tight budget; so an epoch that ends over the
budget is followed by a projection (``project=True``): the repair step is
applied and training goes on from the feasible point.

Per epoch (every ``check_every``) the exact estimate of the calibrated model is
logged as ``lut``, ``dsp`` and ``budget_feasible`` (History, progress bar,
TensorBoard), and ``feasible_<monitor>`` repeats the monitored metric for
feasible epochs only (worst value otherwise): give that to
``ModelCheckpoint(save_best_only=True)`` to choose checkpoints among feasible
models. With ``restore_best_feasible=True`` the callback itself restores the
best feasible epoch's weights at the end (before the final check).

Example:
    >>> budget = hgq_fpga.ResourceBudget(lut=20_000, calibration_data=x_train)  # doctest: +SKIP
    >>> model.fit(x_train, y_train, validation_split=0.2, epochs=60, callbacks=[budget])  # doctest: +SKIP
    >>> budget.result.report.lut <= 20_000                                        # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from ..calibration import calibrate, check_inputs
from ..resources import CostModel, ResourceReport, estimate
from .hook import CostHook, attach, detach, hooked_layers
from .repair import RepairResult, repair_to_budget, within_budget

__all__ = ["METHODS", "BudgetResult", "ResourceBudget", "minimum_cost"]

METHODS = ("constraint", "primal_dual")
#: projections aim at this fraction of the LUT budget
PROJECTION_MARGIN = 0.95


@dataclass
class BudgetResult:
    """The end of a budgeted training: the exact report and what the repair did."""

    report: ResourceReport
    repair: RepairResult
    lut: float | None
    dsp: int | None
    best_epoch: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return within_budget(self.report, self.lut, self.dsp)

    def __str__(self) -> str:
        budget = ", ".join(f"{k} <= {v:g}" for k, v in (("LUT", self.lut), ("DSP", self.dsp)) if v is not None)
        state = "within" if self.feasible else "OVER"
        best = f"; restored epoch {self.best_epoch + 1}" if self.best_epoch is not None else ""
        return (f"budget {budget}: {state} -- LUT {self.report.lut:.0f}, DSP {self.report.dsp}{best}\n"
                f"{self.repair}")


def _snapshot(model: keras.Model) -> list[np.ndarray]:
    return [np.array(ops.convert_to_numpy(v)) for v in model.non_trainable_variables]


def _restore(model: keras.Model, values: list[np.ndarray]) -> None:
    for v, a in zip(model.non_trainable_variables, values):
        v.assign(a)


def exact_estimate(model: keras.Model, x: Any, **kwargs: Any) -> ResourceReport:
    """The exact estimate of ``model`` calibrated on ``x``, leaving the model's
    calibration state as it was (for use during training)."""
    saved = _snapshot(model)
    try:
        calibrate(model, x)
        return estimate(model, **kwargs)
    finally:
        _restore(model, saved)


def minimum_cost(model: keras.Model, x: Any, **kwargs: Any) -> ResourceReport:
    """The smallest non-trivial version of the architecture: every output of every
    layer keeps one weight, its largest, rounded to a power of two (no adders);
    everything else as it is. A budget below its estimate cannot be met."""
    layers = hooked_layers(model)
    saved = [np.array(ops.convert_to_numpy(layer.kernel)) for layer in layers]
    state = _snapshot(model)
    try:
        for layer, w in zip(layers, saved):
            w2 = w.reshape(-1, w.shape[-1])
            keep = np.zeros_like(w2)
            j = np.arange(w2.shape[1])
            i = np.argmax(np.abs(w2), axis=0)
            big = w2[i, j]
            keep[i, j] = np.where(big != 0, np.sign(big) * np.exp2(np.round(np.log2(np.abs(big) + 1e-300))), 0)
            layer.kernel.assign(keep.reshape(w.shape).astype(w.dtype))
        calibrate(model, x)
        return estimate(model, **kwargs)
    finally:
        for layer, w in zip(layers, saved):
            layer.kernel.assign(w)
        _restore(model, state)


class ResourceBudget(keras.callbacks.Callback):
    """Keep a model within ``lut`` LUTs and ``dsp`` DSPs (see the module docstring).

    Args:
        lut, dsp: the budget (at least one).
        calibration_data: inputs to calibrate on (typically the training set or
            a few thousand samples of it): the exact estimate needs it.
        strategy, part, cost_model: as for :func:`hgq_fpga.estimate`.
        method: ``"constraint"`` or ``"primal_dual"``.
        dual_lr: step of ``lambda`` for ``primal_dual``.
        monitor, mode: the metric for choosing the best feasible epoch.
        check_every: epochs between exact checks (the last epoch is always checked).
        restore_best_feasible: restore the best feasible epoch's weights at the end.
        repair: run the repair step if the final model is over the budget
            (otherwise raise).
        project: at the end of an epoch (but the last) that ends over the
            budget, apply the repair step and train on from the result, so
            that the last epochs fine-tune a feasible model.
        verbose: 0 silent, 1 a line per check and the final result.

    After ``fit``: ``budget.result`` (:class:`BudgetResult`).
    """

    def __init__(
        self,
        lut: float | None = None,
        dsp: int | None = None,
        *,
        calibration_data: Any,
        strategy: str = "Latency",
        part: str = "xcvu13p-flga2577-2-e",
        cost_model: CostModel | None = None,
        method: str = "constraint",
        dual_lr: float = 0.05,
        monitor: str = "val_accuracy",
        mode: str = "max",
        check_every: int = 1,
        restore_best_feasible: bool = True,
        repair: bool = True,
        project: bool = True,
        verbose: int = 1,
    ) -> None:
        super().__init__()
        if lut is None and dsp is None:
            raise ValueError("ResourceBudget: give lut=, dsp= or both. Received: lut=None, dsp=None")
        for name, v in (("lut", lut), ("dsp", dsp)):  # numpy scalars are numbers too
            if v is not None and not (isinstance(v, numbers.Real) and not isinstance(v, bool)
                                      and math.isfinite(v) and v >= 0):
                raise ValueError(f"ResourceBudget: {name} must be a number >= 0. Received: {name}={v!r}")
        if dsp is not None and float(dsp) != int(dsp):
            raise ValueError(f"ResourceBudget: dsp counts whole DSP slices. Received: dsp={dsp!r}")
        if method not in METHODS:
            raise ValueError(f"ResourceBudget: method must be one of {METHODS}. Received: method={method!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"ResourceBudget: mode must be 'max' or 'min'. Received: mode={mode!r}")
        if int(check_every) < 1:
            raise ValueError(f"ResourceBudget: check_every must be >= 1. Received: check_every={check_every}")
        if calibration_data is None:
            raise ValueError("ResourceBudget: calibration_data is required (the exact estimate calibrates on it)")
        self.lut = None if lut is None else float(lut)
        self.dsp = None if dsp is None else int(dsp)
        self.x = calibration_data
        self.kwargs = {"strategy": strategy, "part": part, "cost_model": cost_model}
        self.method = method
        self.dual_lr = float(dual_lr)
        self.monitor, self.mode = monitor, mode
        self.check_every = int(check_every)
        self.restore_best_feasible = restore_best_feasible
        self.do_repair = repair
        self.project = project
        self._projections = 0
        self.verbose = verbose
        self.hook: CostHook | None = None
        self.result: BudgetResult | None = None
        self._lambda = 0.0
        self._last = 0.0
        self._dsp_over = False

    # -- setup ------------------------------------------------------------------
    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        if keras.backend.backend() != "tensorflow":
            raise NotImplementedError(
                f"ResourceBudget runs on the TensorFlow backend (the default); the current backend is "
                f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow."
            )
        if not hooked_layers(model):
            raise ValueError(f"ResourceBudget: model {model.name!r} has no QDense/QConv layer to budget")
        self.x = check_inputs(model, self.x, what="calibration_data")
        self.x = self.x if len(self.x) > 1 else self.x[0]
        if self.hook is None:
            self.hook = CostHook(1.0 / max(self.lut or 1.0, 1.0))
        attach(model, self.hook)

    def on_train_begin(self, logs: dict | None = None) -> None:
        floor = minimum_cost(self.model, self.x, **self.kwargs)
        if (self.lut is not None and self.lut < floor.lut) or (self.dsp is not None and self.dsp < floor.dsp):
            detach(self.model)
            raise ValueError(
                f"ResourceBudget: the budget (lut={self.lut}, dsp={self.dsp}) is below the smallest cost "
                f"this architecture can reach: {floor.lut:.0f} LUTs, {floor.dsp} DSPs (every output "
                f"keeping a single power-of-two weight). Raise the budget or use a smaller model."
            )
        self._best: tuple[float, int, list[np.ndarray]] | None = None
        self._history: list[dict[str, float]] = []
        self._check(epoch=-1)

    # -- steering ---------------------------------------------------------------
    def _soft(self) -> float:
        from ..quantizers.cost import model_luts

        return float(ops.convert_to_numpy(model_luts(self.model)))

    def _set_scale(self, exact_lut: float) -> None:
        soft = self._soft()
        rho = exact_lut / soft if soft > 0 and exact_lut > 0 else 1.0
        self.hook.scale.assign(rho / max(self.lut or soft * rho or 1.0, 1.0))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        c = self.hook.take() * float(ops.convert_to_numpy(self.hook.scale))  # ~ LUT / budget
        self._last = c
        if self.lut is None:
            c = 2.0 if self._dsp_over else 0.0
        if self.method == "constraint":
            over = c > 1.0 or self._dsp_over
            self.hook.weight.assign(1.0 if over else 0.0)
            self.hook.task_share.assign(0.0 if over else 1.0)
        else:
            self._lambda = max(0.0, self._lambda + self.dual_lr * (c - 1.0))
            self.hook.weight.assign(self._lambda)

    # -- checks -----------------------------------------------------------------
    def _check(self, epoch: int, logs: dict | None = None) -> ResourceReport:
        report = exact_estimate(self.model, self.x, **self.kwargs)
        self._set_scale(report.lut)
        self._dsp_over = self.dsp is not None and report.dsp > self.dsp
        feasible = within_budget(report, self.lut, self.dsp)
        if logs is not None:
            logs["lut"] = report.lut
            logs["dsp"] = float(report.dsp)
            logs["budget_feasible"] = float(feasible)
            logs["budget_lambda"] = float(ops.convert_to_numpy(self.hook.weight))
            value = logs.get(self.monitor)
            if value is not None:
                worst = -np.inf if self.mode == "max" else np.inf
                logs[f"feasible_{self.monitor}"] = float(value) if feasible else worst
                better = self._best is None or (value > self._best[0] if self.mode == "max" else value < self._best[0])
                if feasible and better:
                    self._best = (float(value), epoch, self.model.get_weights())
            elif feasible:  # no metric: the latest feasible epoch
                self._best = (0.0, epoch, self.model.get_weights())
            self._history.append({"epoch": epoch, "lut": report.lut, "dsp": report.dsp, "feasible": feasible})
        if self.verbose and epoch >= 0:
            print(f"  budget: LUT {report.lut:.0f}/{self.lut if self.lut is not None else '-'}, "
                  f"DSP {report.dsp}/{self.dsp if self.dsp is not None else '-'} "
                  f"({'feasible' if feasible else 'over'})")
        return report

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        last = epoch + 1 >= (self.params or {}).get("epochs", epoch + 1)
        if (epoch + 1) % self.check_every == 0 or last:
            report = self._check(epoch, logs)
            if self.project and not last and not within_budget(report, self.lut, self.dsp):
                self._project()

    def _project(self) -> None:
        """Lower bits until the exact estimate is within the budget (the repair
        step), then go on training from there; the training-time calibration
        state is kept."""
        saved = _snapshot(self.model)
        try:
            # a little below the budget, so that the next epoch's drift stays within it
            lut = None if self.lut is None else self.lut * PROJECTION_MARGIN
            done = repair_to_budget(self.model, self.x, lut=lut, dsp=self.dsp, **self.kwargs)
        finally:
            _restore(self.model, saved)
        self._projections += 1
        self._set_scale(done.after.lut)
        if self.verbose:
            print(f"  budget: projected ({done.rounds} round(s)): LUT {done.before.lut:.0f} -> {done.after.lut:.0f}")

    def on_train_end(self, logs: dict | None = None) -> None:
        detach(self.model)
        best_epoch = None
        if self.restore_best_feasible and self._best is not None:
            self.model.set_weights(self._best[2])
            best_epoch = self._best[1]
        calibrate(self.model, self.x)
        report = estimate(self.model, **self.kwargs)
        repair = RepairResult(0, {}, report, report)
        if not within_budget(report, self.lut, self.dsp):
            if not self.do_repair:
                raise RuntimeError(
                    f"ResourceBudget: the trained model is over the budget (LUT {report.lut:.0f} for "
                    f"{self.lut}, DSP {report.dsp} for {self.dsp}) and repair=False"
                )
            repair = repair_to_budget(self.model, self.x, lut=self.lut, dsp=self.dsp, **self.kwargs)
            report = repair.after
        self.result = BudgetResult(report, repair, self.lut, self.dsp, best_epoch, self._history)
        if self.verbose:
            print(self.result)
