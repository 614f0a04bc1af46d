"""C++ of a per-element quantizer layer in an ``io_stream`` project.

hls4ml 1.3.0 writes its ``FixedPointQuantizer`` for ``io_parallel`` only (an
array in, an array out). In ``io_stream`` a tensor travels as stream words,
its values in row-major order (one pixel's channels per word; a quantizer
after a flatten reads the words of the tensor before the flatten and writes
one word of all values). :func:`stream_mask_function` writes the same casts
value by value from the template ``hls_templates/stream_quantizer.txt``:
value ``n`` (place ``j`` of input word ``i``, ``n = i * IN + j``) is cast to ``ap_[u]fixed<b, I, AP_<rounding>,
AP_<overflow>>`` of mask entry ``n``, or set to 0 where its width is 0,
exactly as hls4ml's io_parallel function does for element ``n``. Values with
the same format share one ``case`` of a ``switch`` over ``n`` (the most
common format is the ``default``), so a quantizer with one format is one
line of code.

Example:
    >>> import numpy as np
    >>> k, b, i = (np.array([[[1, 1], [1, 1]]]), np.array([[[3, 0], [0, 0]]]), np.array([[[1, 0], [0, 0]]]))
    >>> code = stream_mask_function("q", (2, 2), (k, b, i), "RND", "SAT")
    >>> "case 0: out_data[n % OUT] = ap_fixed<3,1,AP_RND,AP_SAT>(in_data[j]); break;" in code
    True
    >>> "default: out_data[n % OUT] = 0; break;" in code
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...templates import render

__all__ = ["install_stream_quantizers", "stream_mask_function"]


def _cast(k: int, b: int, i: int, rounding: str, overflow: str) -> str:
    if b <= 0:
        return "out_data[n % OUT] = 0;"
    return f"out_data[n % OUT] = ap_{'' if k else 'u'}fixed<{b},{i},AP_{rounding},AP_{overflow}>(in_data[j]);"


def stream_mask_function(name: str, shape: tuple[int, ...], kbi: tuple[Any, Any, Any], rounding: str,
                         overflow: str) -> str:
    """The C++ function ``name<input_t, output_t>(stream in, stream out)`` of one quantizer layer.

    Args:
        name: the hls4ml layer name (a C++ identifier hgq_fpga chose).
        shape: the tensor's shape without the batch axis.
        kbi: hls4ml's ``mask_kbi``: sign, width and integer bits, each of shape ``(1, *shape)``
            or broadcastable to it.
        rounding, overflow: the ``ap_fixed`` modes without the ``AP_`` prefix.
    """
    k, b, i = (np.broadcast_to(np.asarray(v)[0], shape).ravel() for v in kbi)
    values: dict[str, list[int]] = {}
    for n, (kn, bn, iN) in enumerate(zip(k.tolist(), b.tolist(), i.tolist())):
        values.setdefault(_cast(kn, bn, iN, rounding, overflow), []).append(n)
    ordered = sorted(values.items(), key=lambda kv: -len(kv[1]))
    cases = [" ".join(f"case {n}:" for n in members) + f" {body} break;" for body, members in ordered[1:]]
    cases.append(f"default: {ordered[0][0]} break;")
    indent = " " * 12
    return render("stream_quantizer.txt", function=name, total=str(k.size),
                  cases="\n".join(indent + c for c in cases))


def install_stream_quantizers() -> None:
    """Write hgq_fpga's quantizer layers of ``io_stream`` projects with :func:`stream_mask_function` (idempotent)."""
    from ...compat.hls4ml import stream_marked_quantizers

    def codegen(node: Any) -> str:
        return stream_mask_function(node.name, tuple(node.get_input_variable().shape), node.mask_kbi,
                                    node.RND, node.SAT)

    stream_marked_quantizers(codegen)
