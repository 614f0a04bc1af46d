"""Our own check of every type hls4ml chose, against the IR's exact values.

hls4ml's ``BitExact`` pass derives each variable's ``ap_fixed`` type by
interval arithmetic, narrows types to what later quantizers request, and
fuses one-format quantizers into the type of the layer before them. Two of
its rules were found wrong (:mod:`hgq_fpga.backends.hls4ml.fixes`); so before
a project is written, we re-derive, independently, what
every hls4ml variable must hold and checks the type hls4ml gave it:

* a value that a later layer uses as it is must be **held**: every value of
  its exact range ``[lo, hi]`` on its grid ``2**-g`` is representable,
  ``g <= f_T`` and ``T_min <= lo, hi <= T_max``;
* a value read only by a quantizer ``Q`` may be narrower if the quantizer
  still sees the same thing (``T`` **refines** ``Q``): ``Q(T(x)) = Q(x)``.
  That holds when ``T`` does not round (``g <= f_T``) or truncates at least as
  finely (``f_T >= f_Q``, one bit more for a rounding ``Q``), and when ``T``
  does not overflow on the range, or wraps with at least ``Q``'s integer bits
  under a wrapping ``Q``, or saturates beyond ``Q``'s range under a
  saturating one;
* a quantizer fused into a type (the type *is* the quantizer) must
  **agree** with it on the range: ``T(x) = Q(x)``, and so must each element
  of a quantizer layer's (narrowed) mask;
* a lookup table's input type has exactly the index format of the table
  (``nnet::unary_lut`` indexes by the raw bits);
* weights, biases, scales and tables are held exactly; a dense or
  convolution accumulator wraps (modular sums are exact) with enough
  fractional bits.

Grids ``g`` (the finest fractional bit any value of a tensor can have) are
propagated by this module's own rules (:data:`GRID`), not hls4ml's. A type
that fails is a :class:`TypeProblem`;
:func:`hgq_fpga.backends.hls4ml.typewalk.check_types` applies these rules to
every variable of an hls4ml model and returns the problems, and
``to_hls4ml`` refuses the project (nothing written) if there is any.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ...fixed import minimal_format
from ...ir import Graph, Registry, ops as ir

__all__ = ["ApType", "Domain", "GRID", "TypeProblem", "grids", "holds", "agrees", "refines", "value_grid", "overflows"]

#: grid of a float input (any double) and of a constant zero (no bits)
UNBOUNDED, NONE = 10**6, -(10**6)
#: truncating a double to ``f_q + DOUBLE_BITS`` fractional bits changes no rounding to ``f_q`` bits
#: (hgq_fpga.backends.hls4ml.fixes.DOUBLE_BITS, where the argument is)
DOUBLE_BITS = 54


HALF = Fraction(1, 2)
#: roundings that are not invariant under a shift by the wrap period (they depend on the sign)
SIGN_DEPENDENT = ("TRN_ZERO", "RND_ZERO", "RND_INF")

#: ``ap_fixed``'s rounding modes on a value ``n`` in units of the last bit
_ROUND = {
    "TRN": math.floor,
    "TRN_ZERO": lambda n: math.floor(n) if n >= 0 else math.ceil(n),
    "RND": lambda n: math.floor(n + HALF),
    "RND_ZERO": lambda n: math.ceil(n - HALF) if n >= 0 else math.floor(n + HALF),
    "RND_MIN_INF": lambda n: math.ceil(n - HALF),
    "RND_INF": lambda n: math.floor(n + HALF) if n >= 0 else math.ceil(n - HALF),
    "RND_CONV": round,  # Python rounds a Fraction's ties to even
}


@dataclass(frozen=True)
class ApType:
    """An ``ap_fixed<width, integer, rounding, overflow>`` (``signed=False``: ``ap_ufixed``).

    ``width == 0`` is the empty type: every value becomes 0.
    """

    signed: bool
    width: int
    integer: int
    rounding: str = "TRN"
    overflow: str = "WRAP"

    @classmethod
    def of(cls, precision: Any) -> ApType:
        """From an hls4ml ``FixedPrecisionType`` (or an ``IntegerPrecisionType``)."""
        return cls(bool(precision.signed), int(precision.width), int(getattr(precision, "integer", precision.width)),
                   str(getattr(precision, "rounding_mode", None) or "TRN").upper().replace("AP_", ""),
                   str(getattr(precision, "saturation_mode", None) or "WRAP").upper().replace("AP_", ""))

    @classmethod
    def of_quantizer(cls, k: int, i: int, f: int, rounding: str, overflow: str) -> ApType:
        width = max(k + i + f, 0)
        return cls(bool(k), width, k + i if width else 0, rounding, overflow)

    @property
    def f(self) -> int:
        return self.width - self.integer

    @property
    def lo(self) -> Fraction:
        if not self.width or not self.signed:
            return Fraction(0)
        low = -Fraction(2) ** (self.integer - 1)
        # SAT_SYM saturates at -max, except at width 1 where ap_fixed keeps the sign bit's value
        return low + Fraction(2) ** -self.f if self.overflow == "SAT_SYM" and self.width > 1 else low

    @property
    def hi(self) -> Fraction:
        if not self.width:
            return Fraction(0)
        return Fraction(2) ** (self.integer - self.signed) - Fraction(2) ** -self.f

    def round(self, x: Fraction) -> Fraction:
        """``x`` on this type's grid (before overflow), in this type's rounding mode."""
        if not self.width:
            return Fraction(0)
        step = Fraction(2) ** -self.f
        return _ROUND[self.rounding](x / step) * step

    def cast(self, x: Fraction) -> Fraction:
        """``ap_fixed``'s conversion of ``x`` to this type."""
        if not self.width:
            return Fraction(0)
        r = self.round(x)
        if self.lo <= r <= self.hi:
            return r
        if self.overflow == "SAT_ZERO":
            return Fraction(0)
        if self.overflow in ("SAT", "SAT_SYM"):
            return self.lo if r < self.lo else self.hi
        period = Fraction(2) ** self.integer
        return (r - self.lo) % period + self.lo

    def __str__(self) -> str:
        if not self.width:
            return "(zero width)"
        return f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer},AP_{self.rounding},AP_{self.overflow}>"


