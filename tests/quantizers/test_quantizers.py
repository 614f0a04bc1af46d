"""Keras quantizers: same numbers as the numpy core, HGQ gradients, pruning."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from keras import ops

from hgq_fpga.fixed import OverflowMode, RoundingMode, ki_from_range, quantize, quantize_core, round_mantissa
from hgq_fpga.quantizers import (
    CALIBRATED,
    ActivationQuantizer,
    WeightQuantizer,
    get,
    granular_shape,
    quantize_with_gradient,
    scale_gradient,
)
from hgq_fpga.quantizers.base import F_LIMIT, floor_log2, pow2, pow2_any

MODES = [(r, o) for r in RoundingMode for o in OverflowMode]


def _random_formats(rng: np.random.Generator, shape: tuple[int, ...]):
    k = rng.integers(0, 2, shape)
    f = rng.integers(-3, 8, shape)
    w = rng.integers(0, 12, shape)  # total width, float32-exact
    i = w - k - f
    return k, i, f


@pytest.mark.parametrize("rounding,overflow", MODES, ids=[f"{r}-{o}" for r, o in MODES])
def test_keras_ops_path_equals_numpy(rounding, overflow, rng):
    shape = (64, 32)
    k, i, f = _random_formats(rng, shape)
    # values on a 2**-(f+3) grid, spanning far beyond every range (overflow)
    x = rng.integers(-(2**14), 2**14, shape) * np.exp2(-(f + 3.0))
    expected = quantize(x, k, i, f, rounding, overflow)
    got = quantize_core(
        ops.convert_to_tensor(x, "float32"),
        *(ops.convert_to_tensor(a, "float32") for a in (k, i, f)),
        rounding,
        overflow,
        xp=ops,
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(got).astype(np.float64), expected)


def test_ki_from_range_keras_equals_numpy(rng):
    f = rng.integers(-2, 8, (500,)).astype("float32")
    lo = quantize(rng.standard_normal(500) * 8, 1, 10, f, "TRN", "WRAP").astype("float32")
    hi = quantize(rng.standard_normal(500) * 8, 1, 10, f, "TRN", "WRAP").astype("float32")
    hi[:50] = np.exp2(rng.integers(-2, 4, 50))  # exact powers of two
    lo[50:100] = -np.exp2(rng.integers(-2, 4, 50))
    lo[100:120] = hi[100:120] = 0.0  # empty ranges
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    lo, hi = (quantize(a, 1, 12, f, "TRN", "WRAP").astype("float32") for a in (lo, hi))
    k_np, i_np = ki_from_range(lo.astype(float), hi.astype(float), f.astype(float))
    k_k, i_k = ki_from_range(*(ops.convert_to_tensor(a) for a in (lo, hi, f)), xp=ops)
    np.testing.assert_array_equal(ops.convert_to_numpy(k_k), k_np)
    np.testing.assert_array_equal(ops.convert_to_numpy(i_k), i_np)
    # the format really holds the range, and one integer bit less would not
    q = quantize(np.stack([lo, hi]), k_np, i_np, f, "TRN", "WRAP")
    np.testing.assert_array_equal(q, np.stack([lo, hi]))
    live = (lo < 0) | (hi > 0)
    q_small = quantize(np.stack([lo, hi]), k_np, i_np - 1, f, "TRN", "WRAP")
    assert np.all(np.any(q_small != np.stack([lo, hi]), axis=0)[live])


def test_surrogate_gradients(rng, value_and_grads):
    x = rng.standard_normal((8, 5)).astype("float32")
    f = rng.integers(0, 5, (1, 5)).astype("float32")
    q = quantize(x, 1, 4, f, "RND", "SAT").astype("float32")

    def fn(x_, f_):
        def exact(v, f_int):
            one = 0.0 * f_int + 1.0
            return quantize_core(v, one, 4.0 * one, f_int, "RND", "SAT", xp=ops)

        return quantize_with_gradient(x_, f_, exact)

    out, (gx, gf) = value_and_grads(fn, x, f)
    np.testing.assert_array_equal(out, q)
    np.testing.assert_array_equal(gx, np.ones_like(x))
    expected = -math.log(2.0) * np.sum(q - x, axis=0, keepdims=True)
    np.testing.assert_allclose(gf, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("share", [0.0, 0.25, 1.0])
def test_scale_gradient_passes_the_values_and_scales_only_the_gradient(share, rng, value_and_grads):
    """The budget's gate on the bits (``task_share``): the values unchanged, their gradient times the share."""
    x = rng.standard_normal((6, 4)).astype("float32")
    upstream = rng.standard_normal((6, 4)).astype("float32")

    def fn(x_, s_):
        return scale_gradient(x_, s_) * ops.convert_to_tensor(upstream)

    out, (gx, gs) = value_and_grads(fn, x, np.float32(share))
    np.testing.assert_array_equal(out, x * upstream)
    np.testing.assert_array_equal(gx, share * upstream)
    assert float(gs) == 0.0


