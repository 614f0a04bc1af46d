"""Inputs are never narrowed: float64 data reach the emulator, the Keras twin and
the C simulation as float64; finite extremes are values; non-numbers are refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.fixed import quantize
from hgq_fpga.layers import QActivation


def wide_input_model() -> tuple[keras.Model, np.ndarray]:
    """relu of an input quantized to 20 fractional bits and 10 integer bits (31 bits > float32's 24)."""
    inp = keras.Input((2,))
    model = keras.Model(inp, QActivation("relu", input_quantizer={"f0": 20.0}, name="wide")(inp))
    x = np.array([[1000.0, -3.0], [-1000.0, 512.5]])
    model(x[:1])
    hgq_fpga.calibrate(model, x)
    return model, x


def test_wider_than_float32_is_emulated_exactly():
    model, _ = wide_input_model()
    x = np.array([[1000.0 + 2.0**-20, 2.0**-20], [3.0 - 2.0**-20, 1000.0 + 3 * 2.0**-20]])
    assert not np.array_equal(x.astype(np.float32).astype(np.float64), x)  # float32 would change them
    assert np.array_equal(hgq_fpga.emulate(model, x), np.maximum(x, 0.0))
    assert np.array_equal(hgq_fpga.emulate(model, x, path="int"), np.maximum(x, 0.0))


def test_finite_extremes_are_values():
    x = np.array([1e308, -1e308, 2.0**60 + 2.0**9, -(2.0**70), 1.5 * 2.0**52, 5e-324])
    k, i, f = np.ones(6), np.full(6, 10.0), np.full(6, 20.0)
    got = quantize(x, k, i, f, "TRN", "WRAP")
    # exact reference on Python integers: wrap the mantissa floor(x * 2**20) to 31 bits
    from fractions import Fraction

    def ref(v: float) -> float:
        m = int(np.floor(Fraction(v) * 2**20))
        m = (m + 2**30) % 2**31 - 2**30
        return m / 2**20

    assert np.array_equal(got, np.array([ref(v) for v in x]))
    assert np.all(np.isfinite(quantize(x, k, i, f, "RND", "SAT")))


def test_non_numbers_are_refused_by_name():
    model, x = wide_input_model()
    with pytest.raises(ValueError, match="complex"):
        hgq_fpga.emulate(model, x.astype(complex))
    with pytest.raises(ValueError, match="text"):
        hgq_fpga.emulate(model, np.array([["1", "2"]]))
    with pytest.raises(ValueError, match="2\\*\\*53"):
        hgq_fpga.emulate(model, np.array([[2**60, 1]], dtype=np.int64))
    assert np.array_equal(hgq_fpga.emulate(model, np.array([[3, -1]], dtype=np.int64)), [[3.0, 0.0]])
    big = np.array([[1e308, -1e308]])  # finite: a value, not "NaN/Inf"
    assert np.all(np.isfinite(hgq_fpga.emulate(model, big)))


@pytest.mark.slow
def test_wider_than_float32_through_verify():
    """The issue's case: x = 1000 + 2**-20 in a 31-bit input format, Keras = emulator = C simulation."""
    model, _ = wide_input_model()
    x = np.array([[1000.0 + 2.0**-20, 2.0**-20], [3.0 - 2.0**-20, -1000.0], [1023.0, 1024.0 + 2.0**-21]])
    result = hgq_fpga.verify(model, x)
    assert result.ok, str(result)
    assert np.array_equal(hgq_fpga.emulate(model, x)[0], [1000.0 + 2.0**-20, 2.0**-20])


@pytest.mark.parametrize("overflow", ["WRAP", "SAT"])
def test_keras_float64_twin_takes_finite_extremes_as_values(overflow):
    """Issue 12: the float64 Keras twin gave NaN for 1e308 under WRAP (x * 2**f overflowed to inf);
    it now wraps such values exactly, as the emulator does."""

    from hgq_fpga.emulator.keras64 import float64_outputs

    inp = keras.Input((3,))
    out = QActivation("linear", input_quantizer={"f0": 6.0, "overflow": overflow}, name="q")(inp)
    model = keras.Model(inp, out)
    x = np.array([[1e308, -1e308, 2.0**60 + 2.0**-6], [-(2.0**1000), 5e-324, 3.25]])
    model(x[:1])
    hgq_fpga.calibrate(model, np.array([[3.0, -3.0, 1.0]] * 10))
    twin = float64_outputs(model, x)
    assert np.all(np.isfinite(twin))
    assert np.array_equal(twin, hgq_fpga.emulate(model, x))


def test_small_negatives_beside_finite_extremes_stay_exact():
    """A batch with 1e308 (reduced modulo the period) and small negative values (which must not be):
    reducing -0.25 modulo 2**80 gave 2**80, not 2**80 - 0.25, in float64 (found by the type-check suite)."""
    x = np.array([1e308, -0.25, -(2.0**-30), 3.5, -1e308])
    k, i, f = np.ones(5), np.full(5, 79.0), np.full(5, 4.0)
    got = quantize(x, k, i, f, "TRN", "WRAP")
    assert np.array_equal(got[1:4], [-0.25, -0.0625, 3.5])
    from fractions import Fraction

    def ref(v: float) -> float:
        m = int(np.floor(Fraction(v) * 16))
        return float(Fraction((m + 2**83) % 2**84 - 2**83, 16))

    assert np.array_equal(got, [ref(v) for v in x])


def test_subnormal_inputs_with_negative_fractional_bits():
    """-5e-324 times 2**-1 underflowed to -0.0, so TRN gave 0 where ap_fixed floors to -2 (found by the
    type-check suite); every rounding mode now sees the sign."""
    x = np.array([-5e-324, 5e-324, -1e-310, 0.0])
    got = quantize(x, np.zeros(4), np.full(4, 2.0), np.full(4, -1.0), "TRN", "WRAP")  # ufixed<1,2>: {0, 2}
    assert np.array_equal(got, [2.0, 0.0, 2.0, 0.0])  # floor(-tiny / 2) * 2 = -2, wrapped into [0, 4)
    assert np.array_equal(quantize(x, np.ones(4), np.full(4, 2.0), np.full(4, -1.0), "TRN", "SAT"),
                          [-2.0, 0.0, -2.0, 0.0])
    assert np.array_equal(quantize(x, np.ones(4), np.full(4, 2.0), np.full(4, -1.0), "RND_CONV", "SAT"),
                          [0.0, 0.0, 0.0, 0.0])
