"""Calibration: set every activation quantizer's integer bits from data.

``calibrate(model, x)`` changes exactly these variables of every
:class:`~hgq_fpga.quantizers.ActivationQuantizer` in the model:

* ``vmin``, ``vmax``: reset, then set to the smallest and largest value each
  quantizer's input element takes on ``x`` (inputs of a layer are computed
  from the already quantized outputs of the layers before it);
* ``state``: set to ``CALIBRATED`` (2);

and recomputes the lookup table of every table activation (``QActivation``
with sigmoid/tanh) for the calibrated input formats.

From ``[vmin, vmax]`` and the fractional bits ``f`` the quantizer derives
``k`` (sign bit iff ``vmin < 0`` after rounding) and the integer bits

``i = max(floor(log2 vmax) + 1, ceil(log2 -vmin))``,

so no value of ``x`` overflows. Weights, biases, fractional bits and
batch-norm statistics are not touched. Training after calibration tracks
ranges again (``state`` returns to ``TRAINED``); calibrate again before
converting.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator

import keras
import numpy as np
from keras import ops

from .compat.keras import all_layers
from .layers.base import QuantizedLayerMixin
from .layers.squares import summing_squares
from .quantizers import CALIBRATED, ActivationQuantizer, BitQuantizerBase

__all__ = ["BATCH_SIZE", "calibrate", "calibrate_from_ranges", "filled_batch", "is_calibrated", "iter_quantizers",
           "CalibrationResult", "CalibrationWarning", "check_inputs", "FEW_SAMPLES", "TRACKED"]


def _walk_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk_layers(layer)
        else:
            yield layer


def iter_quantizers(model: keras.Model) -> Iterator[tuple[keras.layers.Layer, BitQuantizerBase]]:
    """Yield ``(layer, quantizer)`` for every quantizer of every quantized layer."""
    for layer in _walk_layers(model):
        if isinstance(layer, QuantizedLayerMixin):
            for q in layer.quantizers:
                yield layer, q


def is_calibrated(model: keras.Model) -> bool:
    """True when every activation quantizer has been calibrated and not trained since."""
    qs = [q for _, q in iter_quantizers(model) if isinstance(q, ActivationQuantizer)]
    return bool(qs) and all(q.built and q.is_calibrated for q in qs)


def check_inputs(model: keras.Model, x: Any, *, what: str = "x") -> list[np.ndarray]:
    """Validate data for ``model``: one finite float64 array per model input.

    The data are never narrowed: float64 stays float64 (a format wider than
    float32's 24-bit significand is emulated and simulated exactly), integers
    and booleans become float64 (exact below ``2**53``). Keras casts to its own
    dtype when it runs the model.

    Raises:
        ValueError: on a wrong number of arrays, a wrong shape, NaN/Inf, complex
            or non-numeric data, or integers beyond ``2**53``.
    """
    if not getattr(model, "inputs", None):
        raise ValueError(
            f"{model.name!r} has no defined inputs; build it with keras.Input(shape=...) first."
        )
    arrays = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(arrays) != len(model.inputs):
        raise ValueError(
            f"{what}: the model has {len(model.inputs)} input(s). Received {len(arrays)} array(s)."
        )
    out = []
    for n, (arr, spec) in enumerate(zip(arrays, model.inputs)):
        a = _as_float64(np.asarray(arr), what, n)
        want = tuple(spec.shape[1:])
        got = a.shape[1:]
        if a.ndim != len(spec.shape) or any(w is not None and w != g for w, g in zip(want, got)):
            raise ValueError(
                f"{what}: input {n} must have shape (batch, {', '.join(map(str, want))}). "
                f"Received shape {a.shape}."
            )
        if a.shape[0] == 0:
            raise ValueError(f"{what}: input {n} is empty (0 samples).")
        if not np.all(np.isfinite(a)):
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise ValueError(
                f"{what}: input {n} holds {bad} NaN/Inf value(s); remove or impute them first."
            )
        out.append(a)
    n_samples = {a.shape[0] for a in out}
    if len(n_samples) != 1:
        raise ValueError(f"{what}: inputs have different numbers of samples: {sorted(n_samples)}")
    return out


def _as_float64(a: np.ndarray, what: str, n: int) -> np.ndarray:
    """Real numbers as float64, exactly; anything else refused by name."""
    if a.dtype.kind not in "fiub":
        kind = {"c": "complex", "O": "Python objects", "U": "text", "S": "bytes"}.get(a.dtype.kind, str(a.dtype))
        raise ValueError(
            f"{what}: input {n} holds {kind} (dtype {a.dtype}); give real numbers (a float or integer array)."
        )
    if a.dtype.kind in "iu" and a.size and float(np.max(np.abs(a.astype(np.float64)))) >= 2.0**53:
        raise ValueError(f"{what}: input {n} has integers of 2**53 or more, which float64 cannot hold exactly; "
                         "scale the data down.")
    return a.astype(np.float64, copy=False)


@dataclass
class CalibrationResult:
    """What :func:`calibrate` (or :func:`calibrate_from_ranges`) set: one row per activation quantizer.

    ``source``: ``"data"``, or :data:`TRACKED` for the ranges tracked in training.

    ``input_power`` (from data only): for every dense and convolution layer (the layer object is
    the key), the mean square of its input over the samples, taken in the same forward passes:
    ``E[x_i^2]`` per input element of a dense layer, per input channel (over the samples and
    positions) of a convolution (:mod:`hgq_fpga.layers.squares`). A budget's repair weighs each
    weight's rounding error by it.
    """

    n_samples: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    source: str = "data"
    input_power: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        head = f"{'layer':<24} {'quantizer':<18} {'min':>10} {'max':>10} {'mean bits':>9} {'zero-bit':>8}"
        first = f"calibrated on {self.n_samples} samples" if self.source == "data" else f"calibrated from the {self.source}"
        lines = [first, head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r['layer']:<24} {r['quantizer']:<18} {r['min']:>10.4g} {r['max']:>10.4g} "
                f"{r['mean_bits']:>9.2f} {r['zero_bit_fraction']:>8.1%}"
            )
        return "\n".join(lines)


#: fewer calibration samples than this get a :class:`CalibrationWarning`
FEW_SAMPLES = 10


class CalibrationWarning(UserWarning):
    """Calibration on so few samples that its ranges are unlikely to hold for other data."""


#: samples per forward pass of :func:`calibrate` (its default ``batch_size``)
BATCH_SIZE = 1024


def calibrate(
    model: keras.Model,
    x: Any,
    *,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
    rows: bool = True,
) -> CalibrationResult:
    """Record activation ranges on ``x`` and fix integer bits so ``x`` never overflows.

    The model runs on ``x`` in batches of ``batch_size``: eagerly on PyTorch, compiled on JAX
    and, from its second calibration on (a budget's checks), traced on TensorFlow (kept on the
    model; :func:`_record_compiled`, :func:`_record_traced`).

    Args:
        model: a built Keras model with hgq_fpga layers.
        x: an array (or a list of arrays, one per model input) of samples, typically the training set.
        batch_size: samples per forward pass.
        progress: show a progress bar.
        rows: fill the result's table (each quantizer's bits read back: 5 ms a quantizer on
            TensorFlow); False where only the calibrated model is needed (a budget's checks).

    Returns:
        a :class:`CalibrationResult` (printable table; no rows with ``rows=False``; ``input_power``).

    Raises:
        ValueError: on NaN/Inf data, a shape mismatch, or a model without activation quantizers.

    Example:
        >>> model = keras.Sequential([keras.Input((3,)), QDense(2)])
        >>> res = calibrate(model, np.array([[0.5, -1.0, 2.0]], "float32"))
        >>> is_calibrated(model)
        True
    """
    arrays = check_inputs(model, x)
    if batch_size < 1:
        raise ValueError(f"calibrate: batch_size must be >= 1. Received: batch_size={batch_size}")
    pairs = [(l, q) for l, q in iter_quantizers(model) if isinstance(q, ActivationQuantizer)]
    if not pairs:
        from .diagnosis import firmware_problem

        raise ValueError(f"calibrate: {firmware_problem(model) or f'model {model.name!r} has no activation quantizers'}")
    n = arrays[0].shape[0]
    if n < FEW_SAMPLES:
        warnings.warn(
            f"calibrate: {n} sample{'s' if n > 1 else ''} only. The integer bits, and every estimate and "
            "budget check made from them, hold for these samples alone; other data may overflow and cost "
            "more. Calibrate on representative data (typically the training set).",
            CalibrationWarning, stacklevel=2)
    power = _record_ranges(model, arrays, pairs, batch_size, progress)
    for layer in {id(l): l for l, _ in pairs}.values():
        if hasattr(layer, "update_table"):
            layer.update_table()  # lookup tables follow the calibrated input formats
    result = CalibrationResult(n_samples=n, input_power=power)
    for _, q in pairs:
        q.state.assign(np.float32(CALIBRATED))
    if rows:
        result.rows.extend(_row(layer, q) for layer, q in pairs)
    return result


#: :attr:`CalibrationResult.source` of :func:`calibrate_from_ranges`
TRACKED = "ranges tracked in training"


def calibrate_from_ranges(model: keras.Model) -> CalibrationResult:
    """Fix integer bits from the ranges the quantizers tracked during training, without data.

    Every activation quantizer keeps its ``vmin``/``vmax`` (the smallest and
    largest value each element took over the training steps since the last
    calibration: all of training if it was never calibrated) and becomes
    ``CALIBRATED``; lookup tables follow. The ranges cover what training saw,
    with the weights of the time: wider than the final model needs, as a rule
    (more bits, a conservative estimate), but not a promise for other data or
    weights changed after the last step. Calibrate on representative data
    (:func:`calibrate`) before converting when you have it.

    Raises:
        ValueError: a quantizer never saw data (the model was not trained);
            names the layer.

    Example:
        >>> model = keras.Sequential([keras.Input((2,)), QDense(2)])
        >>> model.compile("sgd", "mse")
        >>> _ = model.fit(np.ones((4, 2)), np.ones((4, 2)), verbose=0)
        >>> calibrate_from_ranges(model).source
        'ranges tracked in training'
    """
    from .quantizers import FRESH

    pairs = [(l, q) for l, q in iter_quantizers(model) if isinstance(q, ActivationQuantizer)]
    if not pairs:
        raise ValueError(f"calibrate_from_ranges: model {model.name!r} has no activation quantizers")
    fresh = [l.name for l, q in pairs if not q.built or float(ops.convert_to_numpy(q.state)) == FRESH]
    if fresh:
        raise ValueError(f"calibrate_from_ranges: layer(s) {', '.join(dict.fromkeys(fresh))} never saw data, so "
                         "there are no ranges to use; train the model first, or calibrate(model, x) on data")
    for layer in {id(l): l for l, _ in pairs}.values():
        if hasattr(layer, "update_table"):
            layer.update_table()
    result = CalibrationResult(n_samples=0, source=TRACKED)
    for layer, q in pairs:
        q.state.assign(np.float32(CALIBRATED))
        result.rows.append(_row(layer, q))
    return result


def _record_ranges(
    model: keras.Model,
    arrays: list[np.ndarray],
    pairs: list[tuple[keras.layers.Layer, ActivationQuantizer]],
    batch_size: int,
    progress: bool,
) -> dict[Any, np.ndarray]:
    """Reset the quantizers' ranges and record them over ``arrays`` in forward passes of ``batch_size``.
    Returns the weighted layers' mean squared inputs over all the samples (float64, by layer;
    :attr:`CalibrationResult.input_power`)."""
    for _, q in pairs:
        q.reset_ranges()
        q.calibrating = True
    n = arrays[0].shape[0]
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="calibrate", unit="batch")
    size = min(batch_size, n)
    try:
        if keras.backend.backend() == "jax":
            parts = _record_compiled(model, arrays, starts, size)
        elif keras.backend.backend() == "tensorflow" and (traced := _record_traced(model, arrays, starts, size)):
            parts = traced
        else:
            parts = []
            for s in starts:
                batch = [a[s : s + batch_size] for a in arrays]
                with summing_squares(np.ones(len(batch[0]), np.float32)) as squares:
                    model(batch if len(batch) > 1 else batch[0], training=False)
                parts.append(squares.sums)
    finally:
        for _, q in pairs:
            q.calibrating = False
    sums = _added(parts)
    return {layer: sums[id(layer)] / n for layer in all_layers(model) if id(layer) in sums}


def _added(parts: list[dict[int, Any]]) -> dict[int, np.ndarray]:
    """The batches' sums of squares (backend tensors, by layer id) added in float64."""
    total: dict[int, np.ndarray] = {}
    for sums in parts:
        for key, value in sums.items():
            v = np.asarray(ops.convert_to_numpy(value), np.float64)
            total[key] = total[key] + v if key in total else v
    return total


