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

The training ``loss`` Keras shows includes the cost term: with the
constraint rule it adds ``LUT / budget`` (at least 1) in every step that is
over the budget, so a model that starts far over shows a large loss (e.g. 21
for a model at 20x its budget) that falls as the bits fit. ``val_loss`` is
the task loss alone. The callback says so in one line when training starts.

The guarantee does not rest on either: at the end of training the model is
calibrated and its **exact** estimate checked; if it is over the budget, the
repair step (:func:`~hgq_fpga.constraints.repair_to_budget`) lowers bits
where they cost the least accuracy until it is within. A budget below what
the architecture can reach raises ``ValueError`` before training.

Training alone moves the bits by about one learning-rate step per batch,
which can be too slow for a tight budget; so an epoch that ends over the
budget is followed by a projection (``project=True``): the repair step is
applied and training goes on from the feasible point.

Per epoch (every ``check_every``) the exact estimate of the calibrated model
is recorded in ``budget.history`` (one dict per check: ``epoch``, ``lut``,
``dsp``, ``feasible``, the monitored metric, ``projected_lut``) and logged
for Keras (History, progress bar, TensorBoard) as ``lut`` (and ``dsp`` with a
DSP budget; ``budget_lambda`` with ``primal_dual``). With
``log_feasible=True`` the logs also get ``budget_feasible`` (0 or 1) and
``feasible_<monitor>``, the monitored metric on feasible epochs and the worst
value (-inf for ``mode="max"``) otherwise: give that to
``ModelCheckpoint(save_best_only=True)`` to choose checkpoints among feasible
models. With ``restore_best_feasible=True`` (default) the callback itself
restores the best feasible epoch's weights at the end (before the final check).

Messages follow ``fit(verbose=...)`` unless ``verbose=`` is given: one line
at the start (budget, starting cost, what the loss includes), one per check
and one per projection (printed after Keras's line for that epoch, so they
never break its progress bar), and the result at the end.

Backends and devices: the callback trains on TensorFlow and on JAX, on one
device or several: ``tf.distribute.MirroredStrategy`` (build, compile and fit
the model under ``strategy.scope()``) and Keras's
``keras.distribution.DataParallel`` on JAX (set it, or enter its scope, before
the model is built; Keras then needs every batch, the last one included, to
divide evenly among the devices). The cost the steps record is the model's
(not a sum over replicas), and the checks, projections and the final repair
run on the host as on one device. On JAX the callback syncs the training
state into the model's variables after every batch (``jax_state_sync``), which
Keras otherwise does once per epoch. The PyTorch backend is not supported.

Example:
    >>> budget = hgq_fpga.ResourceBudget(lut=20_000, calibration_data=x_train)  # doctest: +SKIP
    >>> model.fit(x_train, y_train, validation_split=0.2, epochs=60, callbacks=[budget])  # doctest: +SKIP
    >>> budget.result.report.lut <= 20_000                                        # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import keras
import numpy as np
from keras import ops

from ..calibration import TRACKED, check_inputs
from .options import METHODS, check_arguments, check_latency, rtl_settings
from ..resources import CostModel, ResourceReport, estimate
from .budget_result import HISTORY_COLUMNS, BudgetResult, budget_text, exact_estimate, minimum_cost, restore, snapshot
from .hook import CostHook, attach, detach, hooked_layers
from .repair import RepairResult, recalibrate, repair_to_budget, shorten_pipeline, within_budget

__all__ = ["BACKENDS", "HISTORY_COLUMNS", "METHODS", "BudgetResult", "ResourceBudget", "exact_estimate", "minimum_cost"]

#: projections aim at this fraction of the LUT budget
PROJECTION_MARGIN = 0.95
#: the Keras backends ResourceBudget trains on
BACKENDS = ("tensorflow", "jax")

_log = logging.getLogger("hgq_fpga.constraints")


def _say(message: str) -> None:
    """Print like Keras: to stdout, or to logging when Keras's interactive logging is off."""
    if keras.config.is_interactive_logging_enabled():
        print(message, flush=True)
    else:
        _log.info(message)


