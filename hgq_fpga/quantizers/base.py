"""Shared machinery of the Keras quantizers: trainable fractional bits and the
straight-through / surrogate gradients.

The forward value of a quantized tensor is exactly
:func:`hgq_fpga.fixed.quantize_core` (the one definition of the numbers),
evaluated with ``keras.ops``. The backward pass is

* d q / d x = 1 (straight-through estimator for rounding),
* d q / d f = -ln 2 * (q - x) (HGQ's surrogate: one more fractional bit
  roughly halves the rounding error ``q - x``),

written with ``keras.ops.custom_gradient`` so it works on every Keras
backend and adds only a handful of operations to the training graph.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import keras
import numpy as np

from ..compat import ops64 as ops
from ..fixed import OverflowMode, RoundingMode
from .granularity import Granularity

__all__ = [
    "BitQuantizerBase",
    "ElementClip",
    "bit_length",
    "bits_with_gradient",
    "quantize_with_gradient",
    "scale_gradient",
]

LN2 = math.log(2.0)


def pow2(f: Any) -> Any:
    """``2**f`` for a float tensor ``f`` of whole numbers with ``|f| <= 126``, exactly (``keras.ops``).

    On TensorFlow and JAX the float is built from its exponent field: the integer
    ``(f + bias) * 2**mantissa_bits``, computed in floating point (exact: at most 8 and 11
    significant bits) and cast, then bitcast. TensorFlow's ``Pow`` costs about 9 ns an element
    on a CPU core (0.57 ms a step for the bits of a 256x256 kernel, a third of what
    quantization added to a float training step) where this is a multiply, an add and a
    cast (its ``LeftShift`` took 20 us on a 256x256 kernel, 3x a multiply, so the shift is
    a multiply by ``2**mantissa_bits``); and XLA's ``exp2`` on a CPU is off by an ulp for most
    whole exponents beyond +-12 in float32 (2**13, 2**15, ...), which put JAX's
    quantization grid off the firmware's. The quantizers' ``f_min``/``f_max`` stay
    within :data:`F_LIMIT`; :func:`pow2_any` takes any exponent. Other dtypes and
    backends: ``ops.exp2`` (torch's is exact for whole numbers).
    """
    dtype = keras.backend.standardize_dtype(f.dtype)
    backend = keras.backend.backend()
    if dtype not in _EXPONENT or backend not in ("tensorflow", "jax"):
        return ops.exp2(f)
    itype, bias, shift = _EXPONENT[dtype]
    return _bitcast(ops.cast(f * float(2**shift) + float(bias * 2**shift), itype), dtype)


def floor_log2(v: Any) -> Any | None:
    """``floor(log2 v)`` for finite ``v > 0``, exactly, from the exponent field (TensorFlow and JAX,
    float32 and float64; None elsewhere: the caller takes ``log2``). A subnormal's is that of its
    mantissa field as a (normal) float, less ``bias - 1 + mantissa bits`` (not ``v`` scaled up: a
    CPU flushes subnormal operands to zero). ``log2`` is a transcendental of several ns an element
    and rounds across integers (``log2(2**24 - 1)`` is 24.0 in float32), where this is a bitcast
    and a shift.

    Example:
        >>> import keras
        >>> out = floor_log2(keras.ops.convert_to_tensor([0.75, 1.0, 5.0, 2.0**-130]))
        >>> on_torch = keras.backend.backend() == "torch"  # (there: None, and the caller takes log2)
        >>> (out is None) if on_torch else [float(x) for x in out] == [-1.0, 0.0, 2.0, -130.0]
        True
    """
    dtype = keras.backend.standardize_dtype(v.dtype)
    if dtype not in _EXPONENT or keras.backend.backend() not in ("tensorflow", "jax"):
        return None
    itype, bias, shift = _EXPONENT[dtype]
    raw = _bitcast(v, itype)  # (the sign bit of v > 0 is 0)
    e = ops.right_shift(raw, shift)
    sub = ops.right_shift(_bitcast(ops.cast(raw, dtype), itype), shift) - (bias - 1 + shift)
    return ops.cast(ops.where(ops.equal(e, 0), sub, e) - bias, dtype)


def bit_length(n: Any) -> Any:
    """Bits of whole numbers ``n >= 0``: ``floor(log2 n) + 1``, and 0 for 0 (float in, float out).

    On TensorFlow and JAX (float32, float64) the biased exponent field less ``bias - 1``: 0 for
    ``n = 0`` (its field is 0, clipped) and exact for every whole ``n`` the dtype holds (normal
    from 1 on); a bitcast, a shift, a subtraction and a clip. Elsewhere ``log2`` corrected with
    exact powers of two.

    Example:
        >>> import keras
        >>> [float(x) for x in bit_length(keras.ops.convert_to_tensor([0.0, 1.0, 7.0, 8.0, 2.0**24]))]
        [0.0, 1.0, 3.0, 4.0, 25.0]
    """
    dtype = keras.backend.standardize_dtype(n.dtype)
    if dtype in _EXPONENT and keras.backend.backend() in ("tensorflow", "jax"):
        itype, bias, shift = _EXPONENT[dtype]
        field = ops.right_shift(_bitcast(n, itype), shift)
        return ops.cast(ops.maximum(field - (bias - 1), 0), dtype)
    e = ops.floor(ops.log2(ops.maximum(n, 1.0)))
    e = ops.where(ops.greater(ops.exp2(e), n), e - 1.0, e)
    e = ops.where(ops.less_equal(ops.exp2(e + 1.0), n), e + 1.0, e)
    return ops.where(ops.greater(n, 0.0), e + 1.0, 0.0 * n)


def _bitcast(x: Any, dtype: str) -> Any:
    """``x``'s bits as ``dtype`` (of the same size; TensorFlow and JAX)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.bitcast(x, dtype)
    import jax

    return jax.lax.bitcast_convert_type(x, dtype)


def pow2_any(v: Any) -> Any:
    """``2**v`` for whole-number ``v`` of any size: ``2**a * 2**(v - a)`` with ``a = floor(v / 2)``,
    each factor from the exponent field (:func:`pow2`) and clipped to the normal range. Exact
    wherever ``2**v`` is a normal float (``-126 <= v <= 127`` in float32: both factors are then
    within it); inf above, and below the product underflows as the CPU multiplies (TensorFlow and
    XLA flush subnormals to 0). Not ``where(normal, pow2(v), exp2(v))``: that computes ``exp2`` of
    every element too, TensorFlow's ``Pow`` at about 9 ns an element (reading the cost of a
    64-256-256-10 MLP took 1.7 ms with it, 1.4 ms without).

    Example:
        >>> import keras
        >>> [float(x) for x in pow2_any(keras.ops.convert_to_tensor([-126.0, 3.0, 127.0, 2000.0]))]
        [1.1754943508222875e-38, 8.0, 1.7014118346046923e+38, inf]
    """
    dtype = keras.backend.standardize_dtype(v.dtype)
    if dtype not in _EXPONENT or keras.backend.backend() not in ("tensorflow", "jax"):
        return ops.exp2(v)
    bias = float(_EXPONENT[dtype][1])
    a = ops.floor(v * 0.5)
    return pow2(ops.clip(a, 1.0 - bias, bias)) * pow2(ops.clip(v - a, 1.0 - bias, bias))


#: the exponent field of a float dtype: (integer dtype, bias, mantissa bits)
_EXPONENT = {"float32": ("int32", 127, 23), "float64": ("int64", 1023, 52)}
#: ``f_min`` and ``f_max`` of a quantizer stay within ``[-F_LIMIT, F_LIMIT]`` (2**f a normal float32)
F_LIMIT = 120.0


def sum_to_shape(g: Any, shape: tuple[int | None, ...]) -> Any:
    """Sum a broadcast gradient ``g`` back to ``shape`` (same rank, 1 = broadcast)."""
    axes = tuple(a for a, n in enumerate(shape) if n == 1 and g.shape[a] != 1)
    return ops.sum(g, axis=axes, keepdims=True) if axes else g


def quantize_with_gradient(
    x: Any, f: Any, quantize_fn: Callable[[Any, Any], Any]
) -> Any:
    """``q = quantize_fn(x, round(f))`` with the HGQ gradients.

    ``d q/d x = 1`` (straight-through) and ``d q/d f = -ln2 * (q - x)``
    (summed over the elements that share one ``f``).

    Args:
        x: values to quantize.
        f: float fractional bits (a tensor, not a variable), same rank as
            ``x`` and broadcastable to it.
        quantize_fn: ``(x, integer f) -> q``, the exact quantization. It
            must not read variables (read them before and close over the values).
    """
    f_shape = tuple(f.shape)
    if isinstance(x, keras.Variable):  # a read tensor, not the variable itself
        x = ops.reshape(x, tuple(x.shape))

    @ops.custom_gradient
    def _quantize(x: Any, f: Any) -> Any:
        q = quantize_fn(x, ops.round(f))

        def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any]:
            if upstream is None:
                (upstream,) = args
            return upstream, sum_to_shape(upstream * (q - x) * (-LN2), f_shape)

        return q, grad

    return _quantize(x, f)