def _rows(n: int, start: int, size: int) -> np.ndarray:
    """Each row's weight in a filled batch (:func:`filled_batch`): 1 for the samples, 0 for the copies."""
    return (np.arange(size) < n - start).astype(np.float32)


def _record_compiled(model: keras.Model, arrays: list[np.ndarray], starts: Any, size: int) -> list[dict[int, Any]]:
    """JAX: the forward passes of :func:`_record_ranges` as one compiled stateless call
    (``model.stateless_call`` under ``jax.jit``), every batch of ``size`` samples. Run eagerly,
    JAX compiles each operation for each shape it meets: the first calibration of the digits
    MLP in a process took seconds, a later one 0.1 s. The last batch is filled up with copies
    of its first sample (the ranges are minima and maxima: the same), so that one shape is
    compiled. The compiled call is kept on the model while its variables stay the same. Returns each
    batch's sums of squares (:mod:`~hgq_fpga.layers.squares`)."""
    import jax

    from .compat.keras import kept_on

    def run(tvals: list[Any], ntvals: list[Any], inputs: list[Any], rows: Any) -> tuple[list[Any], dict[int, Any]]:
        with summing_squares(rows) as squares:
            _, ntvals = model.stateless_call(tvals, ntvals, inputs if len(inputs) > 1 else inputs[0], training=False)
        return ntvals, squares.sums

    tv, ntv = model.trainable_variables, model.non_trainable_variables
    compiled = kept_on(model, "_hgq_calibration_pass", _variables_key(model), lambda: jax.jit(run))
    tvals, ntvals = [v.value for v in tv], [v.value for v in ntv]
    n, parts = arrays[0].shape[0], []
    for s in starts:
        ntvals, sums = compiled(tvals, ntvals, filled_batch(arrays, s, size), _rows(n, s, size))
        parts.append(sums)
    for v, value in zip(ntv, ntvals):
        v.assign(value)
    return parts


