"""Limits checked before a project is written or compiled.

A model too large for the chosen implementation goes wrong late and
expensively: hls4ml's ``Latency`` strategy with ``io_parallel`` fully unrolls
the multiplication loop of every dense and convolution kernel, and Vivado HLS
stops with ``ERROR: [XFORM 203-504] Stop unrolling loop 'Product1' ...`` when
that loop has more than :data:`MAX_UNROLLED_MULTIPLICATIONS` (4,096)
iterations (the limit quoted by hls4ml's maintainers, hls4ml issue #1013),
after minutes of synthesis. The count per kernel is

.. math:: N = n_\\text{in} \\cdot n_\\text{out}
   \\quad\\text{(dense)},\\qquad
   N = \\prod_d k_d \\cdot C_\\text{in} \\cdot C_\\text{out}
   \\quad\\text{(convolution, per output pixel)}.

Zero (pruned) weights still count: the loop is unrolled before constants are
propagated. The ``distributed_arithmetic`` strategy writes explicit
shift-and-add code with no such loop, so the limit does not apply to it.

:func:`check_limits` reports every offending layer at once, with the numbers
and what to change, before anything is written.

Example:
    >>> from hgq_fpga.backends.hls4ml.limits import unrolled_multiplications
    >>> unrolled_multiplications((64, 32))   # a 64 -> 32 dense kernel
    2048
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Graph, ops as ir

__all__ = ["MAX_UNROLLED_MULTIPLICATIONS", "ModelTooLarge", "check_limits", "unrolled_multiplications"]

MAX_UNROLLED_MULTIPLICATIONS = 4096
"""Most multiplications one fully unrolled kernel may have under ``Latency``."""


class ModelTooLarge(ValueError):
    """The model exceeds what the chosen strategy can implement; the message says what to change."""


def unrolled_multiplications(kernel_shape: tuple[int, ...]) -> int:
    """Multiplications of one fully unrolled kernel: the product of its shape."""
    return int(np.prod(kernel_shape, dtype=np.int64))


def check_limits(graph: Graph, strategy: str, reuse_factor: int = 1,
                 layer_config: dict[str, dict[str, Any]] | None = None) -> None:
    """Raise :class:`ModelTooLarge` if a kernel is too large to unroll under ``strategy``.

    With reuse factor ``R`` (global, or a layer's ``ReuseFactor`` in
    ``layer_config``) the loop is unrolled ``ceil(N / R)`` times.

    Args:
        graph: the model's IR.
        strategy: ``"Latency"`` or ``"Resource"`` (checked), ``"distributed_arithmetic"`` (no limit).
        reuse_factor: the model's reuse factor.
        layer_config: per-layer settings keyed by layer name.
    """
    if strategy == "distributed_arithmetic":
        return
    offenders = []
    for node in graph.nodes:
        if not isinstance(node, ir.Linear):
            continue
        shape = node.kernel.shape
        rf = (layer_config or {}).get(node.layer or "", {}).get("ReuseFactor", reuse_factor)
        count = -(-unrolled_multiplications(shape) // rf)
        if count > MAX_UNROLLED_MULTIPLICATIONS:
            shown = f"{unrolled_multiplications(shape)} multiplications" + (f" / reuse factor {rf}" if rf > 1 else "")
            offenders.append(f"  layer {(node.layer or node.name)!r} ({node.op}, kernel {'x'.join(map(str, shape))}): "
                             f"{shown}, {count / MAX_UNROLLED_MULTIPLICATIONS:.1f}x the limit")
    if offenders:
        raise ModelTooLarge(
            f"the Latency strategy fully unrolls each kernel, and the HLS tools stop unrolling above "
            f"{MAX_UNROLLED_MULTIPLICATIONS} multiplications (Vivado HLS: 'XFORM 203-504 Stop unrolling loop'). "
            f"Too large:\n" + "\n".join(offenders) + "\n"
            "What to do: a larger reuse factor (reuse_factor=..., or per layer in layer_config), "
            "strategy='distributed_arithmetic' (shift-and-add code, no unrolled loop; "
            "needs the 'da' extra), or make those layers smaller (fewer units or filters, a smaller kernel, "
            "or pooling before them). To write the project anyway (for example for a newer HLS version "
            "that unrolls more), pass check_limits=False."
        )