def scale_gradient(x: Any, scale: Any) -> Any:
    """``x`` unchanged, with the gradient that reaches it through here multiplied by ``scale``.

    ``d out / d x = scale`` (a scalar tensor, itself without gradient). On TensorFlow and
    JAX a custom gradient: the forward pass is an identity and the backward one multiply,
    where ``stop_gradient(x) + scale * (x - stop_gradient(x))`` computes four elementwise
    operations forward, on every element of the bits (the budget gates each layer's
    packed bits in every training step). torch runs that formula (its custom function
    would return its input unchanged, which autograd treats as a view).

    Example:
        >>> import keras
        >>> float(scale_gradient(keras.ops.convert_to_tensor(3.0), keras.ops.convert_to_tensor(0.5)))
        3.0
    """
    if keras.backend.backend() == "torch":
        return ops.stop_gradient(x) + scale * (x - ops.stop_gradient(x))

    # scale is an argument, not closed over (see bits_with_gradient)
    @ops.custom_gradient
    def _scaled(x: Any, scale: Any) -> Any:
        def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any]:
            if upstream is None:
                (upstream,) = args
            return upstream * scale, ops.zeros_like(scale)

        return x, grad

    return _scaled(x, scale)


def bits_with_gradient(f: Any, base: Any, live: Any | None = None) -> Any:
    """Bits ``max(base + round(f), 0)`` (0 where not ``live``), d/df = 1 where > 0.

    Args:
        f: float fractional bits (tensor).
        base: ``k + i`` (no gradient), broadcastable against ``f``.
        live: optional boolean mask of elements that exist (e.g. nonzero weights).
    """
    f_shape = tuple(f.shape)
    base = ops.stop_gradient(ops.convert_to_tensor(base, f.dtype))
    live = ops.ones_like(base) if live is None else ops.cast(ops.stop_gradient(live), f.dtype)

    # base and live are arguments, not closed over: a custom gradient that closes over
    # tensors of the enclosing trace fails inside JAX's lax.cond (the budget's hook)
    @ops.custom_gradient
    def _bits(f: Any, base: Any, live: Any) -> Any:
        b = base + ops.round(f)
        alive = ops.logical_and(ops.greater(b, 0.0), ops.greater(live, 0.0))
        out = ops.where(alive, b, 0.0)

        def grad(*args: Any, upstream: Any = None) -> Any:
            if upstream is None:
                (upstream,) = args
            return (sum_to_shape(ops.where(alive, upstream, 0.0), f_shape), ops.zeros_like(base),
                    ops.zeros_like(live))

        return out, grad

    return _bits(f, base, live)


