"""The repair step: lower bit-widths where they cost the least accuracy until the
exact estimate is within the budget.

Each round ranks every weight's fractional bits (live weights above their
lowest bits) by

.. math::

    \\frac{\\partial \\mathrm{LUT} / \\partial f_{ij}}{(q_{f-1}(w_{ij}) - q_f(w_{ij}))^2 \\, E[x_i^2]}

-- LUTs saved (the differentiable form's gradient) per unit of added output
noise (the squared change of the quantized weight times the mean square of
the input it multiplies, from the calibration data, or without data from
the tracked range ``[lo, hi]`` as if uniform: ``(lo^2 + lo hi + hi^2) / 3``)
-- and lowers the best
of them by one bit: as many as the differentiable gains say cover the
excess (at least ``step_fraction`` of the candidates, at most half). The model is then recalibrated and the
exact estimate recomputed; rounds continue until it is within the budget.
A DSP excess is repaired first, by lowering the widest weights of the
multiplications that sit on DSPs below the DSP threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from ..calibration import TRACKED, CalibrationResult, calibrate, calibrate_from_ranges
from ..compat.keras import kept_on
from ..resources import CostModel, ResourceReport, estimate
from .hook import hooked_layers, model_state

__all__ = ["RepairResult", "final_guarantee", "recalibrate", "repair_to_budget", "shorten_pipeline", "within_budget"]


@dataclass
class RepairResult:
    """What the repair did: rounds, bits lowered per layer, the estimates before and after."""

    rounds: int
    lowered: dict[str, int] = field(default_factory=dict)
    before: ResourceReport | None = None
    after: ResourceReport | None = None

    def __str__(self) -> str:
        if self.rounds == 0:
            return "repair: nothing to do (within the budget)"
        parts = ", ".join(f"{k}: {v}" for k, v in self.lowered.items())
        b, a = self.before, self.after
        return (f"repair: {self.rounds} round(s) lowered {sum(self.lowered.values())} fractional bits "
                f"({parts}); LUT {b.lut:.0f} -> {a.lut:.0f}, DSP {b.dsp} -> {a.dsp}")


def within_budget(report: ResourceReport, lut: float | None, dsp: int | None, latency: int | None = None) -> bool:
    """Whether ``report`` meets the budget (parts that are None are not checked; ``latency``
    in cycles, only for a report that has it: the RTL project's)."""
    return (lut is None or report.lut <= lut) and (dsp is None or report.dsp <= dsp) and (
        latency is None or report.latency_cycles is None or report.latency_cycles <= latency)


def recalibrate(model: keras.Model, x: Any) -> CalibrationResult:
    """:func:`~hgq_fpga.calibrate` on ``x`` (its table of rows not made: nothing reads it); without
    data (``x is None``), from the ranges tracked in training
    (:func:`~hgq_fpga.calibration.calibrate_from_ranges`)."""
    return calibrate_from_ranges(model) if x is None else calibrate(model, x, rows=False)


def _positions(layer: Any) -> int:
    """Output positions of a convolution (each kernel weight meets one input at each); 1 for a dense layer."""
    if len(layer.kernel.shape) == 2:
        return 1
    shape = (1, *(int(d) for d in layer.input.shape[1:]))
    return math.prod(int(d) for d in layer.compute_output_shape(shape)[1:-1])


def _range_power(layer: Any) -> np.ndarray:
    """``E[x^2]`` of a layer's input from its tracked range, as if uniform on ``[lo, hi]``:
    per element (dense) or per channel (conv, the mean over the positions)."""
    q = layer.input_quantizer
    shape = (1, *(int(d) for d in layer.input.shape[1:]))
    lo = np.broadcast_to(np.asarray(ops.convert_to_numpy(q.vmin), np.float64), shape)[0]
    hi = np.broadcast_to(np.asarray(ops.convert_to_numpy(q.vmax), np.float64), shape)[0]
    p = (lo**2 + lo * hi + hi**2) / 3.0
    return p if len(layer.kernel.shape) == 2 else np.mean(p, axis=tuple(range(p.ndim - 1)))


def _input_power(layers: list[Any], calibration: CalibrationResult) -> list[np.ndarray]:
    """Each layer's weight of a kernel weight's squared rounding error, as a column: the mean square
    of its input per element (dense), or per channel times the output positions (conv, where each
    kernel weight meets an input at each position). From the calibration's own passes on data
    (:attr:`~hgq_fpga.calibration.CalibrationResult.input_power`); from the tracked ranges after a
    calibration without data."""
    if calibration.source == TRACKED:
        power = [_range_power(layer) for layer in layers]
    else:
        power = [np.asarray(calibration.input_power[layer], np.float64) for layer in layers]
    return [(p * _positions(layer)).reshape(-1, 1) for layer, p in zip(layers, power)]


def _reduce_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``a`` over the axes where ``shape`` (right-aligned) broadcasts."""
    shape = tuple(shape)
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + k for k, d in enumerate(shape) if d == 1 and a.shape[lead + k] != 1)
    return np.sum(a, axis=axes, keepdims=False).reshape(shape) if axes else a.reshape(shape)


def _gradient(fn: Any, x: np.ndarray) -> np.ndarray | None:
    """``d fn(x) / d x`` for a scalar-valued ``fn`` of an array, on the current Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            out = fn(t)
        g = tape.gradient(out, t)
        return None if g is None else g.numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda t: ops.sum(fn(t)))(jax.numpy.asarray(x)))
    if backend == "torch":
        import torch

        t = torch.tensor(np.asarray(x), requires_grad=True)
        out = torch.sum(fn(t))
        (g,) = torch.autograd.grad(out, t, allow_unused=True)
        return None if g is None else g.detach().cpu().numpy()
    raise NotImplementedError(f"repair: no gradient for the Keras backend {backend!r}")


