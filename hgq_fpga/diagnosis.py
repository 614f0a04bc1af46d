"""What is wrong with a model that cannot become firmware, in the user's terms.

:func:`firmware_problem` looks at a model before anything is computed from it
and names the layers that have no fixed-point firmware (a plain Keras ``Dense``,
a QKeras layer), with what to use instead; or says that the model has no
hgq_fpga layers at all. It returns None for a model the flow can take.

Example::

    >>> import keras
    >>> plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    >>> print(firmware_problem(plain))                                    # doctest: +ELLIPSIS
    model 'sequential...' is a plain Keras model (layers: fc (Dense)): it has no hgq_fpga layers, so ...
"""

from __future__ import annotations

from typing import Any

__all__ = ["HGQ_EQUIVALENT", "firmware_problem", "require_firmware_model"]

#: plain Keras layer class -> the hgq_fpga layer to build instead
HGQ_EQUIVALENT = {
    "Dense": "QDense", "EinsumDense": "QDense", "Conv1D": "QConv1D", "Conv2D": "QConv2D",
    "BatchNormalization": "QBatchNormalization", "Add": "QAdd", "Concatenate": "QConcatenate",
    "MaxPooling1D": "QMaxPooling1D", "MaxPooling2D": "QMaxPooling2D",
    "AveragePooling1D": "QAveragePooling1D", "AveragePooling2D": "QAveragePooling2D",
    "Softmax": "QSoftmax", "Activation": "QActivation",
}


def _advice(layer: Any) -> str:
    """``name (Class)``, with the hgq_fpga layer (or the QKeras import) to use instead."""
    cls = type(layer).__name__
    if type(layer).__module__.split(".")[0] == "qkeras":
        return f"{layer.name} ({cls}, QKeras: import the model with hgq_fpga.from_qkeras)"
    if cls in HGQ_EQUIVALENT:
        return f"{layer.name} ({cls}: use hgq_fpga.layers.{HGQ_EQUIVALENT[cls]})"
    return f"{layer.name} ({cls})"


def firmware_problem(model: Any) -> str | None:
    """Why ``model`` cannot be estimated, converted or emulated (None if it can).

    Checks only the kinds of layers (not calibration, shapes or values): no
    hgq_fpga layer at all, or some layers the firmware flow does not express.
    """
    import keras

    from .frontend.keras import LAYERS, SUPPORTED_LAYERS
    from .layers.base import QuantizedLayerMixin

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not any(isinstance(layer, QuantizedLayerMixin) for layer in layers):
        shown = ", ".join(f"{layer.name} ({type(layer).__name__})" for layer in layers[:6])
        more = f", ... ({len(layers)} layers)" if len(layers) > 6 else ""
        qkeras = any(type(layer).__module__.split(".")[0] == "qkeras" for layer in layers)
        todo = ("it is a QKeras model: import it with hgq_fpga.from_qkeras(model) and save the result"
                if qkeras else "build it with hgq_fpga.layers (QDense, QConv2D, QActivation, ...), train it and "
                               "calibrate it (hgq_fpga.calibrate), or import a QKeras model with hgq_fpga.from_qkeras")
        return (f"model {model.name!r} is a plain Keras model (layers: {shown}{more}): it has no hgq_fpga "
                f"layers, so it has no fixed-point formats to build firmware from; {todo}")
    bad = [layer for layer in layers if not LAYERS.supports(type(layer)) and not isinstance(layer, keras.Model)]
    if bad:
        return (f"model {model.name!r} mixes hgq_fpga layers with layers that have no fixed-point firmware: "
                f"{'; '.join(_advice(layer) for layer in bad)}. Supported layers: {', '.join(SUPPORTED_LAYERS)}")
    return None


def require_firmware_model(model: Any, where: str) -> None:
    """Raise :class:`~hgq_fpga.frontend.keras.UnsupportedLayerError` (a ``ValueError``),
    ``"<where>: <problem>"``, when :func:`firmware_problem` finds one."""
    from .frontend.keras import UnsupportedLayerError

    problem = firmware_problem(model)
    if problem is not None:
        raise UnsupportedLayerError(f"{where}: {problem}")
