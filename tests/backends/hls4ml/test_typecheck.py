"""Our own check of hls4ml's types (hgq_fpga.backends.hls4ml.typecheck / typewalk).

* The rules are sound: whenever ``holds``, ``agrees`` or ``refines`` says
  yes, every value of the domain (all grid points of small domains, plus the
  edges and wrap points) really gives the same result, with casts computed
  by :func:`hgq_fpga.fixed.quantize` (itself checked against g++'s
  ``ap_fixed``).
* The check catches hls4ml 1.3.0's real typing bugs by itself: with each of
  hgq_fpga's corrections switched off, ``to_hls4ml`` refuses the model and
  names the layer, where hls4ml alone would write a wrong project.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, seed, settings, strategies as st

from hgq_fpga.backends.hls4ml import UnsupportedForHls4ml, to_hls4ml
from hgq_fpga.backends.hls4ml.typecheck import ApType, Domain, agrees, holds, refines
from hgq_fpga.fixed import quantize

SEED = 20261201
EXAMPLES = 600
ROUNDINGS = ("TRN", "RND", "TRN_ZERO", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")
OVERFLOWS = ("WRAP", "SAT", "SAT_SYM", "SAT_ZERO")


@st.composite
def ap_types(draw: st.DrawFn, zero: bool = True) -> ApType:
    signed = draw(st.booleans())
    width = draw(st.integers(0 if zero else 1, 7))
    integer = draw(st.integers(-3, 6)) if width else 0
    return ApType(signed, width, integer, draw(st.sampled_from(ROUNDINGS)), draw(st.sampled_from(OVERFLOWS)))


@st.composite
def domains(draw: st.DrawFn) -> Domain:
    grid = draw(st.integers(-2, 5))
    a, b = sorted(draw(st.lists(st.integers(-300, 300), min_size=2, max_size=2)))
    scale = Fraction(2) ** -grid
    return Domain(a * scale, b * scale, grid)


def cast(t: ApType, values: np.ndarray) -> np.ndarray:
    """``ap_fixed`` conversion by the tested quantizer (not ApType.cast)."""
    if not t.width:
        return np.zeros_like(values)
    k = int(t.signed)
    mode = "SAT" if t.overflow == "SAT_SYM" and not t.signed else t.overflow
    return quantize(values, k, t.integer - k, t.f, t.rounding, mode)


def points(d: Domain) -> np.ndarray:
    step = Fraction(2) ** -d.grid
    n = int((d.hi - d.lo) / step)
    return np.array([float(d.lo + j * step) for j in range(n + 1)])


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None)
@given(a=ap_types(), b=ap_types(), d=domains())
def test_rules_are_sound(a, b, d, tally):
    x = points(d)
    tally["type-check rule cases"] += 3
    tally["type-check values tried"] += 3 * len(x)
    np.testing.assert_array_equal(cast(a, x), np.array([float(a.cast(Fraction(v))) for v in x]))
    if holds(a, d):
        np.testing.assert_array_equal(cast(a, x), x)
    if agrees(a, b, d):
        np.testing.assert_array_equal(cast(a, x), cast(b, x))
    if refines(a, b, d):
        np.testing.assert_array_equal(cast(b, cast(a, x)), cast(b, x))


def test_rules_say_yes_where_they_should():
    """Not vacuous: the cases the converter relies on are accepted."""
    d = Domain(Fraction(-5), Fraction(5), 4)
    wide = ApType(True, 16, 6)
    assert holds(wide, d)
    assert refines(ApType(True, 10, 4), ApType(True, 6, 3), d)  # truncation, then the quantizer's wrap
    fine = Domain(Fraction(-5), Fraction(5), 8)
    assert refines(ApType(True, 10, 5, "TRN"), ApType(True, 7, 4, "RND"), fine)  # one bit more for RND
    assert not refines(ApType(True, 9, 5, "TRN"), ApType(True, 8, 4, "RND"), fine)
    assert agrees(ApType(True, 8, 4, "RND", "SAT"), ApType(True, 8, 4, "RND", "SAT"), Domain(None, None, 10**6))
    # found by the random C-simulation suite: a wrap before a rounding towards zero moves -1.75 to 0.25
    towards_zero = ApType(True, 1, 0, "TRN_ZERO", "WRAP")
    assert not refines(ApType(True, 7, 1), towards_zero, Domain(Fraction(-7, 4), Fraction(7, 4), 2))
    assert refines(ApType(True, 7, 1), towards_zero, Domain(Fraction(-1, 2), Fraction(1, 4), 2))
    zero = ApType(False, 0, 0)
    assert agrees(ApType(False, 2, 32), zero, Domain(Fraction(0), Fraction(3), 2))  # 0 <= x < 2**30: read as 0
    assert not agrees(ApType(False, 2, 32), zero, Domain(Fraction(-1), Fraction(3), 2))  # negatives wrap


# -- the check alone catches hls4ml's typing bugs -------------------------------------------------
def test_narrowing_bug_is_caught_without_our_correction(monkeypatch, tmp_path):
    """hls4ml's own narrowing rule gives a floored element zero bits; the check refuses it."""
    import hgq_fpga.compat.hls4ml as compat

    from .test_reliability import floor_after_tiny_range

    model, _ = floor_after_tiny_range(chained=False)
    to_hls4ml(model, tmp_path / "corrected")  # with the correction: accepted
    monkeypatch.setattr(compat, "MARK", "not_an_hgq_fpga_layer")  # hls4ml's rule, uncorrected
    with pytest.raises(UnsupportedForHls4ml, match=r"layer 'floor'.*does not give what the model's quantizer"):
        to_hls4ml(model, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_chained_quantizers_are_caught_without_our_refusal(monkeypatch, tmp_path):
    import hgq_fpga.backends.hls4ml.layers as layers

    from .test_reliability import floor_after_tiny_range

    model, _ = floor_after_tiny_range(chained=True)
    monkeypatch.setattr(layers, "_check_chain", lambda first, second: None)
    with pytest.raises(UnsupportedForHls4ml, match="hls4ml chose types"):
        to_hls4ml(model, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_zero_width_input_is_caught_when_hls4ml_fuses_it(monkeypatch, tmp_path):
    """Issue 12, case 1 without its fix: the input's type ap_ufixed<2,32> replaces a quantizer that zeroes
    a signed input; the check sees that negative inputs would not become 0."""
    import keras

    import hgq_fpga
    import hgq_fpga.backends.hls4ml.layers as layers
    from hgq_fpga.layers import QDense

    inp = keras.Input((4,))
    h = QDense(3, input_quantizer={"f0": -2.0, "rounding": "RND"}, name="zero_in")(inp)
    model = keras.Model(inp, QDense(2, name="out")(h))
    x = np.random.default_rng(0).uniform(-1.9, 1.9, (32, 4))
    model(x[:2])
    hgq_fpga.calibrate(model, x)
    to_hls4ml(model, tmp_path / "fixed")
    original = layers._quantizer
    monkeypatch.setattr(layers, "_quantizer", lambda *a, **kw: {**original(*a, **kw), "hgq_fpga_keep": False})
    with pytest.raises(UnsupportedForHls4ml, match=r"quantizer of layer 'zero_in'.*any input value"):
        to_hls4ml(model, tmp_path / "p")


@seed(SEED)
@settings(max_examples=300, deadline=None, database=None)
@given(q=ap_types(zero=False), x=st.lists(st.floats(-64, 64, allow_nan=False, allow_subnormal=True), min_size=1,
                                           max_size=32), near=st.integers(-40, 40))
def test_doubles_truncated_54_bits_finer_round_the_same(q, x, near, tally):
    """The rule behind widening network inputs (fixes.fix_input_types): truncating a double to
    f_q + 54 fractional bits changes no rounding mode's result at f_q bits."""
    from hgq_fpga.backends.hls4ml.typecheck import DOUBLE_BITS, SIGN_DEPENDENT

    step = 2.0 ** -q.f
    ties = (near + 0.5) * step
    values = np.array(x + [ties, np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf), -ties,
                           np.nextafter(-ties, np.inf), np.nextafter(-ties, -np.inf), 5e-324, -5e-324])
    t = ApType(True, 80 + q.f + DOUBLE_BITS, 80, "TRN", "WRAP")  # wide: only the truncation matters
    tally["double-input values"] += len(values)
    assert refines(t, q, Domain(None, None, 10**6, doubles=True)) or q.overflow != "WRAP" or q.rounding in SIGN_DEPENDENT
    truncated = np.array([float(t.cast(Fraction(v))) for v in values])  # exact: t is far wider than float64
    np.testing.assert_array_equal(cast(q, truncated), cast(q, values))


def test_saturating_types_with_different_bounds_agree_only_where_it_holds(tally):
    """``agrees`` accepts two saturating types whose bounds differ on a side the values never reach
    (hls4ml drops an unused integer bit of a quantizer): brute force against ``quantize`` on every value."""
    import random

    rng = random.Random(18)
    modes = ("TRN", "RND", "RND_CONV", "TRN_ZERO", "RND_ZERO", "RND_MIN_INF", "RND_INF")
    overflows = ("WRAP", "SAT", "SAT_SYM", "SAT_ZERO")
    accepted = 0
    for _ in range(20000):
        w = rng.randint(1, 7)
        a = ApType(rng.random() < 0.5, w, rng.randint(-2, w + 2), rng.choice(modes), rng.choice(overflows))
        b = ApType(rng.random() < 0.5, rng.randint(1, 7), rng.randint(-2, 8), a.rounding, a.overflow)
        g, lo = rng.randint(-1, 6), rng.randint(-40, 40)
        hi = lo + rng.randint(0, 40)
        d = Domain(Fraction(lo) / 2**g, Fraction(hi) / 2**g, g)
        if agrees(a, b, d) and (a.lo, a.hi) != (b.lo, b.hi):
            accepted += 1
            x = points(d)
            assert np.array_equal(cast(a, x), cast(b, x)), (a, b, d)
    tally["type-check: saturating pairs with different bounds accepted and brute-forced"] += accepted
    assert accepted > 100


def test_refines_brute_forced_on_random_types_and_ranges(tally):
    """``refines`` against ``quantize`` on every value of 20,000 random (type, quantizer, range) triples,
    ranges reaching beyond both types. (Its saturation-to-zero rule once accepted a type whose saturated
    extreme the quantizer rounds back into its range: 17 of 9,090 accepted cases were wrong.)"""
    import random

    rng = random.Random(1812)
    modes = ("TRN", "RND", "RND_CONV", "TRN_ZERO", "RND_ZERO", "RND_MIN_INF", "RND_INF")
    overflows = ("WRAP", "SAT", "SAT_SYM", "SAT_ZERO")
    accepted = 0
    for _ in range(20000):
        wt, wq = rng.randint(1, 10), rng.randint(1, 7)
        t = ApType(rng.random() < 0.5, wt, rng.randint(-2, wt + 1), rng.choice(modes), rng.choice(overflows))
        q = ApType(rng.random() < 0.5, wq, rng.randint(-2, wq + 1), rng.choice(modes), rng.choice(overflows))
        g, lo = rng.randint(-1, 8), rng.randint(-400, 400)
        d = Domain(Fraction(lo) / 2**g, Fraction(lo + rng.randint(0, 400)) / 2**g, g)
        if refines(t, q, d):
            accepted += 1
            x = points(d)
            assert np.array_equal(cast(q, cast(t, x)), cast(q, x)), (t, q, d)
    tally["type-check: refines brute-forced, accepted cases"] += accepted
    assert accepted > 1000
