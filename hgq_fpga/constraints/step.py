r"""The step that holds a budget while the bits learn (:class:`BudgetStep`), and the spread of
fractional bits that makes its small steps count (:func:`spread_whole_bits`).

:class:`BudgetStep` is the step that holds the budget during the bits phase.
After a batch whose (calibrated) differentiable cost ``c = LUT / budget`` is
over ``target``, it lowers every layer's fractional bits by the same

.. math::

    \delta = \min\Big(\frac{c - \mathrm{target}}{\sum_l \sigma_l},\ 0.5\Big)

where ``sigma_l`` is the drop of ``c`` when layer ``l``'s bits are all one
lower (measured on the differentiable estimate; after every bit of shift
the exact estimate calibrates ``c`` and ``sigma`` again, since the
differentiable form drifts from it as bits fall). That is the shift which brings the linearized cost back to
``target``: a step sized by how far over the model is, where the optimizer's
step (Adam's gradient normalization makes it about one learning rate,
whatever the excess) is far too small for a model that starts at several
times its budget. Capped at half a bit per batch, so that the linearization
(and the differentiable estimate, fitted at 2-8 bits) is not trusted far
from where it was measured. The same shift for every layer (the
least-squares step ``delta_l ~ sigma_l`` emptied the widest layer first); the
task gradient then moves bits back up where they matter, so training trades
bits between layers and elements at a fixed total.

The linear step is where the search starts, not the step taken: the cost of
a shift is not linear in it, and after some training the first hundredths of
a bit cut far more than their share: on the digits CNN at 10% of its cost, a linear
step of 0.07 bits meant to take ``c`` from 1.01 to 0.95 took it to 0.58-0.79,
and the accuracy from 0.87 to 0.32-0.58, epoch after epoch (the linear shift's
cost, evaluated before the step, predicted it). So :meth:`BudgetStep.search`
evaluates the differentiable cost at ``delta * k / 8`` (``k = 1 .. 8``,
:meth:`~hgq_fpga.constraints.softcost.SoftCost.totals`) and takes
the smallest shift whose cost is within the target (``delta`` itself if none
is). A shifted evaluation quantizes each kernel at the lowered bits, as the
step will leave it (at its own bits it counted digits the shift rounds away,
and missed the cost after a step by 5% of the budget in a test).

The same step, with ``target`` :data:`~hgq_fpga.constraints.schedule.END` (0.97),
keeps a margin at an epoch's end once an epoch has ended over the budget
(:meth:`~hgq_fpga.constraints.schedule.Steering._rule`).

A layer's bits are ``round(f)``: where every ``f`` sits on a whole number (after
the warm-up, whose bits stay at their start, and after a projection), no step
under half a bit changes the cost and the next changes every element at once.
So the first bits epoch, and the first after each projection, starts with
:func:`spread_whole_bits`: every ``f`` that is a whole number ``n`` moves to ``n + u``,
``u`` spread evenly over ``[-0.49, 0.49)``: the bits are the same, and a shift ``delta`` lowers the
share ``(delta - 0.01) / 0.98`` of them, about the linear step above.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from .softcost import SoftCost

__all__ = ["BudgetStep", "SPREAD", "spread_whole_bits"]


#: spread_whole_bits's offsets lie in [-SPREAD / 2, SPREAD / 2): inside the rounding interval of ``f``
SPREAD = 0.98
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def spread_whole_bits(packs: list[Any]) -> int:
    """Move each fractional bit variable ``f`` that is a whole number ``n`` to
    ``n + SPREAD * (frac(k * g) - 1/2)``, ``k`` its index in the layer's packed
    variable and ``g = (sqrt(5) - 1) / 2`` (offsets evenly spread over any run of
    ``k``, and the same in every run), clipped to the variable's bounds.
    ``round(f)``, and so every bit and every cost, is unchanged; the ``f`` already
    between whole numbers (moved by training or by a step) are left as they are.
    Returns how many moved."""
    moved = 0
    for pack in packs:
        if pack is None:
            continue
        f = np.array(ops.convert_to_numpy(pack.f))
        whole = f == np.round(f)
        if not whole.any():
            continue
        offsets = SPREAD * (np.mod(np.arange(f.size) * _GOLDEN, 1.0) - 0.5)
        clip = pack.f.constraint
        spread = np.clip(np.where(whole, f + offsets.astype(f.dtype), f), clip.low, clip.high).astype(f.dtype)
        changed = int(np.sum(spread != f))  # (not those held at a whole-number bound by the clip)
        if changed:
            pack.f.assign(spread)
            moved += changed
    return moved


def _shift_bits(values: list[Any], clips: list[Any], shift: Any) -> tuple[list[Any], list[Any]]:
    """Copies of the bit variables' ``values`` and the values lowered by ``shift``, clipped to their bounds.
    The copies (``* 1``: a new array, not the one the variable holds, which JAX's next training step
    donates) restore the bits if the step is undone."""
    return ([v * 1 for v in values],
            [ops.clip(v - ops.cast(shift, v.dtype), c.low, c.high) for v, c in zip(values, clips)])


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as one compiled call on JAX, else as it is. (A step on the host read the bits back, waiting
    for the training step in flight, and its dozen small operations took 0.6-1.7 ms on JAX's digits MLP,
    a 10 ms epoch.)"""
    if keras.backend.backend() != "jax":
        return fn
    import jax

    return jax.jit(fn)