@pytest.mark.parametrize("fixed_i", [None, 1], ids=["i-from-values", "i=1"])
@pytest.mark.parametrize("rounding,overflow", MODES, ids=[f"{r}-{o}" for r, o in MODES])
def test_weight_quantize_with_numpy_on_float64_copies_equals_the_keras_path(rounding, overflow, fixed_i, rng):
    """The repair ranks bits on ``quantize_with(..., xp=np)`` of float64 copies of the float32
    weights: the numbers the layer computes, on ties, far beyond 1 (overflow), signs and zeros."""
    shape = (48, 40)
    # (a fixed format up to 24 bits wide: float32 holds its saturation bounds; from the values, f up
    # to 24 with weights of any size, beyond 2**23 units of the LSB)
    f = rng.integers(-6, 25 if fixed_i is None else 23, shape).astype(np.float64)
    # float32 weights: ties at the grid's half steps, neighbours of ties, and random values
    tie = (rng.integers(-(2**10), 2**10, shape) + 0.5) * np.exp2(-f)
    w = np.where(rng.random(shape) < 0.5, tie, rng.normal(0, 4.0, shape)).astype(np.float32)
    w[:4] = np.nextafter(w[:4], np.float32(np.inf))
    w[4:6] = 0.0
    wq = WeightQuantizer(rounding=str(rounding), overflow=str(overflow), i=fixed_i)
    wq.build(shape)
    keras_q = np.asarray(ops.convert_to_numpy(wq.quantize_with(ops.convert_to_tensor(w), ops.convert_to_tensor(
        f.astype(np.float32)))), np.float64)
    numpy_q = wq.quantize_with(w.astype(np.float64), f, xp=np)
    assert numpy_q.dtype == np.float64
    np.testing.assert_array_equal(numpy_q, keras_q)


@pytest.mark.parametrize("granularity", ["element", "channel", "tensor"])
@pytest.mark.parametrize("fixed_i", [None, 1], ids=["i-from-values", "i=1"])
def test_firmware_values_in_numpy_are_the_layers_quantized_weights(granularity, fixed_i, rng):
    """What the frontend reads (``firmware_values``, numpy) is ``qkernel`` / ``qbias`` (the backend's
    operations), bit for bit, and ``format_of`` takes the same ``f``: the layers' bits packed into
    one variable, fractional bits on their rounding ties (2.5 rounds to 2, 3.5 to 4), weights on
    ties of their grid, beyond the saturation and zero."""
    from hgq_fpga.layers import QDense

    layer = QDense(24, kernel_quantizer={"granularity": granularity, "i": fixed_i, "overflow": "WRAP"},
                   bias_quantizer={"granularity": granularity})
    layer.build((None, 16))
    assert layer.bits_pack is not None  # (the case read through the packed variable)
    for q, v in ((layer.kernel_quantizer, layer.kernel), (layer.bias_quantizer, layer.bias)):
        f = rng.integers(-2, 9, q.bits_shape) + rng.choice([0.0, 0.5, 0.25], q.bits_shape)
        q.set_f(f)
        f_int = np.round(f)  # half to even
        w = np.where(rng.random(v.shape) < 0.5, (rng.integers(-300, 300, v.shape) + 0.5) * np.exp2(-f_int),
                     rng.normal(0, 3.0, v.shape)).astype(np.float32)
        w.flat[:3] = 0.0
        v.assign(w)
        backend = np.asarray(ops.convert_to_numpy(q.quantize_values(v)))
        numpy = q.firmware_values(v)
        assert numpy.dtype == np.float32
        np.testing.assert_array_equal(numpy, backend)
        np.testing.assert_array_equal(q.f_exact_array(), np.asarray(ops.convert_to_numpy(q.f_exact())))
    np.testing.assert_array_equal(layer.kernel_quantizer.firmware_values(layer.kernel),
                                  np.asarray(ops.convert_to_numpy(layer.qkernel)))


@pytest.mark.parametrize("rounding", list(RoundingMode), ids=str)
def test_rounding_whole_float32_mantissas_from_2_to_the_23_keeps_them(rounding):
    """From 2**23 a float32 is a whole number and ``floor(v) + 0.5`` is not representable: every
    rounding mode must return ``v`` itself (RND returned v + 1 for even v), as numpy does in float64."""
    v = np.concatenate([np.arange(2**23 - 4, 2**23 + 8), np.arange(2**24 - 8, 2**24 + 16, 2),
                        [2.0**30, 2.0**60]]).astype(np.float32)
    v = np.concatenate([v, -v])
    got = np.asarray(ops.convert_to_numpy(round_mantissa(ops.convert_to_tensor(v), rounding, xp=ops)), np.float64)
    np.testing.assert_array_equal(got, v.astype(np.float64))
    np.testing.assert_array_equal(round_mantissa(v.astype(np.float64), rounding), v.astype(np.float64))


