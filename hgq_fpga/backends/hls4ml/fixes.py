"""A correction to hls4ml 1.3.0's bit-exact type flow, applied only while we convert.

**1. Narrowing of truncating quantizers.**

hls4ml's ``BitExact`` pass narrows each ``FixedPointQuantizer`` to the range
its input can reach (``hls4ml/model/optimizer/passes/bit_exact.py``, its typing
rule for ``FixedPointQuantizer``; :mod:`hgq_fpga.compat.hls4ml` names the hook). For a truncating (``TRN``)
quantizer on a signed input it allows one integer bit more than the input,
``i' = min(i, i_in) + 1``, for the values that floor downwards. That is not
enough when the input's whole range is smaller than the quantizer's step:

.. math:: x \\in [-2^{i_\\text{in}},\\, 2^{i_\\text{in}}),\\quad
          i_\\text{in} + f \\le -2
          \\;\\Rightarrow\\; \\lfloor x\\, 2^{f} \\rfloor 2^{-f} \\in \\{-2^{-f}, 0\\},

which needs ``i' = -f > i_in + 1``. hls4ml then gives the element zero bits
and the C simulation outputs 0 where the quantizer (and ``ap_fixed``) give
``-2**-f``. Found by ``tests/backends/hls4ml/test_hls4ml.py`` on a randomly
initialised CNN (1 of 4 initialisations), reproduced in
``tests/backends/hls4ml/test_reliability.py``.

:func:`install_corrections` wraps that rule, for hgq_fpga's own quantizers
only: it runs hls4ml's rule, then raises ``i`` (and restores ``k`` and ``f``)
of exactly those elements to what the floor needs.

**2. Not corrected: a chain of two quantizers around such a range.** When
the quantizer above reads the output of another quantizer directly (or
through a reshape), hls4ml fuses both into one type and its backward
narrowing gives that type a negative width; the C simulation is then wrong.
The converter refuses that case with :class:`UnsupportedForHls4ml`
(:func:`hgq_fpga.backends.hls4ml.layers.graph_to_layer_list`).

**3. Narrowing of symmetric saturation (found by our own type check).** A
``SAT_SYM`` quantizer saturates at ``-max`` instead of ``-2**(I-1)``, so its
lower bound depends on its width: ``ap_fixed<3,1,AP_SAT_SYM>`` maps ``-1`` to
``-0.75``. hls4ml narrows the quantizer to the range its input reaches; for an
input that is the constant ``-1`` it writes ``ap_fixed<1,1,AP_SAT_SYM>``,
where width 1 keeps ``-1``. The corrected rule does not narrow ``SAT_SYM``
quantizers (their elements keep the model's format).

**4. Inputs read with a sign-dependent rounding (found by our own type check).**
hls4ml's ``FixInputPrecision`` gives a network input read by quantizers with
a rounding mode other than ``TRN``/``RND`` at most 24 fractional bits (a
float32 assumption). Truncating a double to 24 bits before ``TRN_ZERO`` or a
``RND_*`` mode moves values just above a tie onto it. :func:`fix_input_types`
gives such inputs :data:`DOUBLE_BITS` more fractional bits than the finest
quantizer reading them, which keeps every double's outcome (see its docstring).
It also gives one integer bit more to an input that hls4ml saturates at the
bounds of the ``SAT_ZERO`` quantizers reading it (a value saturated there is
kept, where ``SAT_ZERO`` makes it 0).

Layers that hgq_fpga did not create keep hls4ml's own rule, so other hls4ml
users in the same process are unaffected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DOUBLE_BITS", "install_corrections", "trn_floor_needs", "fix_input_types"]


def trn_floor_needs(k: np.ndarray, i: np.ndarray, f: np.ndarray, lk: np.ndarray, li: np.ndarray,
                    lf: np.ndarray) -> np.ndarray:
    """Where a TRN quantizer ``(k, i, f)`` on input ``(lk, li, lf)`` floors negatives to ``-2**-f``
    that hls4ml's ``min(i, li) + 1`` cannot hold (and the quantizer itself can)."""
    return (k == 1) & (lk == 1) & (lf > f) & (li + f <= -2) & (i >= -f)