def _gain_function(layers: list[Any], model: keras.Model) -> Callable[[], list[np.ndarray]]:
    """``() -> [d(differentiable LUTs)/d(kernel f)]`` of every layer, at the bits as they are: one
    call a round of a repair, all layers in one gradient (each layer's LUTs depend on its own
    kernel ``f`` alone, so the gradient of their sum is each layer's own).

    On JAX one compiled program (``jax.jit`` over the variables' current values, as the budget's
    reads are), kept on the model for its next repair: compiled a layer at a time (each traced
    twice: once to find the variables it reads, which saves nothing in a call a round), the
    digits MLP's four took 0.9-1.0 s of the first repair in a process, as one program 0.64-0.79
    s. Taken eagerly, the gradient traced and dispatched the layers' forms op by op every round,
    0.3 s a layer of the 64-256-256-10 MLP. TensorFlow and torch take it eagerly (one tape for
    every layer; traced, one function kept on the model, the digits MLP's first repair took
    0.8-1.0 s in its four rounds against 0.57 eagerly)."""
    kqs = [layer.kernel_quantizer for layer in layers]
    sizes = [kq.bits_size for kq in kqs]
    cuts = [int(c) for c in np.cumsum(sizes)[:-1]]

    def total(flat: Any) -> Any:
        parts = ops.split(flat, cuts) if cuts else [flat]
        return sum(ops.sum(layer.luts_for({id(kq): ops.reshape(part, kq.bits_shape)}))
                   for layer, kq, part in zip(layers, kqs, parts))

    def split(g: np.ndarray | None) -> list[np.ndarray]:
        if g is None:
            return [np.zeros(kq.bits_shape) for kq in kqs]
        return [part.reshape(kq.bits_shape) for kq, part in zip(kqs, np.split(np.asarray(g, np.float64), cuts))]

    def flat_f() -> np.ndarray:
        return np.concatenate([kq.f_array().reshape(-1) for kq in kqs]).astype(np.float32)

    if keras.backend.backend() == "jax":
        import jax

        from .softcost import jax_compiled

        # the same model with the same variables (a budget's hook's, which come and go as it
        # switches steps, aside: jax_training_values finds the places of the values read anew)
        key = (tuple(id(layer) for layer in layers),
               tuple(id(v) for v in (*model.trainable_variables, *model_state(model))))
        grad = kept_on(model, "_hgq_repair_gains", key, lambda: jax_compiled(
            jax.grad(total), [v for layer in layers for v in layer.variables], model, (sum(sizes),),
            only_read=False))
        return lambda: split(np.asarray(grad(flat_f())))
    return lambda: split(_gradient(total, flat_f()))


