"""A parser for the expressions that :mod:`~hgq_fpga.backends.rtl.verilog` writes (read back,
bit by bit, by :mod:`~hgq_fpga.backends.rtl.bits`).

Nodes are tuples: ``("lit", w, signed, v)``, ``("name", n)``, ``("sel", n, hi, lo)``, ``(op, ...)``.

Example:
    >>> parse("a + 4'sd2")
    ('+', ('name', 'a'), ('lit', 4, True, 2))
"""

from __future__ import annotations

import re

__all__ = ["parse"]

_TOKEN = re.compile(r"\s*(?:(\d+)'(s?)([bdh])([0-9a-fA-F]+)|(\d+)|(\$?[A-Za-z_]\w*)|(<<<|>>>|[-+*?:<>(){}\[\],]))")
_LEVELS = (("<", ">"), ("<<<", ">>>"), ("+", "-"), ("*",))


class Parser:
    """Expressions of the writer: names, bit and part selects, sized literals, ``$signed``,
    function calls, concatenations, replications, unary minus, ``* + - <<< >>> < >`` and ``?:``.
    Nodes are tuples: ``("lit", w, signed, v)``, ``("name", n)``, ``("sel", n, hi, lo)``, ``(op, ...)``."""

    def __init__(self, text: str) -> None:
        self.toks: list[tuple] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ValueError(f"cannot read {text[pos:]!r}")
            pos = m.end()
            w, s, base, digits, num, ident, op = m.groups()
            self.toks.append(("lit", int(w), s == "s", int(digits, {"b": 2, "d": 10, "h": 16}[base])) if w
                             else ("num", int(num)) if num else ("id", ident) if ident else ("op", op))
        self.i = 0

    def parse(self) -> tuple:
        node = self.expr()
        if self.i != len(self.toks):
            raise ValueError("unexpected tokens")
        return node

    def op(self, *ops: str) -> str | None:
        t = self.toks[self.i] if self.i < len(self.toks) else None
        if t is not None and t[0] == "op" and t[1] in ops:
            self.i += 1
            return t[1]
        return None

    def need(self, op: str, node: tuple = ()) -> tuple:
        if not self.op(op):
            raise ValueError(f"expected {op!r}")
        return node

    def num(self) -> int:
        t = self.toks[self.i]
        self.i += 1
        if t[0] != "num":
            raise ValueError("expected a number")
        return t[1]

    def expr(self) -> tuple:
        c = self.binary(0)
        return ("?", c, self.need(":", self.expr()), self.expr()) if self.op("?") else c

    def binary(self, level: int) -> tuple:
        if level == len(_LEVELS):
            return self.unary()
        a = self.binary(level + 1)
        while (o := self.op(*_LEVELS[level])) is not None:
            a = (o, a, self.binary(level + 1))
        return a

    def unary(self) -> tuple:
        if self.op("-"):
            return ("neg", self.unary())
        if self.op("("):
            return self.need(")", self.expr())
        if self.op("{"):
            rep = self.i + 1 < len(self.toks) and self.toks[self.i][0] == "num" and self.toks[self.i + 1] == ("op", "{")
            n = self.num() if rep else 1
            if rep:
                self.need("{")
            parts = [self.expr()]
            while self.op(","):
                parts.append(self.expr())
            self.need("}")
            return self.need("}", ("cat", parts * n)) if rep else ("cat", parts)
        t = self.toks[self.i]
        self.i += 1
        if t[0] == "lit":
            return t
        if t[0] == "num":
            return ("lit", 32, True, t[1])
        if t[0] != "id":
            raise ValueError(f"unexpected {t[1]!r}")
        if self.op("("):
            e = self.need(")", self.expr())
            return ("$signed", e) if t[1] == "$signed" else ("call", t[1], e)
        if self.op("["):
            hi = self.num()
            return self.need("]", ("sel", t[1], hi, self.num() if self.op(":") else hi))
        return ("name", t[1])


def parse(text: str) -> tuple:
    """The tree of one expression."""
    return Parser(text).parse()