@dataclass(frozen=True)
class Domain:
    """Every value a variable can take: ``[lo, hi]`` (None: any double) on the grid ``2**-grid``."""

    lo: Fraction | None
    hi: Fraction | None
    grid: int
    doubles: bool = False  #: the values are doubles (a network input): see ``refines``

    @property
    def bounded(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def constant(self) -> bool:
        return self.bounded and self.lo == self.hi

    @classmethod
    def of(cls, t: Any, grid: np.ndarray, where: np.ndarray | None = None) -> Domain:
        """The domain of IR tensor ``t`` (restricted to the elements ``where``)."""
        g = grid if where is None else grid[where]
        top = int(np.max(g, initial=NONE))
        if t.lo is None:
            return cls(None, None, top)
        lo, hi = (np.asarray(v).reshape(grid.shape) for v in (t.lo, t.hi))
        if where is not None:
            lo, hi = lo[where], hi[where]
        if not np.size(lo):
            return cls(Fraction(0), Fraction(0), NONE)
        scale = Fraction(2) ** -int(t.f)
        return cls(int(np.min(lo)) * scale, int(np.max(hi)) * scale, top)

    def union(self, other: Domain) -> Domain:
        if not (self.bounded and other.bounded):
            return Domain(None, None, max(self.grid, other.grid))
        return Domain(min(self.lo, other.lo), max(self.hi, other.hi), max(self.grid, other.grid))  # type: ignore[type-var]


def _rounds(t: ApType, d: Domain) -> bool:
    """Whether ``t`` can round a value of ``d``."""
    if d.constant:
        return t.round(d.lo) != d.lo  # type: ignore[arg-type]
    return d.grid > t.f


def overflows(t: ApType, d: Domain) -> bool:
    """Whether ``t`` can overflow on ``d`` (after its rounding)."""
    if not d.bounded:
        return True
    return not (t.lo <= t.round(d.lo) and t.round(d.hi) <= t.hi)  # type: ignore[arg-type]


def holds(t: ApType, d: Domain) -> bool:
    """Every value of ``d`` is exactly representable in ``t``."""
    if d.constant and d.lo == 0:
        return True
    return t.width > 0 and not _rounds(t, d) and not overflows(t, d)


def _saturates(t: ApType) -> bool:
    return t.overflow in ("SAT", "SAT_SYM")


def _overflow_kind(t: ApType) -> str:
    """``WRAP``, ``SAT`` (to the bounds ``lo``/``hi``) or ``SAT_ZERO``."""
    return "SAT" if _saturates(t) else t.overflow


def agrees(a: ApType, b: ApType, d: Domain) -> bool:
    """``a(x) == b(x)`` for every ``x`` of ``d`` (``ap_fixed`` conversions; width 0 gives 0)."""
    if d.constant:
        return a.cast(d.lo) == b.cast(d.lo)  # type: ignore[arg-type]
    if holds(a, d) and holds(b, d):
        return True
    if not a.width or not b.width:  # one of them is the constant 0: the other must give 0 everywhere
        t = a if a.width else b
        return not t.width or (d.bounded and not overflows(t, d) and t.round(d.lo) == 0 == t.round(d.hi))  # type: ignore[arg-type]
    ra, rb = _rounds(a, d), _rounds(b, d)
    if (ra or rb) and not (a.f == b.f and a.rounding == b.rounding):
        return False
    if not overflows(a, d) and not overflows(b, d):
        return True
    kind = _overflow_kind(a)
    if kind != _overflow_kind(b):
        return False
    if (a.lo, a.hi) == (b.lo, b.hi):
        return True
    if kind == "WRAP" or not d.bounded:
        return False
    # saturation side by side: a side where the bounds differ must not be reached by either type
    # (both round alike here: same bits and mode, or no rounding at all)
    low = a.lo == b.lo or min(a.round(d.lo), b.round(d.lo)) >= max(a.lo, b.lo)  # type: ignore[arg-type]
    high = a.hi == b.hi or max(a.round(d.hi), b.round(d.hi)) <= min(a.hi, b.hi)  # type: ignore[arg-type]
    return low and high


def refines(t: ApType, q: ApType, d: Domain) -> bool:
    """``q(t(x)) == q(x)`` for every ``x`` of ``d``: ``t`` keeps what quantizer ``q`` reads."""
    if not q.width or holds(t, d):
        return True
    if not t.width:
        return agrees(t, q, d)
    if _rounds(t, d):
        # floor(x) to finer bits keeps floor(x) and floor(x + 1/2) at q's bits; it moves values just
        # above a tie onto it, so it does not keep the other modes (ties to even, towards zero, ...)
        finer = t.rounding == "TRN" and ((q.rounding == "TRN" and t.f >= q.f) or
                                         (q.rounding == "RND" and t.f >= q.f + 1) or
                                         (d.doubles and t.f >= q.f + DOUBLE_BITS))
        if not (finer or (t.f == q.f and t.rounding == q.rounding)):
            return False
    if not overflows(t, d):
        return True
    kind, t_kind = _overflow_kind(q), _overflow_kind(t)
    if kind == "WRAP":
        if q.rounding in SIGN_DEPENDENT and (d.constant or d.grid > q.f):
            return False  # t's wrap moves x across 0 before q rounds towards (or away from) it
        return t.overflow == "WRAP" and t.integer >= q.integer
    # saturating q, side by side: a side where t overflows must give what q gives beyond it
    low = not d.bounded or t.round(d.lo) < t.lo  # type: ignore[arg-type]
    high = not d.bounded or t.round(d.hi) > t.hi  # type: ignore[arg-type]
    if kind == "SAT":  # t must saturate too, beyond q's bounds (q(t.lo) = q.lo = q(x) for x < t.lo)
        return t_kind == "SAT" and (not low or t.lo <= q.lo) and (not high or t.hi >= q.hi)
    if t_kind == "WRAP":
        return False
    # q gives 0 beyond its range: t's extreme (or its 0) must still leave q's range once q rounds it;
    # an unsigned q also gives 0 below a t extreme that it rounds to 0
    low_ok = not low or q.round(t.lo) < q.lo or (q.lo == 0 and q.round(t.lo) == 0)
    high_ok = not high or q.round(t.hi) > q.hi
    return low_ok and high_ok


@dataclass
class TypeProblem:
    """A type hls4ml chose that would make the firmware differ from the model."""

    layer: str | None
    variable: str
    type: str
    why: str

    def __str__(self) -> str:
        where = f"layer {self.layer!r}" if self.layer else "the model"
        return f"{where}: {self.variable} is {self.type}, which {self.why}"


# -- grids: the finest fractional bit of any value, per element, by our own rules ---------------

#: ``rule(op, input grids) -> output grid`` (per element, shape without batch)
GRID = Registry("the type check of hls4ml projects")


def value_grid(values: np.ndarray) -> np.ndarray:
    """Per element: the fractional bits ``values`` need (:data:`NONE` for zeros)."""
    values = np.asarray(values, np.float64)
    return np.where(values != 0, minimal_format(values).f, NONE).astype(np.int64)


def _full(op: ir.Op, g: int, shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    return np.full(shapes[op.outputs[0]], g, dtype=np.int64)


@GRID.register(ir.Quantize)
def _g_quantize(op: ir.Quantize, gs: list[np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    k, i, f = np.broadcast_arrays(op.k, op.i, op.f, gs[0])[:3]
    return np.where(k + i + f > 0, np.minimum(f, gs[0]), NONE)


@GRID.register(ir.Dense, ir.Conv)
def _g_linear(op: ir.Linear, gs: list[np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    w = op.kernel.values
    gw = value_grid(w).reshape(-1, w.shape[-2], w.shape[-1])  # (taps, in, out)
    gx = gs[0]
    if isinstance(op, ir.Conv):  # per output position: the taps its window reads
        from ...ir.intmath import im2col

        cols = im2col(gx[None], w.shape[:-2], op.strides, op.dilation, op.padding, pad_value=NONE)[0]
        terms = np.where((gw > NONE) & (cols[..., None] > NONE), cols[..., None] + gw, NONE)
        out = np.max(terms, axis=(-3, -2))
    else:  # a dense layer, per leading position on a rank > 1 tensor
        terms = np.where((gw[0] > NONE) & (gx[..., :, None] > NONE), gx[..., :, None] + gw[0], NONE)
        out = np.max(terms, axis=-2)
    if op.bias is not None:
        out = np.maximum(out, value_grid(op.bias.values))
    return np.broadcast_to(out, shapes[op.outputs[0]])


@GRID.register(ir.Scale)
def _g_scale(op: ir.Scale, gs: list[np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    gs_ = value_grid(op.scale.values)
    out = np.where((gs_ > NONE) & (gs[0] > NONE), gs[0] + gs_, NONE)
    return np.maximum(out, value_grid(op.offset.values))


@GRID.register(ir.Relu)
def _g_same(op: ir.Op, gs: list[np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    return gs[0]


@GRID.register(ir.Reshape)
def _g_reshape(op: ir.Reshape, gs: list[np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    return gs[0].reshape(shapes[op.outputs[0]])


def _windows(op: ir.MaxPool | ir.AvgPool, g: np.ndarray) -> np.ndarray:
    """The largest grid in each pooling window (padding contributes nothing)."""
    from ...ir.intmath import im2col

    cols = im2col(g[None], op.pool, op.strides, (1,) * len(op.pool), op.padding, pad_value=NONE)
    return np.max(cols, axis=-2)[0]


@GRID.register(ir.MaxPool)
def _g_max(op: ir.MaxPool, gs: list[np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    return _windows(op, gs[0])


@GRID.register(ir.AvgPool)
def _g_avg(op: ir.AvgPool, gs: list[np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    g = _windows(op, gs[0])
    return np.where(g > NONE, g + int(np.prod(op.pool)).bit_length() - 1, NONE)


@GRID.register(ir.Add)
def _g_add(op: ir.Add, gs: list[np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    return np.broadcast_to(np.maximum.reduce(np.broadcast_arrays(*gs)), shapes[op.outputs[0]])


@GRID.register(ir.Concat)
def _g_concat(op: ir.Concat, gs: list[np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    return np.concatenate(gs, axis=op.axis)


@GRID.register(ir.Multiply)
def _g_multiply(op: ir.Multiply, gs: list[np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    a, b = np.broadcast_arrays(*gs)
    return np.broadcast_to(np.where((a > NONE) & (b > NONE), a + b, NONE), shapes[op.outputs[0]])


@GRID.register(ir.Table)
def _g_table(op: ir.Table, gs: list[np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    return _full(op, int(np.max(value_grid(op.table.values), initial=NONE)), shapes)


def grids(graph: Graph) -> dict[str, np.ndarray]:
    """Every tensor's per-element grid (:data:`GRID`; network inputs are any double)."""
    shapes = {name: t.shape for name, t in graph.tensors.items()}
    out: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if isinstance(node, ir.Input):
            out[node.outputs[0]] = np.full(shapes[node.outputs[0]], UNBOUNDED, dtype=np.int64)
            continue
        out[node.outputs[0]] = np.asarray(GRID(node, [out[s] for s in node.inputs], shapes), dtype=np.int64)
    return out

