"""Cost rules, one pure function per operation (numpy and Python ints only).

Every rule counts the cells of one concrete circuit, the circuit that
:mod:`hgq_fpga.backends.rtl.verilog` writes and that logic synthesis maps, so a
rule can be checked against synthesis one operation at a time. Signals are
integers at a common scale described by :class:`Signal`: an exact range
``[lo, hi]`` and ``lsb``, the number of low bits known to be zero.

The device model is the Xilinx 7-series / UltraScale slice: a LUT6 per bit of
an adder that has two varying inputs at that bit, with the carry in dedicated
CARRY4/CARRY8 chains (one per 4/8 bits). A bit where one operand is a constant
(a zero low bit, the zero-extension of a non-negative operand, a constant
addend) needs no LUT: the carry chain's XOR takes the other operand directly.

Rules
=====

=========================  ====================================================
operation                  cost
=========================  ====================================================
``x * w`` (w constant)     ``w`` in canonical signed digits (CSD):
                           ``sum_d s_d 2**e_d``; one shifted copy of ``x``
                           per nonzero digit, summed in the adder tree.
                           Zero weights (and zero-bit weights) cost nothing.
adder ``a + b``            :func:`adder_cells`: LUTs = bit positions from
                           ``max(lsb_a, lsb_b)`` to the result's top bit where
                           both operands vary
adder tree                 :func:`adder_tree`: repeatedly add the two
                           narrowest terms; widths from exact ranges
multiply on a DSP          :func:`dsp_count`, :func:`uses_dsp`
ReLU                       :func:`relu_luts`: one LUT per output bit above
                           the sign
max of two                 :func:`max_luts`: a comparator (a subtraction's
                           carry chain) and a 2:1 multiplexer per bit
rounding (RND)             an adder of the output width (:func:`round_luts`)
saturation (SAT)           :func:`saturate_luts`
lookup table               :func:`table_luts`: by address and data width
=========================  ====================================================

Example:
    >>> csd_digits(7)
    [(-1, 0), (1, 3)]
    >>> a, b = Signal(0, 255), Signal(0, 255 * 4, lsb=2)
    >>> adder_cells(a, b)[:2]       # bits 2..7 overlap; bits 8..10 ride the carry
    (6, 3)
"""

from __future__ import annotations

import heapq
import math
from collections import namedtuple
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "DSP_OPERANDS",
    "Adder",
    "AdderTree",
    "Signal",
    "adder_cells",
    "adder_tree",
    "carry_cells",
    "csd_count",
    "csd_digits",
    "dsp_count",
    "max_luts",
    "relu_luts",
    "round_luts",
    "saturate_luts",
    "table_luts",
    "uses_dsp",
]


_SignalFields = namedtuple("_SignalFields", ("lo", "hi", "lsb", "top"))
_new_tuple = tuple.__new__


class Signal(_SignalFields):
    """An integer signal: every value lies in ``[lo, hi]`` and is a multiple of ``2**lsb``.

    ``top`` is the index of the top bit of the two's complement form (the sign bit
    if signed), computed once when the signal is made (the estimate reads it for
    every adder). Immutable and hashable (equal signals have equal ``lo``, ``hi``,
    ``lsb``); a tuple underneath: an estimate makes a few signals per
    multiplication, and a frozen dataclass's construction was a fifth of its time.

    >>> Signal(-3, 4, 1)
    Signal(lo=-3, hi=4, lsb=1)
    >>> Signal(-3, 4, 1).top, Signal(0, 255).top
    (3, 7)
    """

    __slots__ = ()

    def __new__(cls, lo: int, hi: int, lsb: int = 0) -> Signal:
        return _new_tuple(cls, (lo, hi, lsb, width_of(lo, hi) - 1))

    def __getnewargs__(self) -> tuple[int, int, int]:
        return self[0], self[1], self[2]

    def __repr__(self) -> str:
        return f"Signal(lo={self[0]}, hi={self[1]}, lsb={self[2]})"

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def constant(self) -> bool:
        return self.lo == self.hi

    def shifted(self, s: int, sign: int = 1) -> Signal:
        """The signal times ``sign * 2**s``."""
        lo, hi = self.lo << s, self.hi << s
        if sign < 0:
            lo, hi = -hi, -lo
        return Signal(lo, hi, self.lsb + s)