class BitQuantizerBase(keras.layers.Layer):
    """Holds the trainable fractional bits ``f`` of one tensor.

    Standing alone, the quantizer owns a variable ``f``. Inside a quantized
    layer, the layer packs the ``f`` of all its trainable quantizers into one
    variable (:class:`~hgq_fpga.quantizers.packing.PackedBits`) and each
    quantizer reads its slice: one optimizer update per layer instead of one
    per quantizer, which keeps training overhead low. Read ``f`` with
    :attr:`f` (a tensor) and change it with :meth:`set_f`.

    Args:
        f0: initial fractional bits.
        granularity: ``"element"``, ``"channel"`` or ``"tensor"``.
        rounding: an ``ap_fixed`` rounding mode name.
        overflow: an ``ap_fixed`` overflow mode name.
        f_min: lower clip of ``f`` during training.
        f_max: upper clip of ``f``.
        trainable_bits: whether ``f`` is trained.
    """

    def __init__(
        self,
        *,
        f0: float = 6.0,
        granularity: str = "element",
        rounding: str = "TRN",
        overflow: str = "WRAP",
        f_min: float = -12.0,
        f_max: float = 24.0,
        trainable_bits: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not (-F_LIMIT <= f_min <= f0 <= f_max <= F_LIMIT):
            raise ValueError(
                f"{type(self).__name__}: need -{F_LIMIT:g} <= f_min <= f0 <= f_max <= {F_LIMIT:g} "
                f"(fractional bits). Received: f0={f0}, f_min={f_min}, f_max={f_max}"
            )
        self.f0 = float(f0)
        self.granularity = Granularity.from_string(granularity)
        self.rounding = RoundingMode.from_string(rounding)
        self.overflow = OverflowMode.from_string(overflow)
        self.f_min = float(f_min)
        self.f_max = float(f_max)
        self.trainable_bits = bool(trainable_bits)
        self.defer_bits = False
        self.bits_shape: tuple[int, ...] = ()
        self._own_f: keras.Variable | None = None
        self._packed: tuple[Any, int] | None = None

    def _add_bits(self, shape: tuple[int, ...]) -> None:
        """Create ``f`` of ``shape``, unless a layer will pack it (``defer_bits``)."""
        self.bits_shape = tuple(int(n) for n in shape)
        if self.defer_bits:
            return
        self._own_f = self.add_weight(
            name="f",
            shape=self.bits_shape,
            initializer=keras.initializers.Constant(self.f0),
            trainable=self.trainable_bits,
            constraint=ElementClip(self.f_min, self.f_max),
        )

    def attach(self, variable: keras.Variable, offset: int) -> None:
        """Read ``f`` from ``variable[offset : offset + size]`` (set by PackedBits)."""
        # not tracked by Keras: the variable belongs to the PackedBits layer
        object.__setattr__(self, "_packed", (variable, int(offset)))

    @property
    def bits_size(self) -> int:
        """Number of fractional-bit values of this quantizer."""
        return int(np.prod(self.bits_shape, dtype=np.int64))

    def f_value(self) -> Any:
        """The float ``f`` as a tensor of ``bits_shape`` (gradients reach the variable)."""
        if self._packed is not None:
            var, offset = self._packed
            flat = ops.convert_to_tensor(var)
            return ops.reshape(ops.slice(flat, (offset,), (self.bits_size,)), self.bits_shape)
        if self._own_f is None:
            raise ValueError(f"{self.name}: not built yet; call the layer on data first.")
        return ops.reshape(ops.convert_to_tensor(self._own_f), self.bits_shape)

    def f_array(self) -> np.ndarray:
        """:meth:`f_value`'s numbers as a numpy array, read without a backend operation (an eager slice
        and reshape compile on JAX, once per shape and offset)."""
        if self._packed is not None:
            var, offset = self._packed
            flat = np.asarray(ops.convert_to_numpy(var)).reshape(-1)
            return flat[offset : offset + self.bits_size].reshape(self.bits_shape)
        if self._own_f is None:
            raise ValueError(f"{self.name}: not built yet; call the layer on data first.")
        return np.asarray(ops.convert_to_numpy(self._own_f)).reshape(self.bits_shape)

    def f_exact_array(self) -> np.ndarray:
        """:meth:`f_exact` as a float64 numpy array (``round``, half to even, as ``ops.round``)."""
        return np.round(self.f_array().astype(np.float64))

    @property
    def f(self) -> Any:
        """The current (float) fractional bits, shape ``bits_shape``."""
        return self.f_value()

    def set_f(self, value: Any) -> None:
        """Assign fractional bits (broadcast to ``bits_shape``, clipped to the limits)."""
        new = np.clip(np.broadcast_to(np.asarray(value, "float32"), self.bits_shape), self.f_min, self.f_max)
        if self._packed is not None:
            var, offset = self._packed
            flat = np.array(ops.convert_to_numpy(var))
            flat[offset : offset + self.bits_size] = new.ravel()
            var.assign(flat)
        elif self._own_f is not None:
            self._own_f.assign(new)
        else:
            raise ValueError(f"{self.name}: not built yet; call the layer on data first.")

    def f_exact(self) -> Any:
        """Integer fractional bits without gradient: ``round(f)`` (half to even)."""
        return ops.round(ops.stop_gradient(self.f_value()))

    def get_build_config(self) -> None:
        """Quantizers are built by the layer that owns them, never on their own."""
        return None

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            f0=self.f0,
            granularity=str(self.granularity),
            rounding=str(self.rounding),
            overflow=str(self.overflow),
            f_min=self.f_min,
            f_max=self.f_max,
            trainable_bits=self.trainable_bits,
        )
        return config


class ElementClip(keras.constraints.Constraint):
    """Clip a bit-width variable after each update, to one ``[low, high]`` or one per element.

    Equal bounds collapse to scalars, so the training graph holds no large constants.
    """

    def __init__(self, low: Any, high: Any) -> None:
        low, high = np.asarray(low, "float32"), np.asarray(high, "float32")
        self.low = float(low.flat[0]) if np.all(low == low.flat[0]) else low
        self.high = float(high.flat[0]) if np.all(high == high.flat[0]) else high

    def __call__(self, w: Any) -> Any:
        return ops.minimum(ops.maximum(w, self.low), self.high)
