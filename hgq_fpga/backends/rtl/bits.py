"""The bits of the Verilog that :func:`~hgq_fpga.backends.rtl.to_verilog` writes, one by one.

Each wire's expression (``wire ... name = expr;`` or an ``hgq_add`` instance) is
evaluated bit by bit under Verilog's rules (self- and context-determined widths,
signedness, sign extension): every bit becomes a :data:`Bit`, either

* a constant ``0``/``1``,
* ``(root, j)``: bit ``j`` of a *root*, an input port or a wire with logic, the very
  same signal (what shifts, slices, concatenations and sign extensions produce), or
* a bit of logic (:class:`_Fn`): one per distinct operation on the same input bits
  (bit ``j`` of a sum of these operands, a multiplexer of these bits, a comparison),
  with the root bits it depends on (a sum's bit ``j`` on the operands' bits up to
  ``j``; ``x > c`` on the bits of ``x`` from the last 0 of ``c`` up; bit ``j`` of a
  maximum on the operands' bits from ``j`` up; a table or a product on all its
  operands' bits).

A wire with logic bits is a root: each becomes ``(wire, j)`` (unless an earlier root
has the same logic: synthesis merges them), its dependencies kept (:attr:`Values.deps`).
A wire without is wiring: no logic and, in a pipeline, no register of its own. Bits
outside a wire's payload are 0, as its analysis guarantees.

Example:
    >>> v = values([], [])
    >>> v.size["w1"], v.bits["w1"] = (4, True), [("w1", 0), ("w1", 1), ("w1", 2), ("w1", 3)]
    >>> v.eval("w1 >>> 2", 4)
    [('w1', 2), ('w1', 3), ('w1', 3), ('w1', 3)]
    >>> v.eval("{w1[1:0], 1'b1}", 4)
    [1, ('w1', 0), ('w1', 1), 0]
    >>> s = v.eval("w1 + 4'sd2", 4)  # bit 0 is w1's; bit j of the sum, of w1's bits up to j
    >>> s[0], [sorted(b.deps) for b in s[1:3]]
    (('w1', 0), [[('w1', 1)], [('w1', 1), ('w1', 2)]])
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence, Union

from .vparse import parse

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import Net

__all__ = ["Bit", "Values", "values"]

_NAME = re.compile(r"\b(?:[wqy]\d+|in\d+)\b")  # as pipeline.NAME

#: one bit's value: ``0``/``1``; ``(root, bit)``, that root bit itself; or (while a wire is read) a
#: bit its logic computes (:class:`_Fn`), which becomes a root bit of its own
Bit = Union[int, tuple, "_Fn"]

@dataclass(slots=True, eq=False)
class _Fn:
    """A bit that logic computes: one object per distinct function of the same inputs (see
    :meth:`Values.fn`), and the root bits it depends on."""

    deps: frozenset
    reset: bool = False  # a multiplexer with a constant input: a flip-flop's synchronous set or reset


@dataclass(slots=True, eq=False)
class _Not:
    """The inverse of a bit, while a sum is worked out (it becomes a logic bit of its own)."""

    v: Bit


def _dset(v: Any) -> Any:
    """The root bits a non-constant bit (or a carry's dependencies) stands for."""
    c = v.__class__
    return (v,) if c is tuple else v.deps if c is _Fn else _dset(v.v) if c is _Not else v


def _deps(values: Sequence[Any]) -> frozenset:
    """The root bits a function of ``values`` depends on."""
    out: set = set()
    for v in values:
        if v.__class__ is not int:
            out.update(_dset(v))
    return frozenset(out)


def _atom(v: Bit) -> Any:
    """``v`` in a key: a constant, a root bit, or the identity of a logic bit."""
    return id(v) if v.__class__ is _Fn else v


def _extend(bits: list[Bit], w: int, signed: bool) -> list[Bit]:
    if len(bits) >= w:
        return bits[:w]
    return bits + [bits[-1] if signed and bits else 0] * (w - len(bits))


def _const(v: int, w: int) -> list[Bit]:
    return [(v >> j) & 1 for j in range(w)]


def _inv(v: Any) -> Any:
    c = v.__class__
    return 1 - v if c is int else v.v if c is _Not else v if c is frozenset else _Not(v)


def _xor(x: Any, y: Any, c: Any) -> Any:
    var, parity, many = None, 0, False
    for v in (x, y, c):
        if v.__class__ is int:
            parity ^= v
        elif var is None:
            var = v
        else:
            many = True
    if many:
        return _deps((x, y, c))
    if var is None:
        return parity
    return _inv(var) if parity else var


def _carry(x: Any, y: Any, c: Any) -> Any:
    """The majority of three bits."""
    zeros = ones = 0
    var = []
    for v in (x, y, c):
        if v.__class__ is not int:
            var.append(v)
        elif v:
            ones += 1
        else:
            zeros += 1
    if zeros >= 2 or ones >= 2:
        return int(ones >= 2)
    return var[0] if zeros == 1 and ones == 1 else _deps(var)


def _add(a: list[Bit], b: list[Any], carry: int, env: Values, key: tuple) -> list[Bit]:
    """``a + b + carry`` (``b`` may hold inverted bits), bit by bit: where no carry can arrive
    and one operand bit is 0, the sum's bit is the other's (the low bits of ``x + 320``, as
    synthesis finds too); the other bits are ``(key, j)`` (:meth:`Values.fn`)."""
    out: list[Any] = []
    c: Any = carry
    for x, y in zip(a, b):
        if c.__class__ is frozenset:  # along a carry chain: the sum and carry depend on all so far
            if x.__class__ is int and y.__class__ is int:
                out.append(c)
                c = x if x == y else c
                continue
            c = c.union(_dset(x) if x.__class__ is not int else (), _dset(y) if y.__class__ is not int else ())
            out.append(c)
            continue
        out.append(_xor(x, y, c))
        c = _carry(x, y, c)
    kid = env.intern(key) if any(v.__class__ is frozenset for v in out) else -1
    return [env.fn((kid, j), v) if v.__class__ is frozenset else
            env.fn(("~", _atom(v.v)), frozenset(_dset(v))) if v.__class__ is _Not else v for j, v in enumerate(out)]


def _signed_sum(out: list[Bit], a: list[Bit], b: list[Bit]) -> list[Bit]:
    """A signed sum of ``a`` and ``b`` (each the sign extension of its low bits) fits in one bit
    more than they: above it, the sum's bits are that bit (synthesis narrows the adder so)."""
    t = len(out) - 1
    while t > 0 and (a[t - 1] is a[t] or a[t - 1] == a[t] == 0 or a[t - 1] == a[t] == 1) \
            and (b[t - 1] is b[t] or b[t - 1] == b[t] == 0 or b[t - 1] == b[t] == 1):
        t -= 1
    return out[:t + 2] + [out[t + 1]] * (len(out) - t - 2) if t + 2 < len(out) else out


def _value(bits: list[Bit], signed: bool) -> int:
    v = sum(b << j for j, b in enumerate(bits))
    return v - (1 << len(bits)) if signed and bits and bits[-1] else v


def _size(node: tuple, env: Values) -> tuple[int, bool]:
    """Verilog's self-determined width and signedness of ``node``."""
    k = node[0]
    if k == "lit":
        return node[1], node[2]
    if k == "name":
        return env.size[env.current[node[1]]]
    if k == "sel":
        return node[2] - node[3] + 1, False
    if k == "$signed":
        return _size(node[1], env)[0], True
    if k == "cat":
        return sum(_size(p, env)[0] for p in node[1]), False
    if k in ("<", ">"):
        return 1, False
    if k == "call":
        return env.functions[node[1]]
    if k in ("neg", "<<<", ">>>"):
        return _size(node[1], env)
    (wa, sa), (wb, sb) = _size(node[-2], env), _size(node[-1], env)
    return max(wa, wb), sa and sb


def _self(node: tuple, env: Values) -> list[Bit]:
    return _ev(node, *_size(node, env), env)


def _ev(node: tuple, w: int, s: bool, env: Values) -> list[Bit]:
    """The bits of ``node`` in a context ``w`` bits wide of signedness ``s``."""
    k = node[0]
    if k == "lit":
        return _extend(_const(node[3], node[1]), w, s and node[2])
    if k in ("name", "sel"):
        bits = env.bits[env.current[node[1]]]
        if k == "sel":
            if node[2] >= len(bits) or node[3] < 0:
                raise ValueError("select out of range")
            bits = bits[node[3]:node[2] + 1]
        return _extend(bits, w, s)
    if k in ("$signed", "cat", "call", "<", ">"):
        return _extend(_self_only(node, env), w, s)
    if k == "neg":
        x = _ev(node[1], w, s, env)
        y = _add([0] * w, [_inv(v) for v in x], 1, env, ("-", (0,) * w, tuple(map(_atom, x))))
        return _signed_sum(y, [0] * w, x) if s else y
    if k in ("<<<", ">>>"):
        if node[2][0] != "lit":
            raise ValueError("a shift by a variable amount")
        a, n = _ev(node[1], w, s, env), min(node[2][3], w)
        return [0] * n + a[:w - n] if k == "<<<" else a[n:] + [a[-1] if s else 0] * n
    if k == "?":
        cond, a, b = _self(node[1], env), _ev(node[2], w, s, env), _ev(node[3], w, s, env)
        if all(isinstance(v, int) for v in cond):
            return a if any(cond) else b
        c, top = _atom(cond[0]) if len(cond) == 1 else tuple(map(_atom, cond)), _max_or_min(node, s, env)
        dc = _deps(cond)
        return [x if x == y else env.fn(("?", c, _atom(x), _atom(y)),  # max(a, b) >> j = max(a >> j, b >> j)
                                        _deps(a[j:] + b[j:]) if top else dc.union(_deps((x, y))),
                                        (x.__class__ is int) != (y.__class__ is int))
                for j, (x, y) in enumerate(zip(a, b))]
    a, b = _ev(node[1], w, s, env), _ev(node[2], w, s, env)
    ta, tb = tuple(map(_atom, a)), tuple(map(_atom, b))
    if k in ("+", "-"):
        y = _add(a, b, 0, env, ("+", frozenset((ta, tb)))) if k == "+" \
            else _add(a, [_inv(v) for v in b], 1, env, ("-", ta, tb))
        return _signed_sum(y, a, b) if s else y
    if all(isinstance(v, int) for v in a + b):  # a constant product
        return _const(_value(a, False) * _value(b, False), w)
    kid = env.intern(("*", frozenset((ta, tb))))  # a product's bit j: of the operands' bits up to j
    return [env.fn((kid, j), _deps(a[:j + 1] + b[:j + 1])) for j in range(w)]


def _max_or_min(node: tuple, s: bool, env: Values) -> bool:
    """Whether conditional ``node`` is ``(a > b) ? a : b`` or the like, compared as it is extended."""
    cond, a, b = node[1:]
    if cond[0] not in ("<", ">") or (cond[1:] != (a, b) and cond[1:] != (b, a)):
        return False
    return _size(cond[1], env)[1] and _size(cond[2], env)[1] if s else not (_size(a, env)[1] and _size(b, env)[1])


def _self_only(node: tuple, env: Values) -> list[Bit]:
    """The bits of a self-determined node: ``$signed``, concatenation, function call, comparison."""
    k = node[0]
    if k == "$signed":
        return _self(node[1], env)
    if k == "cat":
        return [v for p in reversed(node[1]) for v in _self(p, env)]
    if k == "call":
        arg = _self(node[2], env)
        kid, deps = env.intern(("call", node[1], tuple(map(_atom, arg)))), _deps(arg)
        return [env.fn((kid, j), deps) for j in range(env.functions[node[1]][0])]
    (wa, sa), (wb, sb) = _size(node[1], env), _size(node[2], env)
    w, s = max(wa, wb), sa and sb
    a, b = _ev(node[1], w, s, env), _ev(node[2], w, s, env)
    if all(isinstance(v, int) for v in a + b):
        va, vb = _value(a, s), _value(b, s)
        return [int(va < vb if k == "<" else va > vb)]
    if s and k == "<" and b == [0] * w:  # a sign test
        return [a[-1]]
    if s and k == ">" and a == [0] * w:
        return [b[-1]]
    key = (k, s, tuple(map(_atom, a)), tuple(map(_atom, b)))
    if all(isinstance(v, int) for v in a):  # c < x is x > c, c > x is x < c
        a, b, k = b, a, "<" if k == ">" else ">"
    if all(isinstance(v, int) for v in b):
        return [_versus_constant(a, k, _value(b, s), s, env, key)]
    return [env.fn(key, _deps(a + b))]


def _versus_constant(a: list[Bit], k: str, c: int, s: bool, env: Values, key: tuple) -> Bit:
    """``a > c`` (``a >= c + 1``) or ``a < c``: ``a >> t`` against ``c >> t``, ``t`` the constant's
    low 0 bits: of ``a``'s bits from ``t`` up; constant, or the sign, when those are."""
    c += k == ">"
    t = min((c & -c).bit_length() - 1, len(a) - 1) if c else len(a) - 1
    hi, q = a[t:], c >> t
    if all(v.__class__ is int for v in hi):
        x = _value(hi, s)
        return int(x >= q if k == ">" else x < q)
    if s and all(v is hi[0] for v in hi):  # a >> t is 0 or -1
        if q != 0:
            return int((q < 0) == (k == ">"))
        return env.fn(("~", _atom(hi[0])), frozenset(_dset(hi[0]))) if k == ">" else hi[0]
    return env.fn(key, _deps(hi))


@dataclass
class Values:
    """The bits of every net (:func:`values`).

    Attributes:
        size, bits: each name's declared width and signedness; its bits (least significant first).
        functions: each Verilog function's width and signedness.
        deps: for each root (a net with logic), ``{bit: frozenset of root bits}`` for its own bits.
        aliases: a logic net whose every bit is an earlier root's -> the root of its first.
        opaque: the nets whose expressions were not understood (roots whose every bit depends on
            every bit of their operands: correct, if not as precise).
        resets: the root bits a multiplexer with a constant input computes (``c ? 4'sd7 : x``):
            synthesis makes that input a flip-flop's synchronous set or reset.
        masked: the nets with bits that are 0 by the analysis (outside the payload) but not by
            their logic: a pipeline writes those zeros (its logic may see values out of range).
    """

    size: dict[str, tuple[int, bool]] = field(default_factory=dict)
    bits: dict[str, list[Bit]] = field(default_factory=dict)
    functions: dict[str, tuple[int, bool]] = field(default_factory=dict)
    deps: dict[str, dict[int, frozenset]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    opaque: set[str] = field(default_factory=set)
    resets: set[tuple] = field(default_factory=set)
    masked: set[str] = field(default_factory=set)
    keys: dict[tuple, int] = field(default_factory=dict, repr=False)
    fns: dict[Any, _Fn] = field(default_factory=dict, repr=False)
    owner: dict[_Fn, tuple] = field(default_factory=dict, repr=False)  # logic bit -> the root bit it is
    current: dict[str, str] = field(default_factory=dict, repr=False)  # the names of the expression read

    def intern(self, key: tuple) -> int:
        """A number for ``key`` (an operation and its operands), the same for the same."""
        return self.keys.setdefault(key, len(self.keys))

    def fn(self, key: Any, deps: frozenset, reset: bool = False) -> _Fn:
        """The logic bit ``key`` stands for (one object per key: the same logic on the same
        inputs is the same bit, as synthesis merges it)."""
        f = self.fns.get(key)
        if f is None:
            f = self.fns[key] = _Fn(deps, reset)
        return f

    def eval(self, text: str, width: int) -> list[Bit]:
        """The bits of expression ``text`` assigned to ``width`` bits."""
        names: dict[str, str] = {}
        node = _parse(_NAME.sub(lambda m: names.setdefault(m.group(0), f"_{len(names)}"), text))
        self.current = {v: k for k, v in names.items()}
        w, s = _size(node, self)
        return _ev(node, max(w, width), s, self)[:width]


@functools.lru_cache(maxsize=4096)
def _parse(template: str) -> tuple:
    """An expression's tree, its names replaced by ``_0, _1, ...`` (so that it is read once)."""
    return parse(template)


_ADDER = re.compile(r"hgq_add #\((.*?)\) \w+ \(\.a\((.*)\), \.b\((.*)\), \.y\(\w+\)\);$")


def _net_bits(net: Net, env: Values) -> list[Bit]:
    """The bits of a net's expression (an ``hgq_add`` instance or a wire assignment)."""
    line = net.lines[-1]
    m = _ADDER.search(line) if line.startswith("hgq_add") else None
    if m:
        p = {k: int(v) for k, v in re.findall(r"\.(\w+)\((\d+)\)", m.group(1))}
        w = max(p["WY"], p["WA"], p["WB"])
        a = _extend(env.eval(m.group(2), p["WA"]), w, bool(p["SA"]))
        b = _extend(env.eval(m.group(3), p["WB"]), w, bool(p["SB"]))
        ta, tb = tuple(map(_atom, a)), tuple(map(_atom, b))
        y = _add(a, [_inv(v) for v in b], 1, env, ("-", ta, tb)) if p["SUB"] \
            else _add(a, b, 0, env, ("+", frozenset((ta, tb))))
        return _extend(y[:p["WY"]], net.width, False)
    _, eq, expr = line.partition(" = ")
    if not (eq and line.startswith("wire ") and line.endswith(";") and len(net.lines) == 1):
        raise ValueError("not a wire assignment")
    return env.eval(expr[:-1], net.width)


def values(nets: list[Net], ports: list[Net], functions: Sequence[str] = ()) -> Values:
    """Each net's bits, in order of declaration (bits outside a net's payload are 0). A net
    whose expression is not understood is a root whose bits depend on all its operands' bits."""
    env = Values()
    for f in functions:
        m = re.match(r"function (signed )?\[(\d+):0\] (\w+);", f)
        if m:
            env.functions[m.group(3)] = (int(m.group(2)) + 1, bool(m.group(1)))
    for p in ports:
        env.size[p.name], env.bits[p.name] = (p.width, False), [(p.name, j) for j in range(p.width)]
    for net in nets:
        env.size[net.name] = (net.width, net.signed)
        try:
            bits = _net_bits(net, env)
        except (ValueError, KeyError, IndexError):
            deps = _deps([v for o in net.operands for v in env.bits.get(o, ())])
            bits = [env.fn(("opaque", net.name, j), deps) for j in range(net.width)]
            env.opaque.add(net.name)
        hi, lo = net.payload
        if any(v != 0 for j, v in enumerate(bits) if not lo <= j <= hi):  # zeros by the analysis only
            env.masked.add(net.name)
            bits = [v if lo <= j <= hi else 0 for j, v in enumerate(bits)]
        own, logic = {}, None
        for j, v in enumerate(bits):
            if v.__class__ is _Fn:  # a logic bit: the root bit of its first net
                if v not in env.owner:
                    env.owner[v], own[j] = (net.name, j), v.deps
                    if v.reset:
                        env.resets.add((net.name, j))
                bits[j] = env.owner[v]
                logic = logic or bits[j][0]
        if own:
            env.deps[net.name] = own
        elif logic is not None:
            env.aliases[net.name] = logic
        env.bits[net.name] = bits
    return env