def width_of(lo: int, hi: int) -> int:
    """Bits of the two's complement form holding ``[lo, hi]`` (sign bit included if ``lo < 0``).

    >>> width_of(0, 255), width_of(-1, 0), width_of(-128, 127), width_of(0, 0)
    (8, 1, 8, 0)
    """
    lo, hi = int(lo), int(hi)
    if lo < 0:
        h, n = hi.bit_length(), (~lo).bit_length()  # ~lo == -lo - 1
        return (h if h > n else n) + 1
    return hi.bit_length()


def csd_digits(m: int) -> list[tuple[int, int]]:
    """Canonical signed digits of the integer ``m``: ``[(sign, exponent), ...]``.

    ``m = sum(sign * 2**exponent)`` with no two adjacent nonzero digits; the
    fewest nonzero digits of any signed-digit form (Reitwiesner 1960).

    >>> csd_digits(0), csd_digits(3), csd_digits(-6)
    ([], [(-1, 0), (1, 2)], [(1, 1), (-1, 3)])
    """
    m = int(m)
    digits = []
    e = 0
    while m:
        if m & 1:
            d = 2 - (m & 3)  # +1 if m = 1 (mod 4), -1 if m = 3 (mod 4)
            digits.append((d, e))
            m -= d
        m >>= 1
        e += 1
    return digits


def csd_count(m: np.ndarray) -> np.ndarray:
    """Number of nonzero canonical signed digits of each integer, vectorized.

    With ``h = |m| >> 1``: ``nnz = popcount(h XOR (|m| + h))`` (the positions
    where the non-adjacent form has a digit).

    >>> csd_count(np.array([0, 1, 3, 7, -7, 5, 11]))
    array([0, 1, 2, 2, 2, 2, 3])
    """
    arr = np.asarray(m)
    if arr.dtype == object:
        def one(v: int) -> int:
            a = abs(int(v))
            return ((a >> 1) ^ (a + (a >> 1))).bit_count()

        return np.vectorize(one, otypes=[np.int64])(arr)
    a = np.abs(arr.astype(np.int64))
    x = ((a >> 1) ^ (a + (a >> 1))).astype(np.uint64)
    count = np.zeros(x.shape, np.int64)
    while np.any(x):
        count += (x & np.uint64(1)).astype(np.int64)
        x = x >> np.uint64(1)
    return count