def _variables_key(model: keras.Model) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ids of the model's variables: a compiled calibration pass is kept on the model while they stay the same."""
    return tuple(id(v) for v in model.trainable_variables), tuple(id(v) for v in model.non_trainable_variables)


def _record_traced(model: keras.Model, arrays: list[np.ndarray], starts: Any,
                   size: int) -> list[dict[int, Any]] | None:
    """TensorFlow: the forward passes of :func:`_record_ranges` through one ``tf.function`` kept on
    the model, from the second calibration of the same model on (returns None the first time: the
    caller runs them eagerly; else each batch's sums of squares). A budget calibrates its model a
    dozen times or more in one ``fit`` (each
    check, each round of a repair): eagerly 0.08-0.13 s each on the digits MLP's 1,257 samples,
    traced 5 ms after a 0.2 s trace (the same ranges); a model calibrated once is not traced. Every
    batch of ``size`` samples (:func:`filled_batch`: one shape, one trace). The variables are the
    model's own (captured, read when called), so the function is kept while they stay the same."""
    import tensorflow as tf

    from .compat.keras import kept_on

    def run(batch: list[Any], rows: Any) -> dict[int, Any]:
        with summing_squares(rows) as squares:
            model(batch if len(batch) > 1 else batch[0], training=False)
        return squares.sums

    held = kept_on(model, "_hgq_calibration_pass", _variables_key(model), lambda: [None])
    if held[0] is None:
        held[0] = tf.function(run, autograph=False, reduce_retracing=True)  # (data of another size: no retrace a size)
        return None
    n = arrays[0].shape[0]
    return [held[0](filled_batch(arrays, s, size), _rows(n, s, size)) for s in starts]


def filled_batch(arrays: list[np.ndarray], start: int, size: int) -> list[np.ndarray]:
    """The samples ``start`` to ``start + size`` of each array; a last batch shorter than
    ``size`` is filled up with copies of its first sample (one shape for a compiled pass).

    >>> [b.tolist() for b in filled_batch([np.arange(5.0)], 3, 4)]
    [[3.0, 4.0, 3.0, 3.0]]
    """
    batch = [a[start : start + size] for a in arrays]
    if len(batch[0]) < size:
        batch = [np.concatenate([b, np.repeat(b[:1], size - len(b), axis=0)]) for b in batch]
    return batch


def _row(layer: keras.layers.Layer, q: ActivationQuantizer) -> dict[str, Any]:
    bits = ops.convert_to_numpy(q.bits())
    return {
        "layer": layer.name,
        "quantizer": q.name,
        "min": float(np.min(ops.convert_to_numpy(q.vmin))),
        "max": float(np.max(ops.convert_to_numpy(q.vmax))),
        "mean_bits": float(np.mean(bits)),
        "zero_bit_fraction": float(np.mean(bits == 0)),
    }

