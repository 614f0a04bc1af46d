"""The cost rules as pure functions (numpy and Python ints; no Keras, no tools)."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from hgq_fpga.resources.rules import (
    Signal,
    adder_cells,
    adder_tree,
    carry_cells,
    csd_count,
    csd_digits,
    dsp_count,
    max_luts,
    relu_luts,
    saturate_luts,
    table_luts,
    uses_dsp,
    width_of,
)


@functools.cache
def fewest_signed_digits(m: int) -> int:
    """Brute force: the fewest nonzero digits of any {-1, 0, 1} radix-2 form of m."""
    if m == 0:
        return 0
    if m < 0:
        return fewest_signed_digits(-m)
    if m == 1:
        return 1
    if m % 2 == 0:
        return fewest_signed_digits(m // 2)
    return 1 + min(fewest_signed_digits((m - 1) // 2), fewest_signed_digits((m + 1) // 2))


@pytest.mark.parametrize("m", range(-600, 601))
def test_csd_is_exact_non_adjacent_and_minimal(m):
    digits = csd_digits(m)
    assert sum(s * 2**e for s, e in digits) == m
    exps = [e for _, e in digits]
    assert all(b - a >= 2 for a, b in itertools.pairwise(exps))
    assert len(digits) == fewest_signed_digits(m)


def test_csd_count_vectorized_matches_digits_including_wide_ints():
    ms = np.arange(-5000, 5000)
    assert np.array_equal(csd_count(ms), [len(csd_digits(int(m))) for m in ms])
    wide = np.array([2**70 - 1, -(2**65) + 3, 0], dtype=object)
    assert csd_count(wide).tolist() == [len(csd_digits(int(m))) for m in wide]


def test_width_of_matches_twos_complement():
    for lo, hi in [(0, 0), (0, 1), (0, 255), (-1, 0), (-128, 127), (-129, 0), (3, 9), (-5, -2)]:
        w = width_of(lo, hi)
        if lo < 0:
            assert -(2 ** (w - 1)) <= lo and hi < 2 ** (w - 1)
            assert w == 1 or not (-(2 ** (w - 2)) <= lo and hi < 2 ** (w - 2))
        else:
            assert hi < 2**w and (w == 0 or hi >= 2 ** (w - 1))


@pytest.mark.parametrize("subtract", [False, True])
def test_adder_result_range_is_exact(subtract):
    rng = np.random.default_rng(1)
    for _ in range(200):
        a_lo, b_lo = (int(v) for v in rng.integers(-20, 20, 2))
        a = Signal(a_lo, a_lo + int(rng.integers(0, 30)))
        b = Signal(b_lo, b_lo + int(rng.integers(0, 30)))
        _, _, out = adder_cells(a, b, subtract)
        sums = [x - y if subtract else x + y for x in range(a.lo, a.hi + 1) for y in range(b.lo, b.hi + 1)]
        assert (out.lo, out.hi) == (min(sums), max(sums))


def test_adder_luts_only_where_both_operands_vary():
    a = Signal(0, 255)  # bits 0..7, unsigned
    b = Signal(0, 15).shifted(6)  # bits 6..9
    luts, carry, out = adder_cells(a, b)
    assert luts == 2  # bits 6 and 7
    assert carry == carry_cells(out.top - 6 + 1)
    # a signed operand varies in its sign extension
    luts_s, _, _ = adder_cells(Signal(-128, 127), Signal(-8, 7))
    assert luts_s == 8
    # adding a constant needs no LUT
    assert adder_cells(Signal(0, 255), Signal(5, 5))[0] == 0


def _bit_by_bit_luts(a: Signal, b: Signal, subtract: bool, top: int | None) -> int:
    """The LUT rule of adder_cells as first written: each bit checked on its own (_varies)."""
    from hgq_fpga.resources.rules import _varies

    out = adder_cells(a, b, subtract, top)[2]
    out_top = out.top if top is None else min(top, out.top)
    luts = sum(1 for p in range(max(a.lsb, b.lsb), min(out_top, max(a.top, b.top)) + 1)
               if _varies(a, p) and _varies(b, p))
    return luts + (a.lsb - b.lsb if subtract and b.lsb < a.lsb else 0)


def test_adder_luts_closed_form_equals_the_bit_by_bit_rule():
    """adder_cells counts the bits where both operands vary in closed form (the estimate's hot
    path); brute force over random signed/unsigned, shifted, capped operand pairs."""
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(4000):
        pair = []
        for _ in range(2):
            lo = int(rng.integers(-300, 300)) if rng.random() < 0.5 else int(rng.integers(0, 300))
            hi = lo + int(rng.integers(1, 600))
            pair.append(Signal(lo, hi).shifted(int(rng.integers(0, 6))))
        top = None if rng.random() < 0.5 else int(rng.integers(0, 16))
        subtract = bool(rng.random() < 0.5)
        assert adder_cells(*pair, subtract, top)[0] == _bit_by_bit_luts(*pair, subtract, top), (pair, subtract, top)
        checked += 1
    assert checked == 4000


def test_adder_tree_computes_the_sum_and_costs_nothing_for_nothing():
    rng = np.random.default_rng(2)
    for _ in range(50):
        n = int(rng.integers(1, 9))
        terms = []
        for _ in range(n):
            lo = int(rng.integers(-16, 16))
            s = Signal(lo, lo + int(rng.integers(1, 32))).shifted(int(rng.integers(0, 4)))
            terms.append((int(rng.choice([-1, 1])), s))
        tree = adder_tree(terms)
        assert len(tree.adders) == n - 1
        lo = sum(s.lo if g > 0 else -s.hi for g, s in terms)
        hi = sum(s.hi if g > 0 else -s.lo for g, s in terms)
        root = tree.signals[tree.root]
        got = (root.lo, root.hi) if tree.sign > 0 else (-root.hi, -root.lo)
        assert got == (lo, hi)
        # evaluate on random values: the tree's adders compute the signed sum
        for _ in range(5):
            vals = [int(rng.integers(s.lo >> s.lsb, (s.hi >> s.lsb) + 1)) << s.lsb for _, s in terms]
            v = list(vals)
            for a in tree.adders:
                v.append(v[a.a] - v[a.b] if a.subtract else v[a.a] + v[a.b])
            assert tree.sign * v[tree.root] == sum(g * x for (g, _), x in zip(terms, vals))
    empty = adder_tree([(1, Signal(0, 0))])
    assert empty.root is None and empty.luts == 0 and empty.carry == 0


def test_dsp_rule_and_counts():
    assert dsp_count(25, 18) == 1 and dsp_count(26, 18) == 2 and dsp_count(25, 19) == 2
    assert dsp_count(27, 18, "DSP48E2") == 1 and dsp_count(27, 18, "DSP48E1") == 2
    assert dsp_count(0, 8) == 0
    assert not uses_dsp(4, 16) and uses_dsp(10, 10) and not uses_dsp(10, 10, min_bits=11)


def test_small_rules_grow_with_width():
    assert relu_luts(0) == 0 and relu_luts(7) == 7
    assert max_luts(8) == (16, 2)
    assert saturate_luts(8, 0) == 0 and saturate_luts(8, 3) > 8
    assert [table_luts(a, 4) for a in (4, 6, 7, 8, 9)] == [4, 4, 8, 16, 40]
    assert table_luts(10, 0) == 0


def test_a_signal_is_an_immutable_value_with_its_top_bit():
    """Signals key the adder-tree cache and travel to worker processes: equal by value,
    hashable, immutable, and a pickle round trip keeps them (``top`` included)."""
    import pickle

    a, b = Signal(-5, 12, 1), Signal(-5, 12, 1)
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert a != Signal(-5, 12, 0) and a != Signal(-5, 13, 1)
    assert a.top == width_of(-5, 12) - 1 and a.signed and not a.constant
    assert pickle.loads(pickle.dumps(a)) == a and pickle.loads(pickle.dumps(a)).top == a.top
    with pytest.raises(AttributeError):
        a.lo = 0  # type: ignore[misc]
    assert repr(a) == "Signal(lo=-5, hi=12, lsb=1)"


def test_a_sum_of_digits_with_its_exact_range_is_narrower_than_interval_arithmetic():
    """The digits of one constant product are summed with the product's exact range: for
    ``7 x = 8 x - x`` (x in [0, 15]) the result needs 7 bits, not the 8 of [0 - 15, 120]."""
    x = Signal(0, 15)
    tree = adder_tree([(1, x.shifted(3)), (-1, x)], groups=[([0, 1], (0, 105))])
    loose = adder_tree([(1, x.shifted(3)), (-1, x)])
    assert tree.signals[tree.root] == Signal(0, 105, 0) and tree.signals[tree.root].top == 6
    assert loose.signals[loose.root].top == 7 and tree.luts <= loose.luts