def test_weight_quantizer_prunes_and_counts_bits():
    wq = WeightQuantizer(f0=3)
    w = np.array([0.3, -0.05, 1.9, -2.0, 0.0, 0.0625], "float32")
    wq.build(w.shape)
    q = ops.convert_to_numpy(wq.quantize_values(w))
    np.testing.assert_array_equal(q, quantize(w, 1, 8, 3, "RND", "SAT_SYM"))
    bits = ops.convert_to_numpy(wq.bits(w))
    # 0.25: ufixed<2,-1>+... -> k=0,i=-1,f=3 -> 2 bits; -0.05 -> 0 (pruned)
    # 1.875: k=0,i=1,f=3 -> 4; -2: k=1,i=1,f=3 -> 5; 0 -> 0; 0.0625 rounds to 0.125? no: RND(0.5)=1
    np.testing.assert_array_equal(q, [0.25, 0.0, 1.875, -2.0, 0.0, 0.125])
    np.testing.assert_array_equal(bits, [2, 0, 4, 5, 0, 1])
    wq.set_f(-2.0)  # f=-2: step 4, everything here rounds to 0
    assert not np.any(ops.convert_to_numpy(wq.quantize_values(w)))
    assert not np.any(ops.convert_to_numpy(wq.bits(w)))


def test_weight_quantizer_fixed_integer_bits_saturate_symmetric():
    wq = WeightQuantizer(f0=2, i=1, k=1)
    w = np.array([5.0, -5.0, 1.3, -1.3], "float32")
    wq.build(w.shape)
    q = ops.convert_to_numpy(wq.quantize_values(w))
    np.testing.assert_array_equal(q, [1.75, -1.75, 1.25, -1.25])
    assert np.all(ops.convert_to_numpy(wq.bits(w)) == 4)


@pytest.mark.parametrize(
    "shape,granularity,batch,expected",
    [
        ((16, 8), "element", False, (16, 8)),
        ((16, 8), "channel", False, (1, 8)),
        ((16, 8), "tensor", False, (1, 1)),
        ((None, 4, 4, 3), "channel", True, (1, 1, 1, 3)),
        ((None, 4, 4, 3), "tensor", True, (1, 1, 1, 1)),
    ],
)
def test_granular_shape(shape, granularity, batch, expected):
    assert granular_shape(shape, granularity, batch_axis=batch) == expected


def test_granularity_errors():
    with pytest.raises(ValueError, match="granularity must be one of"):
        granular_shape((3,), "row")
    with pytest.raises(ValueError, match="needs every non-batch dimension known"):
        granular_shape((None, None, 3), "element", batch_axis=True)


def test_activation_quantizer_states():
    aq = ActivationQuantizer(f0=2)
    aq.build((None, 3))
    x = np.array([[0.3, -1.2, 0.0], [1.9, 0.4, 0.0]], "float32")
    fresh = ops.convert_to_numpy(aq(x))  # fresh: rounding (TRN) only
    np.testing.assert_array_equal(fresh, np.floor(x * 4) / 4)
    aq(x, training=True)  # tracks ranges
    np.testing.assert_array_equal(ops.convert_to_numpy(aq.vmin), np.float32([[0.0, -1.2, 0.0]]))
    k, i = (ops.convert_to_numpy(a) for a in aq.ki())
    np.testing.assert_array_equal(k, [[0, 1, 0]])
    np.testing.assert_array_equal(i, [[1, 1, -2]])  # the always-zero column has width 0
    np.testing.assert_array_equal(ops.convert_to_numpy(aq.bits()), [[3, 4, 0]])
    aq.state.assign(np.float32(CALIBRATED))
    big = np.array([[2.5, -3.0, 7.0]], "float32")
    wrapped = ops.convert_to_numpy(aq(big))
    np.testing.assert_array_equal(wrapped, quantize(big, [0, 1, 0], [1, 1, -2], 2, "TRN", "WRAP"))
    np.testing.assert_array_equal(wrapped, [[0.5, 1.0, 0.0]])


def test_activation_quantizer_fixed_bits_saturate():
    aq = ActivationQuantizer(f0=1, i=2, k=0, overflow="SAT", rounding="RND")
    aq.build((None, 2))
    aq.state.assign(np.float32(CALIBRATED))
    out = ops.convert_to_numpy(aq(np.array([[9.0, -1.0]], "float32")))
    np.testing.assert_array_equal(out, [[3.5, 0.0]])


