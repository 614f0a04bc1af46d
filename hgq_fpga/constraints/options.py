"""Checks of :class:`~hgq_fpga.constraints.ResourceBudget`'s arguments, naming the argument and the value."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["METHODS", "check_arguments", "check_latency", "estimate_kwargs", "rtl_settings"]

#: the training rules: a step sized by the excess (:class:`~hgq_fpga.constraints.step.BudgetStep`;
#: the default), the cost gradient while over the budget, or a Lagrange multiplier
METHODS = ("step", "constraint", "primal_dual")


def rtl_settings(backend: str, strategy: str, clock_period: float, latency_cutoff: float | None,
                 prefer: str = "latency") -> dict | None:
    """``clock_period``, ``latency_cutoff`` and ``prefer`` for ``backend="rtl"`` (None for hls4ml);
    bad values refused."""
    from ..resources.shared import check_prefer

    if backend not in ("hls4ml", "rtl"):
        raise ValueError(f"ResourceBudget: backend must be 'hls4ml' or 'rtl'. Received: backend={backend!r}")
    check_prefer(prefer, "ResourceBudget", backend)
    if backend == "hls4ml":
        return None
    if strategy != "Latency":
        raise ValueError(f"ResourceBudget: backend='rtl' writes its own adder trees; strategy={strategy!r} is an "
                         "hls4ml strategy (leave strategy at 'Latency')")
    for name, v in (("clock_period", clock_period), ("latency_cutoff", latency_cutoff)):
        if v is not None and not (isinstance(v, numbers.Real) and math.isfinite(v) and v > 0) and \
                not (name == "latency_cutoff" and v == math.inf):
            raise ValueError(f"ResourceBudget: {name} must be a positive number of ns. Received: {name}={v!r}")
    return {"clock_period": float(clock_period), "latency_cutoff": latency_cutoff, "prefer": prefer}


def estimate_kwargs(strategy: str, part: str, cost_model: Any, rtl: bool) -> dict[str, Any]:
    """The keyword arguments of the budget's estimates (:func:`~hgq_fpga.estimate`'s): with ``rtl`` (the
    checks count the RTL project's LUTs) every product in LUTs."""
    if rtl:
        import dataclasses

        from ..resources.estimate import rtl_cost_model

        cost_model = rtl_cost_model(part) if cost_model is None else dataclasses.replace(cost_model,
                                                                                            dsp_min_bits=1 << 30)
    return {"strategy": strategy, "part": part, "cost_model": cost_model}


def check_latency(latency: Any, backend: str) -> int | None:
    """``latency=``: a whole number of clock cycles >= 1, of the RTL project only."""
    if latency is None:
        return None
    if not (isinstance(latency, numbers.Integral) and not isinstance(latency, bool) and latency >= 1):
        raise ValueError(f"ResourceBudget: latency counts clock cycles, a whole number >= 1. "
                         f"Received: latency={latency!r}")
    if backend != "rtl":
        raise ValueError(f"ResourceBudget: latency= bounds the clock cycles of the to_rtl project; give "
                         f"backend='rtl' (and clock_period=). Received: latency={latency}, backend={backend!r}")
    return int(latency)


def check_arguments(lut: Any, dsp: Any, method: str, mode: str, check_every: Any, latency: Any = None) -> None:
    """Refuse bad :class:`ResourceBudget` arguments, naming the argument and the value received."""
    if lut is None and dsp is None and latency is None:
        raise ValueError("ResourceBudget: give lut=, dsp= (or both), or latency= with backend='rtl'. "
                         "Received: lut=None, dsp=None")
    for name, v in (("lut", lut), ("dsp", dsp)):  # numpy scalars are numbers too
        if v is not None and not (isinstance(v, numbers.Real) and not isinstance(v, bool)
                                  and math.isfinite(v) and v >= 0):
            raise ValueError(f"ResourceBudget: {name} must be a number >= 0. Received: {name}={v!r}")
    if dsp is not None and float(dsp) != int(dsp):
        raise ValueError(f"ResourceBudget: dsp counts whole DSP slices. Received: dsp={dsp!r}")
    if method not in METHODS:
        raise ValueError(f"ResourceBudget: method must be one of {METHODS}. Received: method={method!r}")
    if mode not in ("max", "min"):
        raise ValueError(f"ResourceBudget: mode must be 'max' or 'min'. Received: mode={mode!r}")
    if check_every != "auto" and not (isinstance(check_every, numbers.Integral) and not isinstance(check_every, bool)
                                      and check_every >= 1):
        raise ValueError(f"ResourceBudget: check_every must be a whole number of epochs >= 1, or 'auto'. "
                         f"Received: check_every={check_every!r}")
