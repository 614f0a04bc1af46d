"""Property-based test (hypothesis): random formats, modes and values against C++ ``ap_fixed``.

A pool of :data:`N_FORMATS` random formats ``(W, I, signed)`` with ``W`` in
1..48 and ``I`` anywhere from ``-6`` to ``W + 6`` (so ``f`` may be negative or
larger than ``W``), times all 28 rounding/overflow modes, is compiled once
(g++, hls4ml's ``ap_types``). Hypothesis then draws a type from the pool and
a batch of values: on binary grids in LSB units (every rounding tie), at and
around the range edges and the wrap-around points, and arbitrary doubles far
out of range. ``hgq_fpga.fixed.quantize`` must give the same mantissa as
``ap_fixed`` for every value. Budget and seed are fixed (RELIABILITY.md).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings, strategies as st

from hgq_fpga.fixed import OverflowMode, RoundingMode, quantize, to_mantissa

SEED = 20261122
N_FORMATS = 16
EXAMPLES = 1000
MODES = [(q.value, o.value) for q, o in itertools.product(RoundingMode, OverflowMode)]


def pool_formats() -> list[tuple[int, int, bool]]:
    """Random ``(W, I, signed)``, W in 1..48 (1 and 48 always present)."""
    rng = np.random.default_rng(SEED)
    widths = [1, 48, *rng.integers(2, 48, N_FORMATS - 2)]
    return [(int(w), int(rng.integers(-6, w + 7)), bool(rng.integers(0, 2))) for w in widths]


FORMATS = pool_formats()
KEYS = [(w, i, s, q, o) for (w, i, s) in FORMATS for (q, o) in MODES]


@pytest.fixture(scope="module")
def driver(apfixed_compiler):
    return apfixed_compiler(KEYS)


@st.composite
def lsb_values(draw: st.DrawFn, width: int, signed: bool) -> np.ndarray:
    """Values in LSB units (``x * 2**f``), all exact doubles with ``|v| < 2**51``.

    Drawn by hypothesis (and shrunk on failure): grid values, ties, edges,
    arbitrary doubles; plus 512 values of the same kinds from a drawn seed.
    """
    span = 2 ** min(width + 2, 44)  # grid values stay below 2**50
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)
    edges = [lo, hi, 2**width, -(2**width), 2 ** (width + 1), -(2 ** (width - 1)), 0]
    grid = st.builds(lambda m, g: m / 2.0**g, st.integers(-span * 64, span * 64), st.integers(0, 6))
    tie = st.builds(lambda m: m + 0.5, st.integers(-span, span))
    near_edge = st.builds(lambda e, d: e + d, st.sampled_from(edges),
                          st.sampled_from([-1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5]))
    far = st.floats(min_value=-(2.0**50), max_value=2.0**50, allow_nan=False, allow_infinity=False)
    values = draw(st.lists(st.one_of(grid, tie, near_edge, far), min_size=8, max_size=256))
    # and a bulk of 512 values from a drawn seed: same kinds, cheap to compare
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    g = rng.integers(0, 7, 256)
    bulk = [rng.integers(-span * 2**g, span * 2**g + 1) / 2.0**g,
            rng.integers(-span, span, 128) + 0.5,
            rng.choice([-1.0, 1.0], 128) * rng.integers(1, 2**20, 128) * np.exp2(rng.integers(-30, 30, 128))]
    return np.concatenate([np.asarray(values, np.float64), *bulk])


@st.composite
def cases(draw: st.DrawFn) -> tuple[tuple, np.ndarray]:
    key = draw(st.sampled_from(KEYS))
    return key, draw(lsb_values(key[0], key[2]))


@pytest.mark.slow
@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_random_format_mode_and_values(driver, case, tally):
    key, v = case
    width, int_bits, signed, rounding, overflow = key
    k = int(signed)
    f = width - int_bits
    i = int_bits - k
    x = v * 2.0**-f
    (cpp,) = driver.mantissas([(key, x)])
    py = to_mantissa(quantize(x, k, i, f, rounding, overflow), f)
    bad = np.flatnonzero(cpp != py)
    tally["ap_fixed property: examples"] += 1
    tally["ap_fixed property: values compared"] += x.size
    tally["ap_fixed property: mismatches"] += len(bad)
    assert not len(bad), (f"ap_{'' if signed else 'u'}fixed<{width},{int_bits},{rounding},{overflow}>: "
                          + ", ".join(f"x={x[n]!r}: ap_fixed {cpp[n]} vs quantize {py[n]}" for n in bad[:5]))
