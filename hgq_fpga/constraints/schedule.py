r"""The phases of a budgeted training, and the steps that keep the bits inside the budget.

:class:`Schedule` splits ``fit``'s epochs into three phases (the multi-phase
recipe of Schaefer et al.: float warm-up, bit-width learning, frozen bits):

1. **warm-up** (the first ``warmup`` fraction of the epochs): the weights train
   at the bits they start with (6 fractional bits by default: close to float);
   the bits stay as they are and the budget does not steer.
2. **bits**: the bits learn under the budget (the training rule of
   :class:`~hgq_fpga.constraints.ResourceBudget`).
3. **fine-tune** (the last ``finetune`` fraction): the bits are frozen at the
   values the bits phase ended with (checked, and projected into the budget if
   needed), and the weights fine-tune to them.

Phase lengths are ``floor(fraction * epochs)``, so a short run (fewer than 5
epochs with the defaults) is all bits phase, as before the schedule existed.

Independently of the phases, the last ``anneal`` fraction of the epochs lowers
the optimizer's learning rate along a half cosine towards 0 (:class:`Anneal`),
so that the last epochs settle instead of sampling the noise of a constant
rate: on the digits MLP at 20% of its cost, 3 seeds, 30 epochs, the kept
model's mean accuracy 0.969 -> 0.973 (BENCHMARKS.md, ``benchmarks/budget_holding.py``).

The step that holds the budget while the bits learn, and the spread of the
fractional bits before it, are in :mod:`~hgq_fpga.constraints.step`.

Example:
    >>> Schedule(0.1, 0.2).phases(30)
    (3, 21, 6)
    >>> Schedule(0.1, 0.2).phases(4)
    (0, 4, 0)
    >>> Schedule(0.0, 0.0, anneal=0.2).annealed(30)
    6
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from .hook import RECORD_EVERY, hooked_layers
from .softcost import SoftCost
from .step import BudgetStep, spread_whole_bits

__all__ = ["Anneal", "BitFreeze", "BudgetStep", "PHASES", "Schedule", "SoftCost", "Steering", "as_schedule",
           "spread_whole_bits"]

#: reads outside the step (``method="step"``): this many training steps (batches) apart while ``c`` is
#: below FAR, RECORD_EVERY apart from FAR to the budget (with ``steps_per_execution``, at the first call
#: after as many steps)
MAX_INTERVAL = 8
FAR = 0.8
#: JAX: a routine read started outside the step after a batch is taken this many training steps later (at
#: the next call of the training function at least)
#: (waited for if not done yet: the step dispatched after it keeps the device busy meanwhile). A
#: fixed lag, not "when done": the rule then sees the same values at the same batches in every run
#: (taken when done, up to 3 batches later, the digits CNN at 5% gave 0.757 / 0.674 / 0.793 over
#: seeds 0-2 in one run and 0.789 / 0.620 / 0.746 in the next, same code)
READ_LAG = 1

#: ``method="step"``, once an epoch after the first bits epoch has ended over the budget (by the
#: exact estimate): the epoch's last read, within the budget but above END, steps down to END (the
#: margin for the differentiable estimate's miss at the check that follows; see :meth:`Steering._rule`)
END = 0.97

#: the phases' names, as ``budget.history`` records them
PHASES = ("warm-up", "bits", "fine-tune")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Fractions of the epochs for the warm-up and the fine-tune phases (the bits phase is the rest),
    and the last fraction of them over which the learning rate anneals (:class:`Anneal`; 0: never)."""

    warmup: float = 0.1
    finetune: float = 0.2
    anneal: float = 0.2

    def __post_init__(self) -> None:
        for name in ("warmup", "finetune", "anneal"):
            v = getattr(self, name)
            if not (isinstance(v, numbers.Real) and not isinstance(v, bool) and 0.0 <= v < 1.0):
                raise ValueError(f"ResourceBudget: schedule {name} is a fraction of the epochs in [0, 1). "
                                 f"Received: {name}={v!r}")
        if self.warmup + self.finetune >= 1.0:
            raise ValueError(f"ResourceBudget: schedule leaves no epoch for the bits to learn: warmup + finetune "
                             f"= {self.warmup + self.finetune:g} (must be below 1)")

    def phases(self, epochs: int) -> tuple[int, int, int]:
        """``(warm-up, bits, fine-tune)`` epochs of a run of ``epochs``; the bits phase keeps at least one."""
        warm = int(math.floor(self.warmup * epochs + 1e-9))
        fine = int(math.floor(self.finetune * epochs + 1e-9))
        if warm + fine >= epochs:
            warm = fine = 0
        return warm, epochs - warm - fine, fine

    def annealed(self, epochs: int) -> int:
        """How many of the last epochs of a run of ``epochs`` anneal the learning rate (none if all would)."""
        n = int(math.floor(self.anneal * epochs + 1e-9))
        return n if n < epochs else 0