def install_corrections() -> None:
    """Use the corrected narrowing rule for hgq_fpga's quantizers (idempotent).

    Registered once, for the layers hgq_fpga creates only (see
    :func:`hgq_fpga.compat.hls4ml.amend_kif_rule`): nothing is swapped while a
    conversion runs, so conversions in several threads cannot interfere.
    """
    from hls4ml.model.optimizer.passes import bit_exact
    from hls4ml.model.optimizer.passes.hgq_proxy_model import FixedPointQuantizer

    from ...compat.hls4ml import amend_kif_rule

    def amend(original: Any) -> Any:
        def corrected(layer: Any) -> Any:
            if "_hgq_fpga_mask_kbi" not in layer.attributes:  # hls4ml overwrites mask_kbi with the narrowed one
                layer.attributes["_hgq_fpga_mask_kbi"] = tuple(np.array(v) for v in layer.mask_kbi)
            layer.mask_kbi = tuple(np.array(v) for v in layer.attributes["_hgq_fpga_mask_kbi"])
            k, i, f = (np.array(v) for v in original(layer))
            k0, b0, i0 = (np.broadcast_to(v[0], k.shape) for v in layer.attributes["_hgq_fpga_mask_kbi"])
            if layer.SAT == "SAT_SYM":  # point 3: no narrowing, the symmetric bound depends on the width
                k, i, f = (np.where(b0 > 0, v, 0).astype(np.int16) for v in (k0, i0 - k0, b0 - i0))
                _set_mask(layer, k, i, f)
                return k, i, f
            if layer.RND != "TRN":
                return k, i, f
            qk, qi, qf = k0, i0 - k0, b0 - i0
            lk, li, lf = (np.broadcast_to(v, k.shape)
                          for v in bit_exact.produce_kif(bit_exact.get_input_layers(layer)[0]))
            fix = trn_floor_needs(qk, qi, qf, lk, li, lf) & (b0 > 0) & ((k != 1) | (i < -qf))
            if not fix.any():
                return k, i, f
            k = np.where(fix, 1, k).astype(np.int16)
            i = np.where(fix, -qf, i).astype(np.int16)
            f = np.where(fix, qf, f).astype(np.int16)
            _set_mask(layer, k, i, f)
            return k, i, f

        return corrected

    amend_kif_rule(FixedPointQuantizer, amend)


def _set_mask(layer: Any, k: np.ndarray, i: np.ndarray, f: np.ndarray) -> None:
    """``layer.mask_kbi`` from per-element ``k, i, f``, reduced over broadcast axes as hls4ml does."""
    kk, bb, ii = k, k + i + f, k + i
    for ax in np.where(np.array(layer.attributes["_hgq_fpga_mask_kbi"][0].shape[1:]) == 1)[0]:
        kk, bb, ii = (np.max(v, axis=ax, keepdims=True) for v in (kk, bb, ii))
    layer.mask_kbi = (kk[None], bb[None], ii[None])


#: extra fractional bits after which truncating a double never changes a later rounding: a double
#: ``|x| >= 2**-(f+1)`` has no bit below ``2**-(f+53)``; a smaller one stays above ``-2**-(f+1)``
DOUBLE_BITS = 54


def fix_input_types(hls_model: Any) -> None:
    """Give each network input read by a quantizer layer with a rounding other than TRN/RND enough
    fractional bits (:data:`DOUBLE_BITS` beyond the finest reader) that no double's outcome changes,
    and one integer bit more where hls4ml saturates it at the bounds of a ``SAT_ZERO`` reader."""
    for name in hls_model.inputs:
        layer = hls_model.graph[name]
        readers = [r for r in hls_model.graph.values() if name in r.inputs and hasattr(r, "mask_kbi")
                   and (str(r.RND) not in ("TRN", "RND") or str(r.SAT) == "SAT_ZERO")]
        if not readers:
            continue
        sign_dependent = [r for r in readers if str(r.RND) not in ("TRN", "RND")]
        f = max((int(np.max(np.asarray(r.mask_kbi[1]) - np.asarray(r.mask_kbi[2]))) + DOUBLE_BITS
                 for r in sign_dependent), default=0)
        var = layer.get_output_variable()
        old = var.type.precision
        if any(str(r.SAT) == "SAT_ZERO" for r in readers) and str(old.saturation_mode) in ("SAT", "SAT_SYM"):
            # hls4ml saturates such an input at the quantizer's own bounds, where SAT_ZERO would give 0:
            # one integer bit more keeps what saturates outside the quantizer's range
            old.width, old.integer = old.width + 1, old.integer + 1
        if old.width - old.integer < f:
            old.width = old.integer + f  # in place: the backend's precision object (it writes the C++ type)
        hls_model.config.layer_name_precision[name] = str(old)