def test_f_is_rounded_to_even_and_clipped():
    wq = WeightQuantizer(f0=2.5, f_min=-1, f_max=4)
    wq.build((1,))
    # round-half-even: 2.5 -> 2 bits, so 0.3 -> 0.25
    assert float(ops.convert_to_numpy(wq.quantize_values(np.array([0.3], "float32")))[0]) == 0.25
    with pytest.raises(ValueError, match="f_min <= f0 <= f_max"):
        WeightQuantizer(f0=30)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pow2_is_exactly_two_to_every_allowed_whole_f(dtype):
    """The quantizers' scale 2**f (built from the exponent bits on TensorFlow) is exact over
    every f a quantizer allows, and the limits are refused beyond that range."""
    f = np.arange(-F_LIMIT, F_LIMIT + 1)
    t = ops.convert_to_tensor(f, dtype)  # (float32 on JAX without x64)
    got = ops.convert_to_numpy(pow2(t))
    assert got.dtype == np.dtype(keras.backend.standardize_dtype(t.dtype))
    np.testing.assert_array_equal(got, np.exp2(f).astype(got.dtype))
    wide = np.array([-2000.0, -126.0, 127.0, 2000.0])  # beyond pow2's range: 0 and inf
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(ops.convert_to_numpy(pow2_any(ops.convert_to_tensor(wide, dtype))),
                                      np.exp2(wide).astype(got.dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_floor_log2_is_exact_at_powers_of_two_their_neighbours_and_subnormals(dtype):
    """floor(log2 v) from the exponent field: every power of two of the dtype and the floats either
    side of it (where log2 rounds across an integer: log2(2**24 - 1) is 24.0 in float32), the
    subnormals (a CPU flushes them as operands) and random magnitudes. None on torch (log2 there)."""
    finfo = np.finfo(dtype)
    e = np.arange(finfo.minexp - finfo.nmant, finfo.maxexp).astype(dtype)
    p = np.exp2(e)
    rng = np.random.default_rng(0)
    v = np.concatenate([p, np.nextafter(p, np.inf), np.nextafter(p, 0)[e > finfo.minexp - finfo.nmant],
                        np.abs(rng.standard_normal(4096)) * 10.0 ** rng.integers(-30, 30, 4096)]).astype(dtype)
    t = ops.convert_to_tensor(v, dtype)
    got = floor_log2(t)
    if keras.backend.backend() not in ("tensorflow", "jax"):
        assert got is None
        return
    seen = np.asarray(ops.convert_to_numpy(t), np.float64)  # (JAX without x64: the float32 values)
    ok = (seen > 0) & np.isfinite(seen)
    want = np.frexp(seen[ok])[1] - 1.0
    np.testing.assert_array_equal(np.asarray(ops.convert_to_numpy(got), np.float64)[ok], want)
    assert ok.sum() > 3 * 250  # (not all flushed away or overflowed: float32 has 277 powers of two)


@pytest.mark.parametrize("f0", [13, 15, 21, -13, -15])
def test_weights_land_on_the_grid_of_their_bits_beyond_2_to_the_12(f0):
    """XLA's exp2 put JAX's scale 2**15 an ulp off: quantized weights were not multiples of 2**-15."""
    wq = WeightQuantizer(f0=f0, f_min=-20)
    wq.build((64,))
    w = np.random.default_rng(0).normal(0.0, 4.0 * 2.0**-f0 if f0 > 0 else 2.0**-f0, 64).astype("float32")
    q = np.asarray(ops.convert_to_numpy(wq.quantize_values(w)), np.float64)
    m = q * 2.0**f0
    np.testing.assert_array_equal(m, np.round(m))  # on the grid
    np.testing.assert_array_equal(q, quantize(w.astype(np.float64), 1, 40, f0, "RND", "SAT_SYM"))
    with pytest.raises(ValueError, match=r"-120 <= f_min <= f0 <= f_max <= 120 .*f_max=121"):
        WeightQuantizer(f0=2, f_max=121)
    with pytest.raises(ValueError, match="f_min=-121"):
        ActivationQuantizer(f0=2, f_min=-121)


def test_get_accepts_dicts_instances_and_configs():
    q = get({"f0": 3, "granularity": "channel"}, WeightQuantizer)
    assert q.f0 == 3 and str(q.granularity) == "channel"
    assert get(q, WeightQuantizer) is q
    clone = get(keras.saving.serialize_keras_object(q), WeightQuantizer)
    assert clone.get_config() == q.get_config()
    with pytest.raises(TypeError, match="expected a ActivationQuantizer"):
        get(q, ActivationQuantizer)
    with pytest.raises(TypeError, match="quantizer spec must be"):
        get("fast", WeightQuantizer)
    with pytest.raises(ValueError, match="unknown mode"):
        WeightQuantizer(rounding="ROUND_UP")
