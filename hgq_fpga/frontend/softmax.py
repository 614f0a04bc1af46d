"""QSoftmax as exact IR steps: exp table, sum, quantize, 1/s table, broadcast,
product, quantize (see :mod:`hgq_fpga.layers.softmax` for the formulas)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Constant, GraphBuilder, ops as ir

__all__ = ["softmax_nodes"]


def _ones(shape: tuple[int, int]) -> Constant:
    return Constant.from_values(np.ones(shape))


def _quantize(b: GraphBuilder, layer: str, src: str, k: int, i: int, f: int, rounding: str) -> str:
    shape = b.tensors[src].shape
    k_, i_, f_ = (np.full(shape, v, np.int64) for v in (k, i, f))
    return b.add(ir.Quantize(k=k_, i=i_, f=f_, rounding=rounding, overflow="SAT"), [src], layer)


def softmax_nodes(b: GraphBuilder, layer: Any, x: str, shape: tuple[int, ...]) -> str:
    """The nodes of a calibrated QSoftmax reading the quantized input ``x``."""
    from .keras import table_constant

    name, n = layer.name, shape[-1]
    t = layer.tables()
    exp = ir.Table(table=table_constant(t["exp"], layer.exp_f), k=t["k"], width=t["width"], f=t["f"],
                   function="exp")
    e = b.add(exp, [x], name, shape)
    s = b.add(ir.Dense(kernel=_ones((n, 1))), [e], name, (1,))
    s_q = _quantize(b, name, s, 0, t["i_s"], t["f_s"], "TRN")
    inv = ir.Table(table=table_constant(t["inv"], layer.inv_f), k=0, width=layer.inv_bits, f=t["f_s"],
                   function="reciprocal")
    r = b.add(inv, [s_q], name, (1,))
    r_b = b.add(ir.Dense(kernel=_ones((1, n))), [r], name, shape)
    y = b.add(ir.Multiply(), [e, r_b], name, shape)
    return _quantize(b, name, y, 0, 1, layer.out_f, "RND")
