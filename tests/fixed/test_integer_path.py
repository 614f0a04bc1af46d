"""The integer twin (round_shift + IntegerOps) equals the float core, also beyond int64."""

import numpy as np
import pytest

from hgq_fpga.fixed import IntegerOps, OverflowMode, RoundingMode, overflow_mantissa, quantize, round_shift

MODES = [(r, o) for r in RoundingMode for o in OverflowMode]


@pytest.mark.parametrize("rounding,overflow", MODES, ids=[f"{r}-{o}" for r, o in MODES])
def test_integer_requantization_equals_float(rounding, overflow):
    rng = np.random.default_rng(7)
    n = 4000
    f_in = 12
    m_in = rng.integers(-(2**20), 2**20, n)  # values m_in * 2**-12, off-grid for the target
    m_in[:64] = np.arange(-32, 32) * 2**(f_in - 3)  # ties and exact values
    k = rng.integers(0, 2, n)
    f = rng.integers(-2, 10, n)
    i = rng.integers(-2, 8, n)
    expected = quantize(m_in * 2.0**-f_in, k, i, f, rounding, overflow)
    m = round_shift(m_in, f_in - f, rounding)
    m = overflow_mantissa(m, k, k + i + f, overflow, xp=IntegerOps)
    np.testing.assert_array_equal(m * np.exp2(-f.astype(float)), expected)


def test_object_arrays_hold_widths_beyond_int64():
    big = np.array([2**80 + 5, -(2**80) - 5, 2**70 + 2**69], dtype=object)
    m = round_shift(big, np.array([3, 3, 69], dtype=object), "RND")
    assert list(m) == [2**77 + 1, -(2**77) - 1, 2 + 1]
    wrapped = overflow_mantissa(
        np.array([2**100 + 3], dtype=object), np.array([1]), np.array([8], dtype=object), "WRAP", xp=IntegerOps
    )
    assert list(wrapped) == [3]


def test_round_shift_rejects_negative_shift():
    with pytest.raises(ValueError, match="shift must be >= 0"):
        round_shift(np.array([1]), -1, "TRN")