def _layer_candidates(layer: Any, p: np.ndarray, off_dsp: bool, cm: CostModel,
                      gain: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(gain / damage, flat bit index, gain)`` of every lowerable kernel bit of one layer, in
    C order of the bits (arrays: the 86k bits of a 64-256-256-10 MLP as tuples took 0.13 s a round)."""
    kq = layer.kernel_quantizer
    w = ops.convert_to_numpy(layer.kernel).astype(np.float64)
    f_bits = kq.f_exact_array()
    f = np.broadcast_to(f_bits, w.shape)
    # in numpy, float64: the float32 weights' quantized values exactly (as the layer computes them),
    # without a backend's eager ops (and 1e-300 below is not 0 as in JAX's float32)
    q0 = kq.quantize_with(w, f, xp=np)
    q1 = kq.quantize_with(w, f - 1, xp=np)
    x2 = np.broadcast_to(p.reshape((1,) * (w.ndim - 2) + p.shape), w.shape)
    damage = _reduce_to((q1 - q0) ** 2 * x2, kq.bits_shape)
    live = _reduce_to((q0 != 0).astype(np.float64), kq.bits_shape) > 0
    if off_dsp:  # wide weights first: off the DSPs
        bits = np.where(q0 != 0, np.floor(np.log2(np.abs(q0) + 1e-300)) + f + 2, 0)
        wide = _reduce_to((bits >= cm.dsp_min_bits).astype(np.float64), kq.bits_shape)
        gain = np.where(wide > 0, 1e6 + gain, gain)
    live &= (f_bits > kq.f_min) & (gain > 0)
    flat = np.flatnonzero(live)
    g = gain.ravel()[flat]
    return g / (damage.ravel()[flat] + 1e-30), flat, g


def _n_take(gains: np.ndarray, report: ResourceReport, lut: float | None, step_fraction: float) -> int:
    """How many ranked bits (``gains``: theirs, in rank order) to lower this round.

    Enough bits to cover the excess by the differentiable gains (at least
    ``step_fraction`` of the candidates, at most half of them).
    """
    excess = max(report.lut - (lut if lut is not None else report.lut), 0.0)
    need = int(np.searchsorted(np.cumsum(gains), excess)) + 1 if excess > 0 else 1
    return min(max(need, math.ceil(step_fraction * len(gains))), max(1, len(gains) // 2))


def _lower_bits(layers: list[Any], which: np.ndarray, flat: np.ndarray, result: RepairResult) -> None:
    """Lower the chosen fractional bits (layer ``which[k]``, flat bit index ``flat[k]``) by one and
    count them per layer in ``result``."""
    for n in np.unique(which):
        kq = layers[n].kernel_quantizer
        f = kq.f_exact_array()
        chosen = flat[which == n]
        f.reshape(-1)[chosen] -= 1  # (each bit at most once)
        kq.set_f(f)
        result.lowered[layers[n].name] = result.lowered.get(layers[n].name, 0) + len(chosen)


def _ranked(layers: list[Any], power: list[np.ndarray], off_dsp: bool, cm: CostModel,
            gains: Callable[[], list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every layer's candidates, best first: ``(layer index, flat bit index, gain)``. Ties keep
    the layers' order and each layer's C order (a stable sort)."""
    parts = [_layer_candidates(layer, p, off_dsp, cm, g) for layer, p, g in zip(layers, power, gains())]
    ratio = np.concatenate([r for r, _, _ in parts])
    which = np.concatenate([np.full(len(flat), n) for n, (_, flat, _) in enumerate(parts)])
    flat = np.concatenate([flat for _, flat, _ in parts])
    gain = np.concatenate([g for _, _, g in parts])
    order = np.argsort(-ratio, kind="stable")
    return which[order], flat[order], gain[order]


def repair_to_budget(
    model: keras.Model,
    x: Any,
    *,
    lut: float | None = None,
    dsp: int | None = None,
    strategy: str = "Latency",
    part: str = "xcvu13p-flga2577-2-e",
    cost_model: CostModel | None = None,
    step_fraction: float = 0.02,
    max_rounds: int = 500,
    report: ResourceReport | None = None,
    calibration: CalibrationResult | None = None,
) -> RepairResult:
    """Lower weight bits until the calibrated model's exact estimate meets the budget.

    The model is recalibrated on ``x`` after every round (and at the start); with
    ``x=None`` it is calibrated from the ranges tracked in training instead.
    ``report``: the exact estimate of the model as it is, already calibrated on ``x``
    (a caller that just took it: the start's calibration and estimate are skipped), and
    ``calibration`` that calibration's result (without it, the model is calibrated again on ``x``
    for its layers' input power: the same ranges).

    Raises:
        RuntimeError: if ``max_rounds`` rounds do not reach the budget (every
            weight at its lowest bits), naming the remaining excess.
    """
    kwargs = {"strategy": strategy, "part": part, "cost_model": cost_model}
    if report is None:
        calibration = recalibrate(model, x)
        report = estimate(model, **kwargs)
    before = report
    result = RepairResult(0, {}, before, before)
    if within_budget(report, lut, dsp):
        return result
    layers = hooked_layers(model)
    power = _input_power(layers, calibration if calibration is not None else recalibrate(model, x))
    gain_fn = _gain_function(layers, model)
    cm = report.model
    for _ in range(max_rounds):
        off_dsp = dsp is not None and report.dsp > dsp
        which, flat, gains = _ranked(layers, power, off_dsp, cm, gain_fn)
        if not len(gains):
            break
        take = _n_take(gains, report, lut, step_fraction)
        _lower_bits(layers, which[:take], flat[:take], result)
        result.rounds += 1
        recalibrate(model, x)
        report = estimate(model, **kwargs)
        if within_budget(report, lut, dsp):
            result.after = report
            return result
    result.after = report
    raise RuntimeError(
        f"repair: {result.rounds} rounds could not bring the model within the budget "
        f"(LUT {report.lut:.0f} for {lut}, DSP {report.dsp} for {dsp}); every weight is at its lowest bits"
    )


def shorten_pipeline(model: keras.Model, x: Any, latency: int, report: ResourceReport, repair: RepairResult, *,
                     lut: float | None, dsp: int | None, rtl: dict[str, Any], max_rounds: int = 40,
                     **kwargs: Any) -> tuple[ResourceReport, RepairResult]:
    """Lower weight bits until the RTL project takes at most ``latency`` cycles.

    Fewer bits make narrower adders and fewer of them (fewer nonzero digits), so
    shorter paths and fewer stages. Each round is a :func:`repair_to_budget` to a LUT
    budget 10% below the current count (and within ``lut``, ``dsp``), then the
    project's latency (``report``: the RTL estimate, ``rtl``: its clock settings) is
    taken again. Returns the RTL report and ``repair`` with the rounds added.

    Raises:
        RuntimeError: the weights reach their lowest bits first (naming the latency).
    """
    trees = estimate(model, **kwargs)
    for _ in range(max_rounds):
        target = 0.9 * trees.lut if lut is None else min(lut, 0.9 * trees.lut)
        try:
            step = repair_to_budget(model, x, lut=target, dsp=dsp, **kwargs)
        except RuntimeError:
            break
        repair.rounds += step.rounds
        for name, n in step.lowered.items():
            repair.lowered[name] = repair.lowered.get(name, 0) + n
        repair.after = trees = step.after
        report = estimate(model, backend="rtl", part=kwargs["part"], cost_model=kwargs["cost_model"], **rtl)
        if report.latency_cycles <= latency:
            return report, repair
    raise RuntimeError(
        f"ResourceBudget: lowering the weights' bits did not bring the RTL project to latency={latency} cycles "
        f"(it takes {report.latency_cycles} at clock_period={rtl['clock_period']:g} ns); raise latency=, give a "
        f"longer clock_period or latency_cutoff, or use a shallower model")


def final_guarantee(model: keras.Model, x: Any, lut: float | None, dsp: int | None, *, repair: bool = True,
                    rtl: dict[str, Any] | None = None, latency: int | None = None,
                    before_refusal: Callable[[], None] = lambda: None,
                    **kwargs: Any) -> tuple[ResourceReport, RepairResult]:
    """The end of a budgeted training (:class:`~hgq_fpga.constraints.ResourceBudget`): calibrate
    on ``x`` (None: the ranges tracked in training), take the exact estimate and, over the
    budget, :func:`repair_to_budget`; with ``rtl`` (the RTL project's settings) the report is
    the project's own count, its pipeline shortened to ``latency`` cycles
    (:func:`shorten_pipeline`). Returns the final report and what the repair did.

    Raises:
        RuntimeError: over the budget with ``repair=False`` (after ``before_refusal()``), or
            the repair or the pipeline cannot get within it.
    """
    calibration = recalibrate(model, x)
    report = estimate(model, **kwargs)
    done = RepairResult(0, {}, report, report)
    if not within_budget(report, lut, dsp):
        if not repair:
            before_refusal()
            raise RuntimeError(
                f"ResourceBudget: the trained model is over the budget (LUT {report.lut:.0f} for "
                f"{lut}, DSP {report.dsp} for {dsp}) and repair=False"
            )
        done = repair_to_budget(model, x, lut=lut, dsp=dsp, report=report, calibration=calibration, **kwargs)
        report = done.after
    if rtl is not None:  # the project's own count (at most the trees'), flip-flops and latency
        report = estimate(model, backend="rtl", part=kwargs["part"], cost_model=kwargs["cost_model"], **rtl)
        if latency is not None and report.latency_cycles > latency:
            report, done = shorten_pipeline(model, x, latency, report, done, lut=lut, dsp=dsp, rtl=rtl, **kwargs)
    return report, done
