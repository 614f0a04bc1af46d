"""QKeras quantizers as hgq_fpga formats: the per-quantizer half of :mod:`hgq_fpga.qkeras_import`.

Value grids, ``ap_fixed`` formats, the mapping of ``quantized_bits`` /
``quantized_relu`` / ``quantized_po2`` to them, QKeras-quantized weight values
and the exact output range of a linear layer. Model traversal lives in
:mod:`hgq_fpga.qkeras_import`.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np


class UnsupportedQKerasModel(ValueError):
    """A QKeras model, layer or quantizer that hgq_fpga cannot reproduce bit for bit."""


@dataclass(frozen=True)
class _Grid:
    """What is known of a tensor: its values are multiples of ``2**-f`` in ``[lo, hi]``.

    ``lo`` and ``hi`` are integer mantissas (Python ints) at ``f``.
    """

    f: int
    lo: int
    hi: int

    def kif(self) -> tuple[int, int, int]:
        """The smallest ``(k, i, f)`` format that holds every value of the grid."""
        k = 1 if self.lo < 0 else 0
        need = max(int(self.hi).bit_length() if self.hi > 0 else 0,
                   int(-self.lo - 1).bit_length() if self.lo < 0 else 0)
        return k, need - self.f, self.f


@dataclass(frozen=True)
class _Format:
    """An ``ap_fixed`` format with its modes, as the hgq_fpga quantizers take it."""

    k: int
    i: int
    f: int
    rounding: str
    overflow: str

    def grid(self) -> _Grid:
        top = 1 << max(self.i + self.f, 0)
        lo = -top if self.k else 0
        if self.k and self.overflow == "SAT_SYM" and self.k + self.i + self.f > 1:
            lo += 1
        return _Grid(self.f, lo if self.k + self.i + self.f > 0 else 0, top - 1 if self.k + self.i + self.f > 0 else 0)


def _fail(layer: str, what: str, received: str, fix: str) -> UnsupportedQKerasModel:
    return UnsupportedQKerasModel(f"layer {layer!r}: {what}. Received: {received}. {fix}")


def _log2_int(value: float) -> int | None:
    """``log2(value)`` when ``value`` is a positive power of two, else ``None``."""
    if not (value > 0.0 and math.isfinite(value)):
        return None
    mant, exp = math.frexp(value)
    return exp - 1 if mant == 0.5 else None


def _int_param(layer: str, q: Any, name: str) -> int:
    value = getattr(q, name)
    try:
        as_float = float(np.asarray(keras.ops.convert_to_numpy(value)).item())
    except (TypeError, ValueError):
        as_float = float("nan")
    if not as_float == round(as_float):
        raise _fail(layer, f"quantizer {q} needs an integer {name}", f"{name}={value!r}",
                    f"Use an integer {name}.")
    return round(as_float)


def _common_checks(layer: str, role: str, q: Any) -> None:
    if getattr(q, "use_stochastic_rounding", False):
        raise _fail(
            layer, f"{role} quantizer {q} uses stochastic rounding, which no fixed-point "
            "firmware reproduces", "use_stochastic_rounding=True",
            "Set use_stochastic_rounding=False (in qkeras-v3 1.2.1 quantized_bits and "
            "quantized_relu round to nearest-even in inference either way) and convert again.",
        )
    noise = float(np.asarray(keras.ops.convert_to_numpy(getattr(q, "qnoise_factor", 1.0))))
    if noise != 1.0:
        raise _fail(
            layer, f"{role} quantizer {q} mixes float and quantized values (qnoise_factor < 1)",
            f"qnoise_factor={noise}", "Set qnoise_factor=1.0 (the end of QKeras's noise schedule).",
        )


def _qb_base(layer: str, role: str, q: Any) -> tuple[int, int, int]:
    """``(bits, k, integer)`` of a quantized_bits after the common checks."""
    _common_checks(layer, role, q)
    bits, integer = _int_param(layer, q, "bits"), _int_param(layer, q, "integer")
    k = int(bool(q.keep_negative))
    if bits - k < 1:
        raise _fail(
            layer, f"{role} quantizer {q} has no magnitude bits: QKeras makes it a binary "
            "sign quantizer, not a fixed-point rounding", f"bits={bits}, keep_negative={bool(k)}",
            "Use at least 2 bits with keep_negative=True (1 without).",
        )
    return bits, k, integer


def _relu_act_params(layer: str, q: Any) -> tuple[int, int, int, str, str]:
    """``(bits, k, f, activation, overflow)`` of a checked ``quantized_relu`` activation quantizer."""
    _common_checks(layer, "activation", q)
    bits, integer = _int_param(layer, q, "bits"), _int_param(layer, q, "integer")
    if q.use_sigmoid:
        raise _fail(layer, f"activation quantizer {q} applies a sigmoid first, which is not "
                    "exact in fixed point", f"use_sigmoid={q.use_sigmoid}",
                    "Use use_sigmoid=0.")
    if q.negative_slope != 0.0:
        raise _fail(layer, f"activation quantizer {q} is a leaky ReLU; hgq_fpga has no exact "
                    "leaky ReLU layer", f"negative_slope={q.negative_slope}",
                    "Use negative_slope=0.0 and retrain.")
    if not q.is_quantized_clip and q.relu_upper_bound is not None:
        raise _fail(layer, f"activation quantizer {q} clips to a float relu_upper_bound after "
                    "quantizing", f"relu_upper_bound={q.relu_upper_bound}, is_quantized_clip=False",
                    "Use is_quantized_clip=True (the default) or relu_upper_bound=None.")
    if bits < 1:
        raise _fail(layer, f"activation quantizer {q} needs bits >= 1", f"bits={bits}", "")
    return bits, 0, bits - integer, "relu", "SAT"


def _bits_act_params(layer: str, q: Any) -> tuple[int, int, int, str, str]:
    """``(bits, k, f, activation, overflow)`` of a checked ``quantized_bits`` activation quantizer."""
    bits, k, integer = _qb_base(layer, "activation", q)
    alpha = q.alpha
    shift = 0
    if alpha is not None:
        scalar = None
        if not isinstance(alpha, str) and np.size(alpha) == 1:
            scalar = float(np.asarray(alpha, np.float64).reshape(()))
        shift = _log2_int(scalar) if scalar is not None else None
        if shift is None:
            raise _fail(
                layer, f"activation quantizer {q} scales by alpha={alpha!r}, which is not one "
                "fixed power of two (a data-dependent or non-power-of-two scale is not fixed point)",
                f"alpha={alpha!r}", "Use alpha=None or alpha=1 on activations.",
            )
    f = bits - k - integer - shift
    overflow = "SAT_SYM" if (k and q.symmetric) else "SAT"
    return bits, k, f, "linear", overflow


def _activation_format(
    layer: str, q: Any, in_grid: _Grid | None, inputs_on_grid: bool
) -> tuple[str, _Format | None]:
    """``(activation name, format)`` of a QKeras activation; format ``None`` for plain ones.

    The format's rounding is ``TRN`` where no rounding can happen (the input
    grid is at least as coarse), else ``RND_CONV`` (QKeras's ``round``, half to even).
    """
    qk = importlib.import_module("qkeras")
    base = importlib.import_module("qkeras.base_quantizer").BaseQuantizer
    if q is None:
        return "linear", None
    name = getattr(q, "__name__", None)
    if callable(q) and name in ("linear", "relu") and not isinstance(q, base):
        return name, None
    cls = type(q).__name__
    if isinstance(q, qk.quantized_relu):
        bits, k, f, act, overflow = _relu_act_params(layer, q)
    elif isinstance(q, qk.quantized_bits):
        bits, k, f, act, overflow = _bits_act_params(layer, q)
    else:
        raise _fail(
            layer, f"activation {q} ({cls}) is not a fixed-point rounding hgq_fpga can reproduce "
            "exactly: supported are quantized_bits, quantized_relu and plain relu/linear",
            f"{cls}", "Replace it (e.g. quantized_tanh/quantized_sigmoid by quantized_bits "
            "followed by hgq_fpga's table QActivation after import) and retrain.",
        )
    i = bits - k - f
    if in_grid is not None:
        rounding = "TRN" if in_grid.f <= f else "RND_CONV"
    else:
        rounding = "TRN" if inputs_on_grid else "RND_CONV"
    return act, _Format(k, i, f, rounding, overflow)


def _weight_values(
    layer: str, role: str, q: Any, values: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-element fractional bits of QKeras-quantized ``values`` and the WeightQuantizer options.

    Checks that every value is exactly ``m * 2**-f`` inside the quantizer's range.
    """
    qk = importlib.import_module("qkeras")
    cls = type(q).__name__
    v = np.asarray(values, np.float64)
    opts: dict[str, Any] = {"rounding": "RND_CONV"}
    if isinstance(q, qk.quantized_bits):
        bits, k, integer = _qb_base(layer, role, q)
        alpha = q.alpha
        if isinstance(alpha, str) and alpha != "auto_po2":
            raise _fail(layer, f"{role} quantizer {q} uses a float scale (alpha={alpha!r}) that is "
                        "not a power of two", f"alpha={alpha!r}",
                        "Use alpha=1 (one fixed format) or alpha='auto_po2' (per-channel powers "
                        "of two) and retrain.")
        scale = np.asarray(keras.ops.convert_to_numpy(q.scale), np.float64) if q.scale is not None else np.ones(())
        logs = [_log2_int(float(s)) for s in scale.ravel()]
        if any(s is None for s in logs):
            raise _fail(layer, f"{role} quantizer {q} has a scale that is not a power of two",
                        f"alpha={alpha!r}, scale={scale.ravel()[:8].tolist()}",
                        "Use alpha=1 or alpha='auto_po2' and retrain.")
        log_scale = np.asarray(logs, np.int64).reshape(scale.shape)
        f = np.broadcast_to((bits - k - integer) - log_scale, v.shape).astype(np.int64)
        symmetric = bool(q.symmetric) or isinstance(alpha, str)
        lo_m = (-(2 ** (bits - 1)) + int(symmetric)) if k else 0
        hi_m = 2 ** (bits - k) - 1 if not k else 2 ** (bits - 1) - 1
        if np.all(f == f.flat[0]):  # one format: keep QKeras's saturation for further training
            opts.update(k=k, i=bits - k - int(f.flat[0]), overflow="SAT_SYM" if (k and symmetric) else "SAT")
        m = v * np.exp2(f.astype(np.float64))
        ok = (m == np.round(m)) & (m >= lo_m) & (m <= hi_m)
    elif isinstance(q, qk.quantized_po2):
        _common_checks(layer, role, q)
        mag = np.abs(v)
        exp = np.zeros(v.shape, np.int64)
        nz = mag > 0
        if np.any(nz):
            exp[nz] = np.floor(np.log2(mag[nz])).astype(np.int64)
        f = -exp
        ok = ~nz | (mag == np.exp2(exp.astype(np.float64)))
    else:
        raise _fail(layer, f"{role} quantizer {q} ({cls}) is not supported: weights take "
                    "quantized_bits or quantized_po2", cls,
                    "Use quantized_bits(bits, integer, alpha=1) or quantized_po2(bits) and retrain.")
    if not np.all(ok):
        bad = int(np.flatnonzero(~ok.ravel())[0])
        raise _fail(
            layer, f"the {role} that QKeras's {q} produces is not on the quantizer's grid (QKeras "
            "computes x + (q(x) - x) in float32, which leaves the grid for weights far outside the "
            "quantizer's range)", f"value {float(v.ravel()[bad])!r} at flat index {bad}, f={int(f.ravel()[bad])}",
            "Clip the float weights to the quantizer's range (e.g. with a kernel_constraint) and convert again.",
        )
    return f, opts


def _act_quantizer(fmt: _Format, shape: tuple[int | None, ...]) -> dict[str, Any]:
    known = all(d is not None for d in shape[1:])
    return {
        "f0": float(fmt.f), "i": int(fmt.i), "k": int(fmt.k), "rounding": fmt.rounding,
        "overflow": fmt.overflow, "granularity": "element" if known else "tensor",
        "f_min": float(min(-12, fmt.f)), "f_max": float(max(24, fmt.f)),
    }


def _identity_format(layer: str, grid: _Grid | None, why: str) -> _Format:
    """The input format of an hgq_fpga layer that must leave QKeras's values unchanged."""
    if grid is None:
        raise _fail(
            layer, f"its input is not quantized: in QKeras it sees raw float values, which a "
            f"fixed-point {why} cannot take bit-exactly", "an unquantized float tensor",
            "Put a QActivation(quantized_bits(...)) (or quantized_relu) before it, as the "
            "firmware's input format, and retrain.",
        )
    k, i, f = grid.kif()
    return _Format(k, i, f, "TRN", "WRAP")


def _min_f(values: np.ndarray) -> int | None:
    """The fewest fractional bits that hold every nonzero value exactly (None if all zero)."""
    v = np.asarray(values, np.float64)
    v = v[v != 0]
    if v.size == 0:
        return None
    _, exps = np.frexp(v)
    f = int(53 - np.min(exps))
    lo = f - 120
    while f > lo:  # drop trailing zero bits
        m = v * np.exp2(f - 1)
        if not np.all(m == np.round(m)):
            break
        f -= 1
    return f


def _to_mantissas(values: np.ndarray, f: int) -> np.ndarray:
    return np.array([int(x) for x in np.round(np.asarray(values, np.float64) * 2.0**f).ravel()],
                    dtype=object).reshape(np.shape(values))


def _linear_grid(in_grid: _Grid, kernel: np.ndarray, bias: np.ndarray | None) -> _Grid:
    """Exact grid of ``x @ W + b`` (``W`` reshaped to ``(fan_in, units)``) for ``x`` on ``in_grid``.

    Zero padding is covered: the input interval always contains 0 here.
    """
    units = kernel.shape[-1]
    w2 = kernel.reshape(-1, units)
    fw = _min_f(w2)
    fb = _min_f(bias) if bias is not None else None
    f_out = max([g for g in (None if fw is None else fw + in_grid.f, fb) if g is not None], default=0)
    lo_x, hi_x = min(in_grid.lo, 0), max(in_grid.hi, 0)
    if fw is None:
        lo_y = hi_y = np.zeros(units, dtype=object)
    else:
        wm = _to_mantissas(w2, fw)
        pos = np.where(wm > 0, wm, 0)
        neg = np.where(wm < 0, wm, 0)
        hi_y = (pos * hi_x + neg * lo_x).sum(axis=0) << (f_out - fw - in_grid.f)
        lo_y = (pos * lo_x + neg * hi_x).sum(axis=0) << (f_out - fw - in_grid.f)
    if bias is not None and fb is not None:
        bm = _to_mantissas(bias, fb)
        bm = np.array([int(b) << (f_out - fb) for b in bm], dtype=object)
        lo_y, hi_y = lo_y + bm, hi_y + bm
    return _Grid(f_out, int(min(lo_y)), int(max(hi_y)))