class ResourceBudget(keras.callbacks.Callback):
    """Keep a model within ``lut`` LUTs and ``dsp`` DSPs (see the module docstring).

    Args:
        lut, dsp: the budget (at least one).
        calibration_data: inputs to calibrate on (typically the training set or
            a few thousand samples of it) for every exact estimate, the final one
            included: the guarantee then holds for these data. Without it (None),
            the estimates use the activation ranges tracked in training
            (:func:`~hgq_fpga.calibration.calibrate_from_ranges`; the first check
            comes after the first batch) and the result says so: calibrate on
            your data and estimate again before converting.
        strategy, part, cost_model: as for :func:`hgq_fpga.estimate`.
        backend: ``"hls4ml"`` (the project of :func:`~hgq_fpga.to_hls4ml`, by ``strategy``)
            or ``"rtl"``: the budget bounds the LUTs of the :func:`~hgq_fpga.to_rtl`
            project. Training checks count its layers as one adder tree per output
            (every product in LUTs), an upper bound of the project's count (each
            layer position keeps the cheaper of its shared graph and those trees),
            and fast; the result's report is the project's own count, with its
            flip-flops and latency for ``clock_period`` and ``latency_cutoff``.
        latency: with ``backend="rtl"``, at most this many clock cycles from input to
            output. Training follows the LUT budget; at the end the bits are lowered
            further until the project's pipeline is that short
            (:func:`~hgq_fpga.constraints.repair.shorten_pipeline`), which raises
            ``RuntimeError`` if the weights reach their lowest bits first.
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
        log_feasible: also log ``budget_feasible`` and ``feasible_<monitor>``
            (for ``ModelCheckpoint``; they show in the progress bar too).
        verbose: 0 silent; 1 (or 2) a line at the start, one per check and
            the result. Default: as ``fit``'s ``verbose``.
        sensitivities: at the end, measure each layer's sensitivity on the
            calibration data (:func:`~hgq_fpga.constraints.layer_sensitivities`:
            LUTs saved and predictions changed by one bit less; about one exact
            estimate per layer) into ``budget.result.sensitivities``.

    After ``fit``: ``budget.result`` (:class:`BudgetResult`) and
    ``budget.history`` (one dict per check).

    Runs on the TensorFlow and JAX backends (``budget.BACKENDS``), on one device
    or data-parallel on several (see the module docstring). Two devices, JAX::

        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()[:2]))
        model = build_model()  # after the distribution is set; batch sizes even
        model.fit(x, y, batch_size=64, callbacks=[ResourceBudget(lut=3000, calibration_data=x)])

    TensorFlow::

        strategy = tf.distribute.MirroredStrategy(["/gpu:0", "/gpu:1"])
        with strategy.scope():
            model = build_model()  # built and compiled under the scope
            model.fit(x, y, batch_size=64, callbacks=[ResourceBudget(lut=3000, calibration_data=x)])
    """

    def __init__(
        self,
        lut: float | None = None,
        dsp: int | None = None,
        *,
        calibration_data: Any = None,
        strategy: str = "Latency",
        part: str = "xcvu13p-flga2577-2-e",
        cost_model: CostModel | None = None,
        backend: str = "hls4ml",
        latency: int | None = None,
        clock_period: float = 5.0,
        latency_cutoff: float | None = None,
        method: str = "constraint",
        dual_lr: float = 0.05,
        monitor: str = "val_accuracy",
        mode: str = "max",
        check_every: int = 1,
        restore_best_feasible: bool = True,
        repair: bool = True,
        project: bool = True,
        log_feasible: bool = False,
        verbose: int | None = None,
        sensitivities: bool = True,
    ) -> None:
        super().__init__()
        check_arguments(lut, dsp, method, mode, check_every, latency)
        self.latency = check_latency(latency, backend)
        self.lut = None if lut is None else float(lut)
        self.dsp = None if dsp is None else int(dsp)
        self.x = calibration_data
        self.kwargs = {"strategy": strategy, "part": part, "cost_model": cost_model}
        self.rtl = rtl_settings(backend, strategy, clock_period, latency_cutoff)
        if self.rtl is not None:  # the checks count the RTL project's LUTs: every product in LUTs
            from ..resources.estimate import rtl_cost_model

            self.kwargs["cost_model"] = (rtl_cost_model(part) if cost_model is None
                                         else dataclasses.replace(cost_model, dsp_min_bits=1 << 30))
        self.method = method
        self.dual_lr = float(dual_lr)
        self.monitor, self.mode = monitor, mode
        self.check_every = int(check_every)
        self.restore_best_feasible = restore_best_feasible
        self.do_repair = repair
        self.project = project
        self.log_feasible = log_feasible
        self._projections = 0
        self.verbose = verbose
        self.sensitivities = sensitivities
        self.hook: CostHook | None = None
        self.result: BudgetResult | None = None
        self.history: list[dict[str, Any]] = []
        self._lambda = 0.0
        self._last = 0.0
        self._dsp_over = False
        self._pending: list[str] = []
        self._rescale, self._start_lut = False, 0.0
        self._deferred = False

    # -- setup ------------------------------------------------------------------
    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        if keras.backend.backend() not in BACKENDS:
            raise NotImplementedError(
                f"ResourceBudget runs on the Keras backends {', '.join(BACKENDS)}; the current backend is "
                f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax."
            )
        if not hooked_layers(model):
            raise ValueError(f"ResourceBudget: model {model.name!r} has no QDense/QConv layer to budget")
        if self.x is not None:
            self.x = check_inputs(model, self.x, what="calibration_data")
            self.x = self.x if len(self.x) > 1 else self.x[0]
        # a fresh hook for each fit, created where the model's variables live (its
        # tf.distribute strategy; on JAX the current keras.distribution)
        self.hook = CostHook(1.0 / max(self.lut or 1.0, 1.0), model)
        attach(model, self.hook)
        _retrace(model)

    def _release(self) -> None:
        """Detach the hook; the next ``fit`` traces a step without it."""
        detach(self.model)
        _retrace(self.model)

    def _sync(self) -> None:
        """On JAX: put the state the training step threads (weights, the hook's
        variables) back into the model's variables, so that they can be read,
        and so that what the callback assigns reaches the next step. (Keras's
        JAX trainer otherwise does this only at the end of an epoch.)"""
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()

    @property
    def talks(self) -> bool:
        """Whether messages are printed: ``verbose``, or else ``fit``'s ``verbose``."""
        verbose = self.verbose if self.verbose is not None else (self.params or {}).get("verbose", 1)
        return verbose == "auto" or bool(verbose)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._best: tuple[float, int, list[np.ndarray]] | None = None
        self.history = []
        self._pending = []
        # without data, the estimates use the ranges training tracks: there are some after the first batch
        self._deferred = self.x is None
        if not self._deferred:
            self._begin()

    def _begin(self) -> None:
        """Refuse a budget below the architecture's floor; take and show the starting cost."""
        floor = minimum_cost(self.model, self.x, **self.kwargs)
        if (self.lut is not None and self.lut < floor.lut) or (self.dsp is not None and self.dsp < floor.dsp):
            self._release()
            raise ValueError(
                f"ResourceBudget: the budget (lut={self.lut}, dsp={self.dsp}) is below the smallest cost "
                f"this architecture can reach: {floor.lut:.0f} LUTs, {floor.dsp} DSPs (every output "
                f"keeping a single power-of-two weight{self._ranges_note()}). Raise the budget or use a "
                f"smaller model."
            )
        start = self._check(epoch=-1)
        # the differentiable estimate reads the training-time ranges, which the first
        # step sets: recalibrate it to the exact estimate after that step
        self._start_lut, self._rescale = start.lut, True
        if self.talks:
            _say(self._start_line(start))

    def _ranges_note(self) -> str:
        return "" if self.x is not None else "; activation ranges of the first training batch"

    def _start_line(self, start: ResourceReport) -> str:
        """The budget, the starting cost, and what the shown loss includes."""
        over = not within_budget(start, self.lut, self.dsp)
        ratio = start.lut / self.lut if self.lut else 1.0
        if self.method == "primal_dual":
            term = "lambda * LUT/budget (lambda starts at 0 and grows while the model is over)"
        elif over:
            term = f"LUT/budget (now {ratio:.1f}) in every step over the budget"
        else:
            term = "LUT/budget (at least 1) in any step that goes over the budget"
        return (f"budget: {budget_text(self.lut, self.dsp, self.latency)}; the model starts at "
                f"LUT {start.lut:.0f}, "
                f"DSP {start.dsp} ({'over' if over else 'within'}). The training loss includes {term}; "
                f"val_loss is the task loss alone.")

    def _flush(self) -> None:
        """Print the lines held back until Keras has finished its line for the epoch."""
        if self.talks:
            for line in self._pending:
                _say(line)
        self._pending = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._flush()

    # -- steering ---------------------------------------------------------------
    def _soft(self) -> float:
        from ..quantizers.cost import model_luts

        return float(ops.convert_to_numpy(model_luts(self.model)))

    def _set_scale(self, exact_lut: float) -> None:
        soft = self._soft()
        rho = exact_lut / soft if soft > 0 and exact_lut > 0 else 1.0
        self.hook.scale.assign(rho / max(self.lut or soft * rho or 1.0, 1.0))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._sync()
        if self._deferred:
            self._deferred = False
            self._begin()
        if self._rescale:  # else the first epoch's cost term (and the shown loss) is off by up to 10x
            self._rescale = False
            self._set_scale(self._start_lut)
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
        """The exact estimate now; with ``logs``, record and log it for ``epoch``."""
        report = exact_estimate(self.model, self.x, **self.kwargs)
        self._set_scale(report.lut)
        self._dsp_over = self.dsp is not None and report.dsp > self.dsp
        if logs is not None:
            self._record(epoch, report, logs)
        return report

    def _record(self, epoch: int, report: ResourceReport, logs: dict) -> None:
        """Keep the check in ``history``, log it for Keras, and track the best feasible epoch."""
        feasible = within_budget(report, self.lut, self.dsp)
        value = logs.get(self.monitor)
        record: dict[str, Any] = {"epoch": epoch, "lut": report.lut, "dsp": report.dsp, "feasible": feasible,
                                  "projected_lut": None}
        if value is not None:
            record[self.monitor] = float(value)
        self.history.append(record)
        if self.lut is not None:
            logs["lut"] = int(round(report.lut))
        if self.dsp is not None:
            logs["dsp"] = int(report.dsp)
        if self.method == "primal_dual":
            logs["budget_lambda"] = float(ops.convert_to_numpy(self.hook.weight))
        if self.log_feasible:
            logs["budget_feasible"] = int(feasible)
            if value is not None:
                logs[f"feasible_{self.monitor}"] = float(value) if feasible else (
                    -np.inf if self.mode == "max" else np.inf)
        if value is not None:
            better = self._best is None or (value > self._best[0] if self.mode == "max" else value < self._best[0])
            if feasible and better:
                self._best = (float(value), epoch, self.model.get_weights())
        elif feasible:  # no metric: the latest feasible epoch
            self._best = (0.0, epoch, self.model.get_weights())

    def _excess(self, report: ResourceReport) -> str:
        """``"120 LUTs"``, ``"2 DSPs"`` or both: how far over the budget."""
        parts = []
        if self.lut is not None and report.lut > self.lut:
            parts.append(f"{math.ceil(report.lut - self.lut)} LUTs")
        if self.dsp is not None and report.dsp > self.dsp:
            parts.append(f"{report.dsp - self.dsp} DSPs")
        return " and ".join(parts)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        last = epoch + 1 >= (self.params or {}).get("epochs", epoch + 1)
        if not ((epoch + 1) % self.check_every == 0 or last):
            return
        report = self._check(epoch, logs)
        if within_budget(report, self.lut, self.dsp):
            dsp = f"DSP {report.dsp}" + (f" <= {self.dsp}" if self.dsp is not None else "")
            lut = f"LUT {report.lut:.0f}" + (f" <= {self.lut:g}" if self.lut is not None else "")
            self._pending.append(f"budget: within after epoch {epoch + 1}: {lut}, {dsp}")
            return
        line = f"budget: over by {self._excess(report)} after epoch {epoch + 1}"
        if self.project and not last:
            done = self._project()
            self.history[-1]["projected_lut"] = done.after.lut
            line += (f"; bits projected into the budget ({done.rounds} round(s)): "
                     f"LUT {done.before.lut:.0f} -> {done.after.lut:.0f}")
            if self.dsp is not None:
                line += f", DSP {done.before.dsp} -> {done.after.dsp}"
        else:
            line += f" (LUT {report.lut:.0f}, DSP {report.dsp})" + ("; the final check repairs it" if last else "")
        self._pending.append(line)

    def _project(self) -> RepairResult:
        """Lower bits until the exact estimate is within the budget (the repair
        step), then go on training from there; the training-time calibration
        state is kept."""
        saved = snapshot(self.model)
        try:
            # a little below the budget, so that the next epoch's drift stays within it
            lut = None if self.lut is None else self.lut * PROJECTION_MARGIN
            done = repair_to_budget(self.model, self.x, lut=lut, dsp=self.dsp, **self.kwargs)
        finally:
            restore(self.model, saved)
        self._projections += 1
        self._set_scale(done.after.lut)
        return done

    def on_train_end(self, logs: dict | None = None) -> None:
        self._release()
        best_epoch = None
        if self.restore_best_feasible and self._best is not None:
            self.model.set_weights(self._best[2])
            best_epoch = self._best[1]
        recalibrate(self.model, self.x)
        report = estimate(self.model, **self.kwargs)
        repair = RepairResult(0, {}, report, report)
        if not within_budget(report, self.lut, self.dsp):
            if not self.do_repair:
                self._flush()
                raise RuntimeError(
                    f"ResourceBudget: the trained model is over the budget (LUT {report.lut:.0f} for "
                    f"{self.lut}, DSP {report.dsp} for {self.dsp}) and repair=False"
                )
            repair = repair_to_budget(self.model, self.x, lut=self.lut, dsp=self.dsp, **self.kwargs)
            report = repair.after
        if self.rtl is not None:  # the project's own count (at most the trees'), flip-flops and latency
            report = estimate(self.model, backend="rtl", part=self.kwargs["part"],
                              cost_model=self.kwargs["cost_model"], **self.rtl)
            if self.latency is not None and report.latency_cycles > self.latency:
                report, repair = shorten_pipeline(self.model, self.x, self.latency, report, repair, lut=self.lut,
                                                  dsp=self.dsp, rtl=self.rtl, **self.kwargs)
        calibration = TRACKED if self.x is None else f"calibration_data ({len(_first(self.x))} samples)"
        self.result = BudgetResult(report, repair, self.lut, self.dsp, best_epoch, self.history, calibration,
                                   latency=self.latency)
        if self.sensitivities and self.x is not None:
            from .sensitivity import layer_sensitivities

            self.result.sensitivities = layer_sensitivities(self.model, self.x, **self.kwargs)
        self._flush()
        if self.talks:
            _say(str(self.result))


def _first(x: Any) -> Any:
    """The first input's array (``x`` is one array, or a list of them for several inputs)."""
    return x[0] if isinstance(x, list) else x


def _retrace(model: keras.Model) -> None:
    """Make Keras trace its steps anew: a training step traced without the hook
    would not see it (TensorFlow), and on JAX the state the steps thread (and,
    under a distribution, its shardings) gains or loses the hook's variables."""
    model.train_function = model.test_function = model.predict_function = None