def as_schedule(schedule: Any) -> Schedule:
    """``schedule=`` of :class:`ResourceBudget`: a :class:`Schedule`, a ``(warmup, finetune)`` pair or
    ``(warmup, finetune, anneal)`` triple, or None (every epoch learns bits; the learning rate is left alone)."""
    if schedule is None:
        return Schedule(0.0, 0.0, 0.0)
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, (tuple, list)) and len(schedule) in (2, 3):
        return Schedule(*schedule)
    raise ValueError(f"ResourceBudget: schedule must be a Schedule, a (warmup, finetune) pair or (warmup, "
                     f"finetune, anneal) triple of fractions of the epochs, or None (bits learn in every epoch, "
                     f"the learning rate left alone). Received: schedule={schedule!r}")


class Anneal:
    r"""The optimizer's learning rate over the last ``n`` of ``epochs`` epochs: a half cosine from
    the rate :math:`\eta_0` it has when the first of them starts towards 0, one value an epoch (its
    middle's, so that no epoch trains at 0):

    .. math:: \eta_e = \eta_0 \cdot \tfrac12 \left(1 + \cos \pi\,\frac{e - (E - n) + 1/2}{n}\right),
              \qquad E - n \le e < E.

    :meth:`restore` puts :math:`\eta_0` back (at the end of ``fit``), so that only the anneal's own
    changes are undone (a rate lowered before it by, say, ``ReduceLROnPlateau`` stays lowered, and is
    the one annealed). A rate that is not a plain variable (a ``LearningRateSchedule`` or a callable:
    the user's own decay) is left alone (``active`` False).

    Example:
        >>> [round(Anneal.factor(e, 30, 6), 3) for e in range(23, 30)]
        [1.0, 0.983, 0.854, 0.629, 0.371, 0.146, 0.017]
    """

    def __init__(self, optimizer: Any, epochs: int, n: int) -> None:
        rate = getattr(optimizer, "learning_rate", None) if n > 0 else None
        self.rate = rate if isinstance(rate, keras.Variable) else None
        self.base: float | None = None  # the rate at the first annealed epoch
        self.epochs, self.n = epochs, n

    @property
    def active(self) -> bool:
        """Whether the rate anneals in this run."""
        return self.rate is not None

    @staticmethod
    def factor(epoch: int, epochs: int, n: int) -> float:
        r""":math:`\eta_e / \eta_0` for ``epoch`` (from 0)."""
        start = epochs - n
        if n <= 0 or epoch < start:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * (min(epoch - start, n - 1) + 0.5) / n))

    def annealing(self, epoch: int) -> bool:
        """Whether ``epoch`` (from 0) is one of the annealed ones."""
        return self.rate is not None and epoch >= self.epochs - self.n

    def at(self, epoch: int) -> None:
        """Set the rate for ``epoch`` (at its start)."""
        if self.annealing(epoch):
            if self.base is None:
                self.base = float(ops.convert_to_numpy(self.rate))
            self.rate.assign(self.base * self.factor(epoch, self.epochs, self.n))

    def restore(self) -> None:
        """Put the rate of the anneal's start back (nothing if it did not start)."""
        if self.rate is not None and self.base is not None:
            self.rate.assign(self.base)
        self.base = None


def _slots(optimizer: Any, variable: Any) -> list[Any] | None:
    """The optimizer's slot variables of ``variable`` (momenta, ...): Keras names them
    ``<variable path with _ for />_<slot>``. None if the optimizer is not built yet."""
    if optimizer is None or not getattr(optimizer, "built", False):
        return None
    prefix = variable.path.replace("/", "_") + "_"
    return [v for v in optimizer.variables if v.name.startswith(prefix) and tuple(v.shape) == tuple(variable.shape)]


