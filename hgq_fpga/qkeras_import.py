"""Import QKeras models: :func:`from_qkeras` rebuilds a QKeras (``qkeras-v3``)
model from hgq_fpga layers whose outputs are bit-identical to QKeras's.

QKeras gives one fixed-point format per tensor (``quantized_bits(8, 2)``);
hgq_fpga gives every element its own trainable fractional bits. The import
starts every element at the bits QKeras implies, copies the QKeras-quantized
weights, and maps each QKeras quantizer to an ``ap_fixed`` format with the same
rounding and saturation, so the converted model computes exactly what the QKeras
model computes. It can then be estimated, emulated, verified, converted to
hls4ml or trained further with per-element bits like any hgq_fpga model.

What cannot be represented exactly is refused with
:class:`UnsupportedQKerasModel`, naming the layer, the quantizer and what to do;
so is a QKeras model that computes in a half float (built under
``mixed_float16``). The imported model computes in float32, whatever the
global dtype policy.

How :func:`from_qkeras` maps a model:

Every QKeras ``QDense``/``QConv`` becomes the hgq_fpga layer of the same
name. Weights are the QKeras-*quantized* weights, and each weight element
starts with the fractional bits the QKeras quantizer gives it. Each
activation quantizer becomes an ``ap_fixed`` format with the same rounding
and saturation and fixed ``k`` and ``i``; it is placed as the
``input_quantizer`` of the next quantized hgq_fpga layer (also across
``Flatten``/``Reshape``/``Dropout``), so the firmware quantizes once, as
QKeras does (hls4ml also mishandles two quantizers in a row). Where no
quantized layer follows (the model output, a plain relu), it becomes a
``QActivation`` of the QKeras layer's name (``"<layer>_activation"`` for
a layer's own ``activation=``). Inputs of hgq_fpga layers that QKeras
does not quantize (a ``QDense`` right after a ``QDense``, a pooling after a
plain relu) get a ``TRN``/``WRAP`` format that holds every value the
previous layer can produce (exact interval arithmetic), so they change
nothing. The walk follows the model's own call nodes, so functional models
(branches, ``Add``, ``Concatenate``), models loaded from files and models
sharing layers with others convert as they are.

Mapping (``k``: sign bit, ``i``: integer bits without sign, ``f``:
fractional bits, ``ap_fixed<k+i+f, k+i>``):

==========================================  =========================================================
QKeras                                      hgq_fpga
==========================================  =========================================================
``quantized_bits(bits, integer,``           ``k = keep_negative``, ``f = bits - integer - k``,
``keep_negative, alpha=None|1)``            ``i = integer``; activations: ``RND_CONV`` + ``SAT``
                                            (``SAT_SYM`` if ``symmetric``); weights: these ``f``
                                            and ``i`` with ``RND_CONV``/``SAT``
... ``alpha=2**s`` (a fixed power of two)   ``f = bits - integer - k - s``, ``i = integer + s``
... kernel with ``alpha=None`` or           QKeras turns ``alpha=None`` on a kernel into
``"auto_po2"``                              ``"auto_po2"`` (symmetric, per-channel power-of-two
                                            scale ``c``): ``f = bits - 1 - integer - log2(c)``
                                            per channel, ``i`` from the values (``i=None``)
``quantized_relu(bits, integer)``           ``QActivation("relu")`` with ``k = 0``,
                                            ``i = integer``, ``f = bits - integer``, ``RND_CONV``
                                            + ``SAT`` (negative values saturate to 0)
``quantized_po2(bits)`` (weights only)      each weight ``+-2**e`` gets its own ``f = -e``
``"relu"``, ``"linear"``, ``ReLU()``        plain ``Activation`` (exact)
``QDense``, ``QConv1D``, ``QConv2D``        ``QDense``, ``QConv1D``, ``QConv2D``
``QDenseBatchnorm``, ``QConv2DBatchnorm``   ``QDense``, ``QConv2D`` with the folded weights QKeras
                                            uses at inference: ``q(W * g / sqrt(v + eps))`` and
                                            ``q(g * (b - m) / sqrt(v + eps) + beta)``, the same
                                            float32 steps
``Add``, ``Concatenate``                    ``QAdd``, ``QConcatenate`` (one input quantizer if every
                                            input has the same held-back one, else exact formats)
float ``BatchNormalization``               ``QBatchNormalization`` with Keras's float32 scale and
                                            offset held exactly, where the float32 rounding cannot
                                            show (:mod:`hgq_fpga._qkeras_float32`)
``Activation("softmax")``, ``Softmax``      ``QSoftmax`` (tables, 12-bit input): not bit-identical
                                            to QKeras's float softmax
``Flatten``, ``Reshape``, ``Dropout``       the same Keras layer
``MaxPooling1D/2D``, ``AveragePooling1D``   ``QMaxPooling1D/2D``, ``QAveragePooling1D/2D``
``/2D`` (power-of-two window, ``valid``)    (exact: a power-of-two division is a shift)
==========================================  =========================================================

QKeras rounds with ``round`` (ties to even): hgq_fpga's ``RND_CONV``. Where
no rounding can happen -- the input's grid is no finer than the quantizer's,
e.g. a ``quantized_relu`` with at least as many fractional bits as the
preceding layer's products -- the quantizer uses ``TRN`` instead, which is
free in hardware and gives the same values. :func:`hgq_fpga.to_hls4ml` writes
``RND_CONV`` quantizers as they are (hls4ml's quantizer layer casts with any
``ap_fixed`` mode, and hgq_fpga checks every type hls4ml derives). The first
quantizer on the model input always rounds float data, hence ``RND_CONV``,
unless ``inputs_on_grid``.

Refused with :class:`UnsupportedQKerasModel` (the message names the layer,
the quantizer and the fix): ``alpha="auto"`` or any scale that is not a
power of two; a data-dependent scale on an activation; stochastic
rounding; ``qnoise_factor < 1``; ``quantized_relu`` with ``use_sigmoid`` or
``negative_slope``; ``quantized_tanh``, ``quantized_sigmoid``,
``quantized_po2`` activations, binary/ternary and every other quantizer;
a ``QDense``/``QConv`` without kernel or bias quantizer, or whose input is
not quantized (put a ``QActivation(quantized_bits(...))`` after the input);
a float ``BatchNormalization`` whose float32 rounding would change what the
next layer reads (use the ``...Batchnorm`` layers), layers with several inputs other than ``Add`` and
``Concatenate``, nested models and any other layer; a layer whose sums
exceed 2**24 steps of its grid (QKeras's float32 would round them).

Bit-exactness: outputs are equal to QKeras's (``np.array_equal``) on every
input, except after a softmax (tables here, float32 in QKeras), with one
QKeras artifact: ``quantized_bits`` returns
``x + (q(x) - x)`` in float32, which for ``|x|`` beyond about
``2**(23 - f)`` is no longer ``q(x)`` (QKeras then gives values off its own
grid, e.g. ``4.0`` for ``quantized_bits(8, 2, alpha=1)`` at ``x = 1e6``);
the converted model saturates exactly as ``ap_fixed`` does.
``quantized_relu`` clips before that step and has no such artifact.

QKeras is needed only when this module's function is called (``pip install
--no-deps qkeras-v3==1.2.1 networkx``; see the project's Makefile). The
TensorFlow backend is required by QKeras.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ._qkeras_formats import UnsupportedQKerasModel, _fail
from ._qkeras_layers import _Converter, _Value

__all__ = ["UnsupportedQKerasModel", "from_qkeras"]


def _require_qkeras() -> None:
    """Raise unless QKeras is installed and Keras runs on the TensorFlow backend."""
    try:
        import qkeras  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "from_qkeras needs QKeras for Keras 3: pip install --no-deps qkeras-v3==1.2.1 networkx"
        ) from err
    if keras.backend.backend() != "tensorflow":
        raise UnsupportedQKerasModel(
            f"from_qkeras: QKeras models run on the TensorFlow backend. Received: "
            f"KERAS_BACKEND={keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow."
        )


def _check_model(model: keras.Model) -> None:
    """Refuse what is not a built model, or one that computes in a half float (the rebuilt layers compute
    in float32 whatever the global policy: QKeras itself fails in float64)."""
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise UnsupportedQKerasModel(
            f"from_qkeras: expected a built Keras model with a keras.Input. Received: {model!r}"
        )
    from .compat.keras import call_nodes

    for layer, _, _ in call_nodes(model):
        policy = None if isinstance(layer, keras.layers.InputLayer) else getattr(layer, "dtype_policy", None)
        compute = keras.backend.standardize_dtype(policy.compute_dtype) if policy is not None else None
        if compute in ("float16", "bfloat16"):
            raise _fail(layer.name, f"it computes in {compute} (dtype policy {policy.name!r}), which rounds "
                        "QKeras's fixed-point values to 11 (float16) or 8 (bfloat16) significant bits: no firmware "
                        "computes that", compute, "Build or load the QKeras model under the float32 policy "
                        "(keras.config.set_dtype_policy('float32') first); the imported model computes in float32 "
                        "whatever the global policy.")


def _convert_node(conv: _Converter, layer: Any, srcs: list[_Value]) -> _Value:
    """The hgq_fpga value of one call of a QKeras ``layer`` on ``srcs``."""
    qk = conv.qk
    if isinstance(layer, keras.Model):
        raise _fail(layer.name, "nested models are not supported", type(layer).__name__,
                    "Flatten the model into one Sequential or functional model.")
    if isinstance(layer, (keras.layers.Add, keras.layers.Concatenate)):
        return conv.merge(layer, srcs)
    if len(srcs) != 1:
        raise _fail(layer.name, "this layer takes several inputs; of those only Add and Concatenate "
                    "convert", type(layer).__name__, "Use Add or Concatenate.")
    if isinstance(layer, qk.QActivation):
        return conv.activation(layer.name, layer.activation, srcs[0])
    weighted = (qk.QDense, qk.QConv1D, qk.QConv2D, qk.QDenseBatchnorm, qk.QConv2DBatchnorm)
    if type(layer) in weighted:
        return conv.weighted(layer, srcs[0])
    return conv.plain(layer, srcs[0])


def _set_batchnorms(conv: _Converter) -> None:
    """Imported batch normalizations: scale ``gamma = inv`` and offset ``beta = res`` exactly (mean 0, and
    a variance whose sum with epsilon is 1), each held at its own fractional bits."""
    from ._qkeras_layers import BN_EPSILON

    for layer, inv, res, f_inv, f_res in conv.batchnorms:
        layer.gamma.assign(inv)
        layer.beta.assign(res)
        layer.moving_mean.assign(np.zeros_like(inv))
        layer.moving_variance.assign(np.full_like(inv, 1.0 - BN_EPSILON))
        layer.kernel_quantizer.set_f(f_inv)
        layer.bias_quantizer.set_f(f_res)


def _rebuild(model: keras.Model, inputs_on_grid: bool) -> keras.Model:
    """The hgq_fpga model of a checked QKeras model, with its weights and fractional bits set, calibrated.

    Follows the model's own call nodes (:func:`hgq_fpga.compat.keras.call_nodes`), so a model
    loaded from a file, or sharing layers with another model, converts as it is.
    """
    from .calibration import iter_quantizers
    from .compat.keras import call_nodes, functional_of
    from .quantizers import CALIBRATED, ActivationQuantizer

    _check_model(model)
    conv = _Converter(inputs_on_grid)
    values: dict[int, _Value] = {}
    before = keras.config.dtype_policy()
    # the global policy, put back: the new layers take it (Keras keeps it per thread, so
    # another thread building layers meanwhile keeps its own)
    keras.config.set_dtype_policy("float32")
    try:
        for layer, ins, outs in call_nodes(model):
            if isinstance(layer, keras.layers.InputLayer):
                shape = tuple(outs[0].shape[1:])
                values[id(outs[0])] = _Value(keras.Input(shape=shape, name=layer.name, dtype="float32"), None)
                continue
            values[id(outs[0])] = _convert_node(conv, layer, [values[id(t)] for t in ins])
        functional = functional_of(model)
        inputs = [values[id(t)].x for t in functional.inputs]
        outputs = [conv.flush(values[id(t)]) for t in functional.outputs]
    finally:
        keras.config.set_dtype_policy(before)
    if any(any(o is i for i in inputs) for o in outputs):
        raise UnsupportedQKerasModel(f"from_qkeras: {model.name!r} has an output that no layer computes.")
    new_model = keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0],
                            name=f"{model.name}_hgq")
    for quantizer, var, values_, f in conv.weights:
        var.assign(np.asarray(values_, var.dtype))
        quantizer.set_f(f.astype(np.float32))
    _set_batchnorms(conv)
    for _, q in iter_quantizers(new_model):
        if isinstance(q, ActivationQuantizer):  # k and i are fixed: nothing to learn from data
            q.state.assign(np.float32(CALIBRATED))
    for layer in new_model.layers:
        if getattr(layer, "uses_table", False):  # table layers (softmax): built from the fixed input format
            layer.update_table()
    return new_model


def from_qkeras(model: keras.Model, calibration_data: Any = None, *, inputs_on_grid: bool = False) -> keras.Model:
    """Rebuild a QKeras model from hgq_fpga layers, bit-identical to QKeras.

    Every QKeras ``QDense``/``QConv`` becomes the hgq_fpga layer of the same name, with the
    QKeras-*quantized* weights; each activation quantizer becomes an ``ap_fixed`` format with the same
    rounding and saturation. The mapping table, the rounding, what is refused and the bit-exactness
    guarantee are documented in :mod:`hgq_fpga.qkeras_import`.

    Args:
        model: a built QKeras model (``qkeras-v3``, Keras 3, TensorFlow backend): Sequential or
            functional (branches, ``Add``, ``Concatenate``, several inputs or outputs), as built or
            as loaded from a file.
        calibration_data: optional samples. Not needed: every activation format is fixed by its
            QKeras quantizer, so the model comes back calibrated and ready for :func:`hgq_fpga.verify`,
            :func:`hgq_fpga.estimate` and :func:`hgq_fpga.to_hls4ml`. When given,
            :func:`hgq_fpga.calibrate` is run on it, which records the ranges seen (shown by
            :func:`hgq_fpga.bit_summary` and calibration reports) without changing any format.
        inputs_on_grid: promise that the model inputs are already multiples of ``2**-f`` of the
            first quantizer (the firmware receives fixed-point words). That quantizer then uses ``TRN``
            instead of ``RND_CONV``: the same values on such inputs, with no rounding logic.
            Off-grid inputs are then truncated, not rounded.

    Returns:
        a calibrated Keras model of hgq_fpga layers, named ``"<name>_hgq"``.

    Raises:
        UnsupportedQKerasModel: (a ``ValueError``) for anything not exactly representable.
        ImportError: if ``qkeras`` is not installed.

    Example::

        from qkeras import QActivation, QDense, quantized_bits, quantized_relu
        import hgq_fpga

        x = keras.Input((16,))
        h = QActivation(quantized_bits(8, 2, alpha=1))(x)
        h = QDense(32, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                   bias_quantizer=quantized_bits(8, 2, alpha=1))(h)
        h = QActivation(quantized_relu(8, 3))(h)
        qmodel = keras.Model(x, QDense(5, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                                       bias_quantizer=quantized_bits(8, 2, alpha=1))(h))

        model = hgq_fpga.from_qkeras(qmodel)
        np.testing.assert_array_equal(model.predict(data), qmodel.predict(data))
        print(hgq_fpga.estimate(model))
    """
    _require_qkeras()
    new_model = _rebuild(model, inputs_on_grid)
    if calibration_data is not None:
        from .calibration import calibrate

        calibrate(new_model, calibration_data)
    return new_model
