"""``ResourceBudget``: train under a LUT/DSP budget, with a guarantee.

The epochs follow a schedule (``schedule=``, :mod:`~hgq_fpga.constraints.schedule`):
optionally a warm-up at the starting bits, the bits learning under the budget, and
frozen bits while the weights fine-tune; by default the bits learn in every epoch
and the learning rate anneals over the last 20%. While the bits learn, three rules steer them:

* ``method="step"`` (default): the differentiable LUT estimate (calibrated to
  the exact one) is compared with the budget after a batch. While it is
  within, the bits follow the task loss alone; a batch that ends over it is
  followed by a step that lowers every layer's bits by the excess over the
  cost per bit (:class:`~hgq_fpga.constraints.step.BudgetStep`, aiming at
  95% of the budget); a step that empties the model is undone. It holds the
  budget by itself (BENCHMARKS.md, "Does the training rule hold the budget?",
  and the guide). Where a step cannot help (after a step that collapsed the
  model was undone) the bits follow the cost gradient. No strength to tune.
* ``method="constraint"`` (constraint-guided, after CGMQ, arXiv:2409.20138):
  while the estimate is over the budget the bits follow the cost gradient
  alone (the weights always follow the task loss). That moves the bits about
  one learning rate a batch: the projections hold the budget (33% of the
  later epochs over on the same runs).
* ``method="primal_dual"`` (after Hounie et al., arXiv:2210.15623): the loss
  is ``task + lambda * LUT / budget`` and ``lambda`` rises by
  ``dual_lr * (LUT / budget - 1)`` after each batch (never below 0).

With ``method="step"`` and a LUT budget alone the callback reads the
differentiable estimate outside the training step, after the batches it reads
(one in 4 within the budget, one in 8 below 80% of it; every one while over),
and the step computes the cost only for its gradient, in batches over the
budget that a step cannot bring down: a budgeted epoch costs little more than an
unbudgeted one. With the other rules (and a DSP budget) the layers compute the
cost in the step and the ``loss`` includes the cost term (``LUT / budget`` in a
step over the budget). ``val_loss`` is the task loss alone. The callback says
which in one line when training starts.

The guarantee rests on neither: at the end of training the model is
calibrated and its **exact** estimate checked; if it is over the budget, the
repair step (:func:`~hgq_fpga.constraints.repair_to_budget`) lowers bits
where they cost the least accuracy until it is within. A budget below what
the architecture can reach raises ``ValueError`` before training. An epoch
whose check finds the model over the budget is followed by a projection
(``project=True``): the repair step, and training goes on from there.

The exact checks (every ``check_every`` epochs, the end of the bits phase and
the last epoch; ``check_every="auto"``: as often as they take at most 10% of
the training time) calibrate on ``calibration_data`` (without it, on the
activation ranges tracked in training). Each check is recorded in
``budget.history`` (one dict per check: ``epoch``, ``phase``, ``lut``, ``dsp``,
``feasible``, the monitored metric, ``projected_lut``) and logged for Keras
(History, progress bar, TensorBoard) as ``lut`` (and ``dsp`` with a DSP budget;
``budget_lambda`` with ``primal_dual``). With ``log_feasible=True`` the logs
also get ``budget_feasible`` (0 or 1) and ``feasible_<monitor>``, the monitored
metric on feasible epochs and the worst value (-inf for ``mode="max"``)
otherwise: give that to ``ModelCheckpoint(save_best_only=True)`` to choose
checkpoints among feasible models. With ``restore_best_feasible=True``
(default) the callback itself restores the best feasible epoch's weights at
the end (before the final check). The rule acts on an epoch's last batch
before ``fit``'s validation, so the weights checked and kept are the ones
validated.

Messages follow ``fit(verbose=...)`` unless ``verbose=`` is given: one line at the start
(budget, starting cost, schedule, what the loss includes), one per check and one per projection
(after Keras's line for that epoch, never breaking its progress bar), and the result at the end.

Backends and devices: the callback trains on TensorFlow, JAX and PyTorch
(the same tests pass on each), on one device or, on TensorFlow and JAX, several:
``tf.distribute.MirroredStrategy`` (build, compile and fit the model under
``strategy.scope()``) and ``keras.distribution.DataParallel`` on JAX (set it,
or enter its scope, before the model is built; Keras then needs every batch, the last one included, to
divide evenly among the devices). The cost the steps record is the model's
(not a sum over replicas), and the checks, projections and the final repair
run on the host as on one device. On JAX the callback syncs the training
state into the model's variables on the batches whose cost it reads (``jax_state_sync``),
which Keras otherwise does once per epoch. PyTorch trains eagerly.

Example:
    >>> budget = hgq_fpga.ResourceBudget(lut=20_000, calibration_data=x_train)  # doctest: +SKIP
    >>> model.fit(x_train, y_train, validation_split=0.2, epochs=60, callbacks=[budget])  # doctest: +SKIP
    >>> budget.result.report.lut <= 20_000                                        # doctest: +SKIP
    True
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from ..calibration import TRACKED, check_inputs
from ..resources import CostModel, ResourceReport
from .budget_result import HISTORY_COLUMNS, BudgetResult, exact_estimate, minimum_cost, restore, snapshot
from .checks import CheckClock, CheckLog, check_due, excess_text, first_input, rescale_due, say, start_line
from .executions import Executions
from .hold import hold, interrupted, let_go_of, release, retrace, warn_caller
from .hook import CostHook, attach, detach, hooked_layers
from .options import METHODS, check_arguments, check_latency, estimate_kwargs, rtl_settings
from .repair import RepairResult, final_guarantee, repair_to_budget, within_budget
from .schedule import PHASES, Anneal, Schedule, Steering, as_schedule
from .sensitivity import layer_sensitivities

__all__ = ["BACKENDS", "HISTORY_COLUMNS", "METHODS", "BudgetResult", "ResourceBudget", "exact_estimate", "minimum_cost"]

#: projections aim at this fraction of the LUT budget
PROJECTION_MARGIN = 0.95
#: the Keras backends ResourceBudget trains on
BACKENDS = ("tensorflow", "jax", "torch")
NOTE = "; activation ranges of the first training batch"  # (the floor without calibration data)


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
            flip-flops and latency for ``clock_period``, ``latency_cutoff`` and ``prefer``
            (as for :func:`~hgq_fpga.to_rtl`).
        latency: with ``backend="rtl"``, at most this many clock cycles from input to
            output. Training follows the LUT budget; at the end the bits are lowered
            further until the project's pipeline is that short
            (:func:`~hgq_fpga.constraints.repair.shorten_pipeline`), which raises
            ``RuntimeError`` if the weights reach their lowest bits first.
        method: ``"step"`` (default), ``"constraint"`` or ``"primal_dual"``.
        schedule: the phases and the anneal (:class:`~hgq_fpga.constraints.schedule.Schedule`:
            warm-up, bits learning under the budget, frozen bits while the weights fine-tune;
            the learning rate's half cosine over the last ``anneal``), fractions of ``epochs``, e.g.
            ``Schedule(0.1, 0.2)``. Default: bits in every epoch, anneal 0.2. None: neither.
        dual_lr: step of ``lambda`` for ``primal_dual``.
        monitor, mode: the metric for choosing the best feasible epoch.
        check_every: epochs between exact checks (default 1), or ``"auto"``: a check
            after an epoch whenever the checks so far took at most
            :data:`~hgq_fpga.constraints.checks.CHECK_SHARE` (10%) of the training time (of the epochs after
            the first, which traces and compiles the step). The end of the bits phase and the last epoch are
            always checked; the warm-up never is; two thirds into the bits phase an exact estimate
            recalibrates the step's cost (no check, nothing projected).
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

    Runs on the TensorFlow, JAX and PyTorch backends (``budget.BACKENDS``), on one device
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
        prefer: str = "latency",
        method: str = "step",
        schedule: Schedule | tuple[float, ...] | None = Schedule(0.0, 0.0),
        dual_lr: float = 0.05,
        monitor: str = "val_accuracy",
        mode: str = "max",
        check_every: int | str = 1,
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
        self.rtl = rtl_settings(backend, strategy, clock_period, latency_cutoff, prefer)
        self.kwargs = estimate_kwargs(strategy, part, cost_model, rtl=self.rtl is not None)
        self.method = method
        self.schedule = as_schedule(schedule)
        self.dual_lr = float(dual_lr)
        self.monitor, self.mode = monitor, mode
        self.check_every = check_every if check_every == "auto" else int(check_every)
        self.restore_best_feasible, self.do_repair, self.project = restore_best_feasible, repair, project
        self.log_feasible, self.verbose, self.sensitivities = log_feasible, verbose, sensitivities
        self.hook: CostHook | None = None
        self._steps: dict[bool, Any] = {}  # (outside reads) the training step traced without/with the cost
        self.result: BudgetResult | None = None
        self.history: list[dict[str, Any]] = []
        self.steering: Steering | None = None
        self._projections, self._dsp_over, self._pending = 0, False, []
        self._rescale, self._start_lut, self._deferred = False, 0.0, False
        self._phases, self._epoch, self._calls = (0, 1, 0), 0, Executions()
        self.clock, self.anneal = CheckClock(), Anneal(None, 1, 0)

    # -- setup ------------------------------------------------------------------
    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        if keras.backend.backend() not in BACKENDS:
            raise NotImplementedError(
                f"ResourceBudget runs on the Keras backends {', '.join(BACKENDS)}; the current backend is "
                f"{keras.backend.backend()!r}. Set KERAS_BACKEND to one of them."
            )
        if not hooked_layers(model):
            raise ValueError(f"ResourceBudget: model {model.name!r} has no QDense/QConv layer to budget")
        if self.x is not None:
            self.x = check_inputs(model, self.x, what="calibration_data")
            self.x = self.x if len(self.x) > 1 else self.x[0]
        let_go_of(model)  # (a budget's fit of this model interrupted before: its state off first)
        # a fresh hook for each fit, where the model's variables live (tf.distribute, keras.distribution)
        self.hook = CostHook(1.0 / max(self.lut or 1.0, 1.0), model)
        self.hook.in_step = not self.reads_outside  # (see _switch_step)
        self._steps = {}
        attach(model, self.hook)
        retrace(model)
        # (until on_train_begin holds it: a fit that fails before then lets go at the next one, silently)
        hold(model, lambda warn: self._release(), passes=1)

    @property
    def reads_outside(self) -> bool:
        """Whether the cost is read outside the training step: ``method="step"`` with a LUT budget
        alone, which needs the cost in the step only where a step cannot help (:class:`Steering`)."""
        return self.method == "step" and self.lut is not None and self.dsp is None

    def _switch_step(self, in_step: bool) -> None:
        """Outside reads: the training step with the layers' cost (for its gradient) or without;
        each traced once, when first needed (``make_train_function``), then swapped."""
        if in_step == self.hook.in_step:
            return
        self._steps.setdefault(self.hook.in_step, self.model.train_function)
        self.hook.in_step = in_step
        if self._steps.get(in_step) is None:
            self.model.make_train_function(force=True)
            self._steps[in_step] = self.model.train_function
        self.model.train_function = self._steps[in_step]

    def _release(self) -> None:
        """Detach the hook; the next ``fit`` traces a step without it."""
        self._steps = {}
        release(self.model)
        detach(self.model)
        retrace(self.model)

    def _let_go(self, warn: bool) -> None:
        """This budget's ``fit`` stopped before ``on_train_end`` (:mod:`~hgq_fpga.constraints.hold`):
        take its state off the model (the frozen bits' hold, the annealed rate, the hook)."""
        annealed = self.anneal.base is not None
        self.steering.freeze.clear()
        self.anneal.restore()
        self._release()
        if warn:
            warn_caller(interrupted(self.model.name, self.lut, self.dsp, self._epoch, annealed))

    def _sync(self) -> None:
        """JAX: the step's state back into the model's variables, to read and assign them (Keras: once an epoch)."""
        getattr(self.model, "jax_state_sync", lambda: None)()

    @property
    def talks(self) -> bool:
        """Whether messages are printed: ``verbose``, or else ``fit``'s ``verbose``."""
        verbose = self.verbose if self.verbose is not None else (self.params or {}).get("verbose", 1)
        return verbose == "auto" or bool(verbose)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.checks = CheckLog(self.lut, self.dsp, self.monitor, self.mode, self.log_feasible)
        self.history = self.checks.history
        self._pending, self._calls = [], Executions()
        epochs = int((self.params or {}).get("epochs", 1))
        self._phases = self.schedule.phases(epochs)
        self.anneal = Anneal(self.model.optimizer, epochs, self.schedule.annealed(epochs))
        self.clock = CheckClock()
        self.steering = Steering(self.model, self.hook, self.method, self.dual_lr, self.lut,
                                 # (its recalibrations, inside epochs, are check time)
                                 exact=lambda: self.clock.inside(
                                     lambda: exact_estimate(self.model, self.x, **self.kwargs).lut),
                                 outside=self.reads_outside, switch=self._switch_step)
        self.steering.prepare()
        hold(self.model, self._let_go)  # (until on_train_end: a later fit lets go if this one is interrupted)
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
                f"keeping a single power-of-two weight{'' if self.x is not None else NOTE}). Raise the budget "
                f"or use a smaller model."
            )
        start = self._check(epoch=-1)
        # the differentiable estimate reads the ranges the first step sets: recalibrate it after that step
        self._start_lut, self._rescale = start.lut, True
        if self.talks:
            say(start_line(start, self.lut, self.dsp, self.latency, self.method, self._phases, self.reads_outside,
                           self.anneal.n if self.anneal.active else 0))

    def _flush(self) -> None:
        """Print the lines held back until Keras has finished its line for the epoch."""
        if self.talks:
            for line in self._pending:
                say(line)
        self._pending = []

    def phase(self, epoch: int) -> str:
        """The schedule's phase of ``epoch`` (from 0): one of :data:`~hgq_fpga.constraints.schedule.PHASES`."""
        warm, bits, _ = self._phases
        return PHASES[0] if epoch < warm else PHASES[1] if epoch < warm + bits else PHASES[2]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._flush()
        self._sync()
        self._epoch = epoch
        self.steering.enter(self.phase(epoch), measure=not self._deferred)
        self.anneal.at(epoch)
        self.steering.late = self.anneal.annealing(epoch)
        self.clock.start_epoch()

    # -- steering ---------------------------------------------------------------
    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """The rule for the batch before (the epoch's last one: at :meth:`on_epoch_end`). Not in
        ``on_train_batch_end``: overriding that turns off Keras's asynchronous batch-end dispatch
        on JAX and torch, and every step then waits for its logs (a fine-tune epoch of the
        64-256-256-10 MLP: 43 ms on JAX against 29 ms unbudgeted). ``batch``: the call's first step
        (with ``steps_per_execution``, one call for several: :mod:`~hgq_fpga.constraints.executions`)."""
        steps = self._calls.begin(batch)
        if steps is not None:
            self._after_batch(steps)

    def on_test_begin(self, logs: dict | None = None) -> None:
        """``fit``'s validation: the rule for the epoch's last batch first, so that the weights checked and kept
        are the validated ones (a step after it took the digits MLP at 5% from 0.926 validated to 0.554)."""
        if self._calls.open:  # (not when evaluate() is called with this callback outside fit)
            self._after_batch(last=True)

    def _after_batch(self, steps: int = 1, last: bool = False) -> None:
        """The rule after a call of ``steps`` training steps (the epoch's ``last``: its steps counted here)."""
        if last:
            steps = self._calls.close(per_epoch=(self.params or {}).get("steps"),
                                      per_execution=int(getattr(self.model, "steps_per_execution", 1) or 1))
        if self._deferred:
            self._sync()
            self._deferred = False
            self._begin()
        if self._rescale:  # else the first epoch's cost term (and the shown loss) is off by up to 10x
            self._sync()
            self._rescale = False
            self.steering.set_scale(self._start_lut)
            if self.phase(self._epoch) == PHASES[1]:
                self.steering.remeasure()
        self.steering.after_batch(self._dsp_over, self._sync, last, steps)

    # -- checks -----------------------------------------------------------------
    def _check(self, epoch: int, logs: dict | None = None) -> ResourceReport:
        """The exact estimate now, calibrated on ``calibration_data`` (without it, on the
        ranges tracked in training); with ``logs``, record and log it for ``epoch``."""
        with self.clock.check():
            report = exact_estimate(self.model, self.x, **self.kwargs)
            self.steering.set_scale(report.lut)
            self._dsp_over = self.dsp is not None and report.dsp > self.dsp
            if logs is not None:
                lam = float(ops.convert_to_numpy(self.hook.weight)) if self.method == "primal_dual" else None
                self.checks.record(self.model, epoch, self.phase(epoch), report, logs, lam)
        return report

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        if self._calls.open:  # the epoch's last batch
            self._after_batch(last=True)
        self.clock.end_epoch()
        self._sync()
        self.steering.freeze.hold()  # (frozen phases) exactly the frozen bits, whatever the optimizer did
        last = epoch + 1 >= (self.params or {}).get("epochs", epoch + 1)
        due = last or check_due(epoch, self._phases, self.check_every, self.clock)
        if rescale_due(epoch, self._phases, self.check_every) and not due:  # the step's cost calibrated, no check
            with self.clock.check():
                self.steering.set_scale(exact_estimate(self.model, self.x, **self.kwargs).lut)
            if self.phase(epoch) == PHASES[1]:
                self.steering.remeasure()
        if not due:
            return
        report = self._check(epoch, logs)
        if self.phase(epoch) == PHASES[1] and not last:
            self.steering.remeasure()
        if within_budget(report, self.lut, self.dsp):
            dsp = f"DSP {report.dsp}" + (f" <= {self.dsp}" if self.dsp is not None else "")
            lut = f"LUT {report.lut:.0f}" + (f" <= {self.lut:g}" if self.lut is not None else "")
            self._pending.append(f"budget: within after epoch {epoch + 1}: {lut}, {dsp}")
            return
        self.steering.hedge |= self.phase(epoch) == PHASES[1] and epoch > self._phases[0]  # (Steering._rule)
        line = f"budget: over by {excess_text(report, self.lut, self.dsp)} after epoch {epoch + 1}"
        if self.project and not last:
            done = self._project(report)
            self.history[-1]["projected_lut"] = done.after.lut
            line += (f"; bits projected into the budget ({done.rounds} round(s)): "
                     f"LUT {done.before.lut:.0f} -> {done.after.lut:.0f}")
            if self.dsp is not None:
                line += f", DSP {done.before.dsp} -> {done.after.dsp}"
        else:
            line += f" (LUT {report.lut:.0f}, DSP {report.dsp})" + ("; the final check repairs it" if last else "")
        self._pending.append(line)

    def _project(self, report: ResourceReport) -> RepairResult:
        """Lower bits until the exact estimate is within the budget (the repair
        step), then go on training from there; the training-time calibration
        state is kept. ``report``: the check's exact estimate of the model as it is."""
        with self.clock.check():
            saved = snapshot(self.model)
            try:
                # a little below the budget, so that the next epoch's drift stays within it
                lut = None if self.lut is None else self.lut * PROJECTION_MARGIN
                # (the repair calibrates again: the check put its calibration back)
                done = repair_to_budget(self.model, self.x, lut=lut, dsp=self.dsp, report=report, **self.kwargs)
            finally:
                restore(self.model, saved)
            self._projections += 1
            self.steering.set_scale(done.after.lut)
            self.steering.spread_due = True  # (the repair's bits are whole numbers)
            if self.steering.freeze.values:  # fine-tune: the projected bits are the frozen ones now
                self.steering.freeze.take(self.model)
        return done

    def on_train_end(self, logs: dict | None = None) -> None:
        self.steering.freeze.clear()
        self.anneal.restore()
        try:
            self._finish()
        finally:
            # the hook last: the final calibrations reuse the pass the checks compiled with it attached
            # (released first, JAX compiled it anew: 0.4 of 0.5 s in on_train_end, 64-256-256-10 MLP)
            self._release()
        self._flush()
        if self.talks:
            say(str(self.result))

    def _finish(self) -> None:
        """The kept epoch's weights, the final guarantee, the result and the sensitivities."""
        best_epoch, best = None, self.checks.best
        if self.restore_best_feasible and best is not None:
            self.model.set_weights(best[2])
            best_epoch = best[1]
        report, repair = final_guarantee(self.model, self.x, self.lut, self.dsp, repair=self.do_repair, rtl=self.rtl,
                                         latency=self.latency, before_refusal=self._flush, **self.kwargs)
        calibration = TRACKED if self.x is None else f"calibration_data ({len(first_input(self.x))} samples)"
        self.result = BudgetResult(report, repair, self.lut, self.dsp, best_epoch, self.history, calibration,
                                   latency=self.latency, train_seconds=self.clock.train,
                                   check_seconds=self.clock.checks)
        if self.sensitivities and self.x is not None:
            self.result.sensitivities = layer_sensitivities(self.model, self.x, **self.kwargs)