class BitFreeze:
    """Hold every hooked layer's fractional bits at the values taken by :meth:`take`.

    The budget hook already zeroes the bits' gradient (``task_share = weight = 0``);
    :meth:`take` also zeroes the optimizer's slots of the bit variables, so that
    its update is exactly zero (Adam: ``m = v = 0``, SGD: no momentum). Only an
    optimizer with weight decay still moves them: then :meth:`hold` runs after
    every batch (``every_batch``); otherwise after every epoch, as a check.
    """

    def __init__(self) -> None:
        self.values: list[tuple[Any, Any]] = []
        self.every_batch = False

    def take(self, model: Any) -> None:
        optimizer = getattr(model, "optimizer", None)
        # numpy copies: on JAX a variable assigned a device array holds that very buffer,
        # which the next training step donates (deletes)
        self.values = [(p.f, np.array(ops.convert_to_numpy(p.f))) for p in _packs(model)]
        self.every_batch = bool(getattr(optimizer, "weight_decay", None))
        for v, _ in self.values:
            for slot in _slots(optimizer, v) or []:
                slot.assign(ops.zeros(slot.shape, slot.dtype))

    def hold(self) -> None:
        """Put the frozen values back."""
        for v, a in self.values:
            v.assign(a)

    def clear(self) -> None:
        self.values = []


def _packs(model: Any) -> list[Any]:
    """The packed fractional-bit variable of each hooked layer that has one."""
    return [layer.bits_pack for layer in hooked_layers(model) if getattr(layer, "bits_pack", None) is not None]