def carry_cells(bits: int, chain: int = 4) -> int:
    """Carry-chain primitives (CARRY4 on 7-series, CARRY8 on UltraScale) for ``bits`` bits."""
    return -(-max(bits, 0) // chain)


def _varies(s: Signal, p: int) -> bool:
    """Whether bit ``p`` of ``s`` can change (not a known-zero low bit, not a constant extension)."""
    if s.constant or p < s.lsb:
        return False
    return p <= s.top or s.signed


def adder_cells(a: Signal, b: Signal, subtract: bool = False, top: int | None = None) -> tuple[int, int, Signal]:
    """``a + b`` (or ``a - b``): ``(luts, carry4, result)``; ``top`` caps the result's
    top bit when the exact range of the sum is known to be narrower.

    A LUT sits at each result bit ``p`` from ``max(lsb_a, lsb_b)`` up to the
    higher of the operands' top bits where both operands vary (a signed
    operand varies in its sign extension); bits below are wires from the
    operand with the lower ``lsb``; result bits above both tops reuse the top
    pair's LUT. The carry chain spans from the first LUT to the result's top.
    (Measured with yosys ``synth_xilinx``, see ``tests/resources``.)
    """
    if subtract:
        lo, hi = a.lo - b.hi, a.hi - b.lo
    else:
        lo, hi = a.lo + b.lo, a.hi + b.hi
    out = Signal(lo, hi, min(a.lsb, b.lsb))
    luts, carry = _adder_count(a, b, subtract, out.top if top is None else min(top, out.top))
    return luts, carry, out


def _adder_count(a: Signal, b: Signal, subtract: bool, out_top: int) -> tuple[int, int]:
    """:func:`adder_cells`'s ``(luts, carry4)`` for a result whose top bit is ``out_top``."""
    if a.constant or b.constant:
        # adding a constant: the chain's XOR inputs are the other operand or its inverse;
        # ``c - x`` is ``c + ~x + 1``, whose carry enters at x's lowest bit (``0 - x`` too)
        var = b if a.constant else a
        start = var.lsb if subtract and a.constant else max(var.lsb, _lowest_one(a.lo if a.constant else b.lo))
        return 0, carry_cells(out_top - start + 1)
    start = max(a.lsb, b.lsb)
    # above both operands' top bits the sum bits reuse the propagate signal of
    # the top pair (sign extension): no new LUT. From ``start`` up, an operand
    # varies at every bit to its top, and beyond it if signed (_varies):
    # the bits where both vary are one run, counted in closed form.
    a_top, b_top = a.top, b.top
    last = min(out_top, max(a_top, b_top), a_top if not a.signed else out_top, b_top if not b.signed else out_top)
    luts = max(0, last - start + 1)
    if subtract and b.lsb < a.lsb:
        # the subtrahend's low bits borrow: the adder starts there, and the
        # minuend's zero low bits enter it as (unknown) inputs
        luts += a.lsb - b.lsb
        start = b.lsb
    return luts, carry_cells(out_top - start + 1)


def _lowest_one(c: int) -> int:
    c = int(c)
    return (c & -c).bit_length() - 1 if c else 1 << 30


class Adder(NamedTuple):
    """One adder of a tree: ``out = a + b`` or ``a - b`` (indices into the tree's signals); a named
    tuple, as :class:`Signal` (0.5 us faster to make than a frozen dataclass, once an adder)."""

    a: int
    b: int
    subtract: bool
    out: int
    luts: int
    carry: int


@dataclass
class AdderTree:
    """Terms summed by two-input adders.

    ``signals[k]`` is the range of signal ``k``; the first ``len(terms)``
    signals are the terms. The value of the tree is ``sign * signals[root]``
    (``root`` is None for an empty sum).
    """

    signals: list[Signal]
    adders: list[Adder]
    root: int | None
    sign: int

    @property
    def luts(self) -> int:
        return sum(a.luts for a in self.adders) + self.negation_luts

    @property
    def carry(self) -> int:
        return sum(a.carry for a in self.adders)

    @property
    def root_lsb(self) -> int:  # (1 << 30, no bits, for an empty sum)
        return self.signals[self.root].lsb if self.root is not None else 1 << 30

    @property
    def negation_luts(self) -> int:
        """A final ``0 - x`` when every term was negative: one LUT per varying bit."""
        if self.root is None or self.sign > 0:
            return 0
        s = self.signals[self.root]
        return 0 if s.constant else s.top + 2 - s.lsb


class _TreeBuilder:
    """The state of one :func:`adder_tree`: every signal so far (the terms first) and the adders."""

    def __init__(self, terms: list[tuple[int, Signal]], cap: int | None) -> None:
        self.terms = terms
        self.cap = cap
        self.signals = [s for _, s in terms]
        self.adders: list[Adder] = []

    def live(self, ks: list[int]) -> list[tuple[int, int]]:
        """``(sign, index)`` of the terms ``ks`` that are not the constant zero."""
        return [(self.terms[k][0], k) for k in ks if not (self.signals[k].constant and self.signals[k].lo == 0)]

    def key(self, t: tuple[int, int]) -> tuple[int, int, int]:
        """Order of the pool: lowest top bit first, then lower ``lsb``, then order of arrival."""
        s = self.signals[t[1]]
        return (s.top, s.lsb, t[1])

    def combine(self, x: tuple[int, int], y: tuple[int, int], exact: tuple[int, int] | None = None) -> tuple[int, int]:
        """Add (or subtract) two signed terms with one adder; ``(sign, index)`` of the sum."""
        (sx, kx), (sy, ky) = x, y
        if sx < 0 and sy > 0:
            (sx, kx), (sy, ky) = (sy, ky), (sx, kx)
        subtract = sx != sy
        sign = sx if not subtract else 1
        a, b = self.signals[kx], self.signals[ky]
        if exact is None:
            luts, carry, out = adder_cells(a, b, subtract, top=self.cap)
        else:  # the exact range of the sum: the adder pays for no bit above its top
            lo, hi = exact if sign > 0 else (-exact[1], -exact[0])
            out = Signal(lo, hi, min(a.lsb, b.lsb))
            wide = width_of(a.lo - b.hi, a.hi - b.lo) if subtract else width_of(a.lo + b.lo, a.hi + b.hi)
            top = min(out.top, wide - 1) if self.cap is None else min(out.top, wide - 1, self.cap)
            luts, carry = _adder_count(a, b, subtract, top)
        self.signals.append(out)
        self.adders.append(Adder(kx, ky, subtract, len(self.signals) - 1, luts, carry))
        return (sign, len(self.signals) - 1)

    def reduce(self, pool: list[tuple[int, int]], exact: tuple[int, int] | None = None) -> list[tuple[int, int]]:
        """Add the two narrowest terms of ``pool`` until one is left; the last sum has range ``exact``.

        A heap ordered by :meth:`key` (unique: it ends with the signal's index)
        gives the same pairs as sorting the pool before every addition, in
        ``O(n log n)`` instead of ``O(n^2 log n)`` for ``n`` terms.
        """
        if len(pool) == 2:  # (most groups: a weight of two digits) the heap's one step, without the heap
            x, y = pool if self.key(pool[0]) < self.key(pool[1]) else pool[::-1]
            return [self.combine(x, y, exact)]
        heap = [(self.key(t), t) for t in pool]
        heapq.heapify(heap)
        while len(heap) > 1:
            x, y = heapq.heappop(heap)[1], heapq.heappop(heap)[1]
            total = self.combine(x, y, exact if not heap else None)
            heapq.heappush(heap, (self.key(total), total))
        return [t for _, t in heap]


def adder_tree(
    terms: list[tuple[int, Signal]],
    groups: list[tuple[list[int], tuple[int, int]]] | None = None,
    cap: int | None = None,
) -> AdderTree:
    """Sum ``sign * signal`` terms with two-input adders, narrowest first.

    Each step takes the two terms with the lowest top bit (ties: lower
    ``lsb``, then order of arrival), adds them -- or subtracts the negative
    one from the positive one -- and puts the sum back. A pair of negative
    terms is added as magnitudes and stays negative. Constant terms (a bias)
    are added last.

    ``groups`` are summed first, each on its own: ``(term indices, (lo, hi))``
    where ``[lo, hi]`` is the group's exact range (the digits of one
    constant multiplication ``w * x``: interval arithmetic over the digits
    would treat the copies of ``x`` as independent and overstate the width).

    ``cap``: no bit above this one is used downstream (a wrap-around
    quantizer drops them), so no adder pays for higher bits (carries only
    travel upwards).

    >>> tree = adder_tree([(1, Signal(0, 15)), (-1, Signal(0, 15, 0).shifted(2)), (1, Signal(0, 15))])
    >>> [(a.a, a.b, a.subtract) for a in tree.adders], tree.sign
    ([(0, 2, False), (3, 1, True)], 1)
    """
    b = _TreeBuilder(terms, cap)
    grouped: set[int] = set()
    pool: list[tuple[int, int]] = []
    for ks, exact in groups or []:
        grouped.update(ks)
        pool += b.reduce(b.live(ks), exact)
    rest = b.live([k for k in range(len(terms)) if k not in grouped])
    consts = [t for t in rest if b.signals[t[1]].constant]
    pool = b.reduce(pool + [t for t in rest if not b.signals[t[1]].constant])
    for c in consts:
        pool = [b.combine(pool[0], c)] if pool else [c]
    if not pool:
        return AdderTree(b.signals, b.adders, None, 1)
    sign, root = pool[0]
    return AdderTree(b.signals, b.adders, root, sign)


#: DSP multiplier operand widths (signed): (A port, B port) per family.
#: DSP48E1 (7-series): 25 x 18; DSP48E2 (UltraScale/UltraScale+): 27 x 18.
#: Sources: Xilinx UG479 (7 Series DSP48E1 Slice), UG579 (UltraScale DSP Slice).
DSP_OPERANDS = {"DSP48E1": (25, 18), "DSP48E2": (27, 18)}


def dsp_count(bits_a: int, bits_b: int, family: str = "DSP48E1") -> int:
    """DSP slices for one ``bits_a x bits_b`` signed multiplication.

    The wider operand goes to the wide port; each port splits into chunks of
    its width minus one (the sign bit) beyond the first.

    >>> dsp_count(16, 16), dsp_count(25, 18), dsp_count(26, 18), dsp_count(27, 18, 'DSP48E2')
    (1, 1, 2, 1)
    """
    wide, narrow = DSP_OPERANDS[family]
    a, b = max(bits_a, bits_b), min(bits_a, bits_b)
    if a <= 0 or b <= 0:
        return 0
    na = 1 if a <= wide else 1 + -(-(a - wide) // (wide - 1))
    nb = 1 if b <= narrow else 1 + -(-(b - narrow) // (narrow - 1))
    return na * nb


def uses_dsp(bits_w: int, bits_x: int, min_bits: int = 10) -> bool:
    """Whether the Latency strategy maps a constant multiplication to a DSP.

    Vivado/Vitis HLS implements a multiplication by a constant in LUTs
    (shifts and adds) when its operands are narrow and on a DSP when both are
    wide; the hls4ml paper (Duarte et al., JINST 13 P07027, 2018, Sec. 5)
    observes the change at about 10 bits. ``bits_w`` is the weight's significant
    width (sign plus digits between its highest and lowest set bit); the
    threshold is a coefficient that :func:`hgq_fpga.resources.fit_cost_model`
    can refit to a user's vendor reports.

    >>> uses_dsp(3, 16), uses_dsp(12, 16)
    (False, True)
    """
    return bits_w >= min_bits and bits_x >= min_bits


def relu_luts(out_bits: int) -> int:
    """``max(x, 0)``: each kept non-sign bit is ``x_b AND NOT sign``: one LUT per bit.

    >>> relu_luts(8)
    8
    """
    return max(int(out_bits), 0)


def max_luts(bits: int) -> tuple[int, int]:
    """``max(a, b)`` of two ``bits``-wide signals: ``(luts, carry4)``.

    A comparator (the carry chain of ``a - b``: one LUT per bit) and a 2:1
    multiplexer per output bit (one LUT per bit).

    >>> max_luts(8)
    (16, 2)
    """
    bits = max(int(bits), 0)
    return 2 * bits, carry_cells(bits)


def round_luts(out_bits: int) -> tuple[int, int]:
    """Round-half-up of a truncation: add the first dropped bit, an increment of the kept bits.

    An incrementer's bits each need a LUT only for the XOR with the carry, which
    the carry chain provides: no LUTs, ``ceil(bits/4)`` CARRY4.

    >>> round_luts(8)
    (0, 2)
    """
    return 0, carry_cells(out_bits)


def saturate_luts(out_bits: int, dropped_bits: int) -> int:
    """Saturation to ``out_bits``: detect overflow over the ``dropped_bits`` top
    bits plus the sign (one LUT6 takes 6 inputs, a tree of them), and a
    multiplexer per output bit (the output bit, the clamp value, the flags).

    >>> saturate_luts(8, 4)
    9
    """
    if dropped_bits <= 0 or out_bits <= 0:
        return 0
    detect = math.ceil((dropped_bits + 1 - 1) / 5) if dropped_bits + 1 > 1 else 0
    return out_bits + detect


def table_luts(address_bits: int, data_bits: int) -> int:
    """A ROM of ``2**address_bits`` words of ``data_bits`` bits in LUT6s.

    Each output bit is a function of the address: one LUT6 up to 6 address
    bits; beyond, ``2**(a-6)`` LUT6 joined by MUXF7/MUXF8 and, past 8 bits,
    a LUT multiplexer tree (about ``2**(a-6)/4`` more LUTs).

    >>> table_luts(4, 8), table_luts(8, 8), table_luts(10, 1)
    (8, 32, 20)
    """
    a, d = int(address_bits), int(data_bits)
    if d <= 0:
        return 0
    if a <= 6:
        return d
    per_bit = 2 ** (a - 6)
    if a > 8:
        per_bit += 2 ** (a - 8)
    return d * per_bit