class BudgetStep:
    """The bits phase's step (see the module docstring); ``scale()`` is the calibrated ``rho / budget``
    (the steering's, as the hook holds it)."""

    #: aim below the budget, so that the drift of the batches until the next read (the task
    #: gradient raising bits) and of the differentiable estimate from the exact one stays within it.
    #: The searched step lands on it, where the linear one fell below: 0.95 then left 12 and 11 of
    #: the 66 later epochs over on the digits MLP at 5% and 10% on JAX (12 and 14 on TensorFlow),
    #: 0.9 left 6 and 2 (``benchmarks/budget_holding.py``; with linear steps 0.98 had left 17-20%
    #: over, 0.95 2-5%)
    TARGET = 0.9
    #: at most this many bits per batch
    MAX_SHIFT = 0.5
    #: the shifts tried: fractions 1/GRID .. 1 of the linear step (:meth:`search`)
    GRID = 8
    #: a read below this right after a step: the step fell off a cliff (undone)
    COLLAPSE = 0.5

    def __init__(self, soft: SoftCost, scale: Callable[[], float],
                 recalibrate: Callable[[], None] | None = None) -> None:
        self.soft, self.scale, self.recalibrate = soft, scale, recalibrate
        #: called before the bits are read or assigned (the steering's: a JAX state sync)
        self.touch: Callable[[], None] = lambda: None
        self.packs = [getattr(layer, "bits_pack", None) for layer in soft.layers]
        self._sigma: list[float] = []
        self._measuring: tuple[float, Any, Any] | None = None  # (scale, the two evaluations) until taken
        self.steps = self.undone = 0
        self._moved = 0.0
        self._before: tuple[float, list[Any]] | None = None  # (c, bits) before the last step, until the next read
        self._shift: Callable[..., Any] | None = None
        self.blocked = False

    def undo_collapse(self, c: float) -> float | None:
        """After a step: if the read ``c`` fell below :data:`COLLAPSE`, restore the bits from before
        the step and block stepping until the next :meth:`measure` (the next bits epoch or check); returns
        the cost before the step then, else None.

        Stepping every layer's bits together compounds: weights that round to zero empty the
        next layer's inputs. After a projection the bits sit on whole numbers, so fractional
        steps change nothing until their sum crosses a rounding boundary, and then every
        element crosses it at once: the digits CNN at 5% went from 1.2 to 0.01 of its budget in
        one batch and trained on with every weight zero."""
        before, self._before = self._before, None
        if before is None or c >= self.COLLAPSE:
            return None
        self.touch()
        for pack, bits in zip(self.packs, before[1]):
            if pack is not None:
                pack.f.assign(bits)
        self.undone += 1
        self.blocked = True
        return before[0]

    def _shifted(self, shift: float) -> tuple[list[Any], list[Any]]:
        """The bit variables' values and the values lowered by ``shift`` (:func:`_shift_bits`, compiled once)."""
        packs = [p for p in self.packs if p is not None]
        if self._shift is None:
            clips = [p.f.constraint for p in packs]
            self._shift = _compiled(lambda values, by: _shift_bits(values, clips, by))
        return self._shift([p.f.value for p in packs], np.float32(shift))

    def prepare(self) -> None:
        """Compile what a step evaluates (:meth:`SoftCost.prepare`: the form its sigma and search evaluate
        too, and the shift itself) before training starts (why: :meth:`SoftCost.prepare`)."""
        self.soft.prepare()
        if keras.backend.backend() == "jax":
            self._shifted(0.0)

    def measure(self) -> None:
        """``sigma_l``: the drop of ``c`` (differentiable LUTs times ``scale = rho / budget``)
        when layer ``l``'s bits are all one lower, of the bits now. Its two evaluations are
        dispatched now and taken when :attr:`sigma` is first needed (on JAX they run while
        training goes on: waited for at once, 0.23 ms of a 10 ms bits epoch of the digits MLP; now 0.11)."""
        self._measuring = (self.scale(), self.soft.start(0.0), self.soft.start(1.0))
        self._moved = 0.0
        self.blocked = False

    @property
    def sigma(self) -> list[float]:
        """Per layer, the drop of ``c`` for a bit less (of the last :meth:`measure`)."""
        if self._measuring is not None:
            scale, now, lower = self._measuring
            self._measuring = None
            self._sigma = [max(float(d), 0.0) * scale for d in self.soft.finish(now) - self.soft.finish(lower)]
        return self._sigma

    def search(self, linear: float, target: float) -> float:
        """The step's shift: the smallest of ``linear * k / GRID`` (``k = 1 .. GRID``) after which the
        differentiable cost is at most ``target`` (all dispatched before any is waited for,
        :meth:`SoftCost.totals`), else ``linear``."""
        shifts = np.float32(linear) * np.arange(1, self.GRID + 1, dtype=np.float32) / np.float32(self.GRID)
        within = np.flatnonzero(self.soft.totals(shifts) * self.scale() <= target)
        return float(shifts[within[0]]) if within.size else float(linear)

    def __call__(self, c: float, target: float | None = None) -> float:
        """Lower the bits by the step for cost ``c`` down to ``target`` (:data:`TARGET` unless given: the
        epoch's last read aims at :data:`~hgq_fpga.constraints.schedule.END`); returns the shift
        (bits), 0 if none was due."""
        total = sum(self.sigma)
        target = self.TARGET if target is None else target
        if c <= target or total <= 0.0 or self.blocked:
            return 0.0
        self.touch()
        shift = self.search(min((c - target) / total, self.MAX_SHIFT), target)
        pairs = zip(*self._shifted(shift))
        kept = []
        for pack, sigma in zip(self.packs, self.sigma):
            old, new = next(pairs) if pack is not None else (None, None)
            kept.append(old)
            if pack is not None and sigma > 0.0:  # (not where a bit less gains nothing)
                pack.f.assign(new)
        self._before = (c, kept)
        self.steps += 1
        self._moved += shift
        if self._moved >= 1.0:  # far from where c and sigma were calibrated: again, exactly if possible
            (self.recalibrate or self.measure)()
        return shift