class Steering:
    """How the bits move, phase by phase and batch by batch (the training rule of
    :class:`~hgq_fpga.constraints.ResourceBudget`, for its ``hook``).

    Bits phase: after a batch that reads the cost ``c = LUT / budget`` (one in
    :data:`~hgq_fpga.constraints.hook.RECORD_EVERY`: the mean of the steps since
    the last read; every one with ``method="step"`` while the last ``c`` was over
    1, and with ``"primal_dual"``) and finds it over 1. With ``method="step"`` and a
    LUT budget alone (``outside``) a read evaluates :class:`SoftCost` on the variables
    as the batch left them, outside the training step, which computes the cost only
    for its gradient, where the step cannot help (on TensorFlow the cost computed in
    the step made a bits epoch of a 64-256-256-10 MLP 1.9x an unbudgeted one, outside it
    1.2x). Without that gradient (the bits held still where the
    step was blocked) the digits MLP at 5% ended 5 of its later 22 epochs over its
    budget, with it none. The rules:
    ``method="constraint"``, the bits follow the cost gradient alone until a
    recorded ``c`` is within; ``method="step"``, the :class:`BudgetStep`, also from
    far over (a model that starts at ten times its budget steps there within its first
    epoch; projecting its untrained weights at once instead left the digits CNN at 10%
    at 0.56 accuracy on one seed of three), and the cost gradient only where the step
    cannot help (no LUT budget, a DSP budget over).
    ``method="primal_dual"``: ``lambda += dual_lr * (c - 1)`` after every batch.
    Warm-up and fine-tune: the bits are frozen (:class:`BitFreeze`) and the
    cost is not computed.
    """

    def __init__(self, model: Any, hook: Any, method: str, dual_lr: float, lut: float | None,
                 exact: Callable[[], float] | None = None, outside: bool = False,
                 switch: Callable[[bool], None] | None = None) -> None:
        self.model, self.hook, self.method, self.dual_lr, self.lut = model, hook, method, dual_lr, lut
        self.soft = SoftCost(model)
        self.exact, self.recalibrations = exact, 0
        self.spread = 0  # fractional bits moved off whole numbers (spread_whole_bits)
        self.spread_due = True  # the bits may sit on whole numbers: at the start, after a projection
        self.hedge = False  # an epoch after the first bits epoch ended over: the last read steps down to END
        self.late = False  # an annealed epoch (Anneal.annealing): a step over the budget aims at END, not TARGET
        self.step = BudgetStep(self.soft, lambda: self.scale, self._recalibrate if exact is not None else None)
        self.freeze = BitFreeze()
        self.scale = float(ops.convert_to_numpy(hook.scale))
        self.state = (float(ops.convert_to_numpy(hook.weight)), float(ops.convert_to_numpy(hook.task_share)))
        self.recording = float(ops.convert_to_numpy(hook.active)) > 0.5
        self.last = 0.0  # the last recorded c
        self.lam = 0.0
        self._batches = self._since = 0
        # outside reads: bits-phase batches so far (across epochs) and the one of the next read
        self._count, self._next_read = 0, 1
        # the cost is read outside the step (the step rule with a LUT budget alone); switch(True)
        # puts the cost into the training step (for its gradient), switch(False) takes it out
        self.outside, self.switch = outside, switch
        self._touch: Callable[[], None] = lambda: None  # before an assignment (outside reads do not sync)
        # JAX: a routine read (within the budget) is started after one batch and taken READ_LAG batches
        # later (:meth:`after_batch`); the bits and the scale stay as they were in between
        self._pending: tuple[Any, int] | None = None  # (the started read, the count it was started at)
        self._deferred_reads = outside and keras.backend.backend() == "jax"
        self._changed = True  # the bits or the scale moved since the last read: the next one is not put off

    def prepare(self) -> None:
        """Compile the steering's reads (and, with the step rule and a LUT budget, the step's
        search and shift) before the training step is traced (:meth:`SoftCost.prepare`)."""
        if self.method == "step" and self.lut is not None:
            self.step.prepare()
        else:
            self.soft.prepare()

    def set_scale(self, exact_lut: float) -> None:
        """Calibrate the differentiable estimate to ``exact_lut`` (``scale = rho / budget``)."""
        soft = float(self.soft.luts(0.0).sum())
        # an exact 0 (every weight rounds to zero) is a calibration too: c = 0, no more cuts
        # (rho = 1 there kept method="step" cutting a digits CNN that already cost nothing)
        rho = exact_lut / soft if soft > 0 else 1.0
        self.scale = rho / max(self.lut or soft * rho or 1.0, 1.0)
        self.hook.scale.assign(self.scale)
        self._fresh()

    def _recalibrate(self) -> None:
        """After a bit of steps: the exact estimate (``exact()``) calibrates ``c`` and ``sigma`` again."""
        self.recalibrations += 1
        self.set_scale(self.exact())
        self.step.measure()

    def remeasure(self) -> None:
        """``method="step"``: measure what a bit less saves per layer (:meth:`BudgetStep.measure`;
        two evaluations of the differentiable estimate, which the other rules do not read). Now,
        not lazily before the next step: measured where the first step of an epoch fell (over
        the budget, mid-epoch), the digits CNN at 10% seed 0 stepped itself down to 0.533
        accuracy at 70% of its budget (0.857 measured here)."""
        if self.method == "step":
            self.step.measure()

    def enter(self, phase: str, measure: bool = True) -> None:
        """At the start of an epoch of ``phase``; ``measure``: the scale is known (see :meth:`BudgetStep.measure`)."""
        if phase == PHASES[1]:
            warm = bool(self.freeze.values)
            if warm:  # the warm-up is over: the bits follow the training rule
                self.freeze.clear()
                self._steer(0.0, 1.0)
            if warm or self._since:  # no step of the warm-up, or of before the last check's projection
                self.hook.take()
                self._since = 0
            self._batches = 0
            self._record(not self.outside or self.state[0] > 0.0)
            if self.method == "step" and self.spread_due:  # (gradient rules need no spread)
                self.spread += spread_whole_bits(self.step.packs)
                self.spread_due = False
            if measure:
                self.remeasure()
        elif not self.freeze.values:  # warm-up, or the start of the fine-tune: the bits stay as they are
            self.freeze.take(self.model)
            self._steer(0.0, 0.0)
            self._record(False)

    def after_batch(self, dsp_over: bool, sync: Callable[[], None] = lambda: None, last: bool = False,
                    steps: int = 1) -> None:
        """The rule, after a call of the training function (a batch; ``steps`` of them with Keras's
        ``steps_per_execution``: :mod:`~hgq_fpga.constraints.executions`). ``sync()`` makes the training
        state readable and assignable (JAX); it is called only on the batches that read or move anything.
        ``last``: the epoch's last batch, which is always read (no bits epoch ends unread: its
        check follows)."""
        if self.freeze.values:
            if self.freeze.every_batch:
                sync()
                self.freeze.hold()
            return
        self._batches += 1
        self._count += steps  # (the reads' schedule counts steps)
        self._since += steps if self.recording else 0  # (the steps whose cost the hook summed)
        self.step.touch = self._touch = sync  # before anything is assigned
        if self.outside:
            urgent = last or self._urgent()
            pending, self._pending = self._pending, None
            if pending is not None and not urgent:
                if self._count - pending[1] < READ_LAG:
                    self._pending = pending
                    return
                self._read_outside(dsp_over, self.soft.finish(pending[0]), self._count - pending[1])
            elif urgent or self._count >= self._next_read:
                if self._deferred_reads and not (urgent or self._changed):
                    self._pending = (self.soft.start(), self._count)
                    return
                self._read_outside(dsp_over, last=last)
            else:
                return
            self._record(self.state[0] > 0.0)  # the next step computes the cost only for its gradient
            return
        if self._urgent() or self._batches % RECORD_EVERY == 1:  # the 1st, 5th, ... batch of each bits epoch
            sync()
            if self._since:
                self._rule(self.hook.take() / self._since * self.scale, dsp_over)
                self._since = 0
        # the next step computes the cost (tf.cond, lax.cond, eager torch) if its gradient is on or it will be read
        self._record(self._urgent() or self.state[0] > 0.0 or (self._batches + 1) % RECORD_EVERY == 1)

    def _read_outside(self, dsp_over: bool, started: np.ndarray | None = None, age: int = 0,
                      last: bool = False) -> None:
        """Read the cost now, of the variables as the batch left them (no sync to read: the
        steering's ``_touch`` syncs before anything is assigned), steer, and choose when to read
        next (:meth:`_interval`; over the budget after the next batch). ``last``: the epoch's
        last batch (read at once, never put off; see :meth:`_rule`).

        ``started``: the LUTs of a read started ``age`` batches before (JAX). A read waits for
        the step in flight and then computes: 0.53 ms a read on the digits MLP, where an epoch
        is 16 ms; started and taken :data:`READ_LAG` batches later, it runs while Python goes on
        (on the 64-256-256-10 MLP Python runs ahead of the device, and a read started is often still
        queued behind the steps dispatched after it a batch later: then it is waited for, while
        the device works on those steps).
        Only within the budget, where the rule does not step, and not the first read after the
        bits or the scale moved: over the budget every read may step, a step's read (is it a
        collapse, :meth:`BudgetStep.undo_collapse`) is not put off, nor the first read of a
        training (10x over the budget, say) or after a check. (Taking those a batch later too
        waited 23 times in 20 epochs of JAX's digits MLP instead of 36, and took the digits CNN
        at 5% on JAX from 0.757, 0.674, 0.793 to 0.650, 0.611, 0.659 over seeds 0-2.)"""
        c = float((self.soft.luts(0.0) if started is None else started).sum()) * self.scale
        self._changed = False
        moves = (self.step.steps, self.recalibrations)
        self._rule(c, dsp_over, last)
        if (self.step.steps, self.recalibrations) != moves:  # the bits (or the scale) moved
            self._fresh()
            return
        self._next_read = self._count + max(self._interval(c) - age, 1)

    def _fresh(self) -> None:
        """The bits or the scale moved: read after the next batch (a read started before is dropped)."""
        self._next_read = self._count + 1
        self._pending, self._changed = None, True

    def _interval(self, c: float) -> int:
        """Training steps until the next read: after the next batch while over the budget, in
        :data:`MAX_INTERVAL` while ``c`` is below :data:`FAR`, else in :data:`RECORD_EVERY`.

        Between reads ``c`` rises 0.0004 a batch (median) on the digits MLP and CNN at 5-50% of
        their cost, 0.005 at the 90th percentile, 0.023 at the 99th, in jumps where many bits
        round across a boundary at once (6,156 pairs of reads, ``benchmarks/budget_holding.py``): no interval
        rules out an overshoot, which the next read steps back. Yet where it is read matters at
        tight budgets: reads in eight up to 0.95 (not 0.8) took the digits CNN at 10% seed 2 to
        0.530 (0.839 with these), and an interval predicted from the rise since the last read,
        up to 8-12 batches near the budget too, took the CNN at 35% seed 2 to 0.878 at 83% of
        its budget (0.969). Reads cost a 64-256-256-10 MLP's bits epoch about 5 ms of its 35
        on JAX (0.3 ms a read, a third of a step, before reads took the value-only form of :class:`SoftCost`)."""
        if c > 1.0:
            return 1
        return MAX_INTERVAL if c < FAR else RECORD_EVERY

    def _urgent(self) -> bool:
        """Whether the cost is read after every batch: primal-dual (its dual step is per batch), or
        ``method="step"`` over the budget (each read may step). The cost gradient of
        ``method="constraint"``, on while over, is computed in every step but read (and switched
        off) one step in :data:`RECORD_EVERY`, from the mean of the steps since the last read:
        reading after every batch cost 0.4 ms a batch on TensorFlow and a state sync a batch on JAX."""
        return self.method == "primal_dual" or (self.method == "step" and self.last > 1.0)

    def _rule(self, c: float, dsp_over: bool, last: bool = False) -> None:
        """Steer for a recorded (mean) cost ``c = LUT / budget``; ``last``: the epoch's last read.

        ``method="step"`` steps from over 1 down to :data:`BudgetStep.TARGET`. Once an epoch
        after the first bits epoch has ended over the budget by the exact estimate (``hedge``,
        set by the budget's check), the epoch's last read (reads outside the step, a LUT budget
        alone: the last batch is always read there) also steps from above :data:`END` down
        to END: the differentiable estimate, calibrated to the exact one at each check, misses it
        at the next by a few percent (TensorFlow's digits MLP at 5%, three seeds: the exact over
        the epoch's last read 0.99-1.03 from the 10th to the 90th percentile, up to 1.16), and
        there 9 of the 66 later epochs ended over without it. Not from the start: the digits CNN's
        reads swing more within an epoch (0.91-1.06 of the exact at the same percentiles), its
        steps keep it lower, its epochs did not end over, and the same step at every epoch's end
        took it at 5% from 0.752 to 0.707 accuracy on JAX.

        In the annealed epochs (``late``) a step over the budget aims at END as well: the rate falls,
        the bits drift less between reads, and the kept model (often one of these epochs) has the
        budget's last tenth to use, at no cost in projections: ``benchmarks/budget_holding.py`` (30 runs)
        kept the same later epochs over (6 of 660 on TensorFlow, 8 on JAX); mean accuracy moved within
        the seeds' spread (TensorFlow up at 6 of 10 budgets and down at one, JAX up at 2 and down at 3)."""
        self.last = c
        if self.lut is None:
            c = 2.0 if dsp_over else 0.0
        if self.method == "step":
            restored = self.step.undo_collapse(c)
            self.last = c = c if restored is None else restored
        if self.method in ("constraint", "step"):
            steps = self.method == "step" and self.lut is not None
            stepped = steps and c > 1.0 and self.step(c, END if self.late else None) > 0.0
            if steps and last and self.hedge and END < c <= 1.0:
                self.step(c, END)
            over = (c > 1.0 and not stepped) or dsp_over
            self._steer(1.0 if over else 0.0, 0.0 if over else 1.0)
        else:
            self.lam = max(0.0, self.lam + self.dual_lr * (c - 1.0))
            self._steer(self.lam, 1.0)

    def _steer(self, weight: float, task_share: float) -> None:
        """Set the hook's cost weight and task share (assigned only when they change)."""
        if (weight, task_share) != self.state:
            self._touch()
            if self.outside and self.switch is not None and (weight > 0.0) != (self.state[0] > 0.0):
                self.switch(weight > 0.0)
            self.state = (weight, task_share)
            self.hook.weight.assign(weight)
            self.hook.task_share.assign(task_share)

    def _record(self, on: bool) -> None:
        """Whether the next step computes and records the cost."""
        if on != self.recording:
            self._touch()
            self.recording = on
            self.hook.active.assign(1.0 if on else 0.0)
