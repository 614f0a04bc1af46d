"""Ready-made quantized models, named in sweep configurations (``model: mlp``).

Each builder returns an uncompiled Keras model of hgq_fpga layers with
per-element trainable bits; :func:`compile_classifier` compiles it the way the
examples do (Adam, sparse categorical cross-entropy on logits, accuracy).

Example:
    >>> m = mlp(widths=(16, 10), input_shape=(64,))    # doctest: +SKIP
    >>> [layer.name for layer in m.layers]              # doctest: +SKIP
    ['dense_0', 'logits']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["BUILDERS", "cnn", "compile_classifier", "mlp"]


def _check_widths(widths: Sequence[int]) -> list[int]:
    widths = [int(w) for w in widths]
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be one or more positive layer widths; received widths={list(widths)}")
    return widths


def mlp(
    widths: Sequence[int] = (64, 32, 32, 10),
    *,
    input_shape: Sequence[int] = (64,),
    activation: str = "relu",
    weight_f0: float = 6.0,
    input_f0: float = 6.0,
    name: str = "mlp",
) -> Any:
    """A multilayer perceptron ``input -> widths[0] -> ... -> widths[-1]`` (logits, no activation).

    Args:
        widths: the ``QDense`` widths; the last is the number of classes.
        input_shape: the shape of one sample (default: the digits' 64 pixels).
        activation: of every layer but the last.
        weight_f0, input_f0: initial fractional bits of the kernels and the input quantizers.
        name: the model's name.
    """
    import keras

    from .layers import QDense

    widths = _check_widths(widths)
    kw: dict[str, Any] = {"kernel_quantizer": {"f0": weight_f0}, "input_quantizer": {"f0": input_f0}}
    layers = [QDense(w, activation=activation, name=f"dense_{i}", **kw) for i, w in enumerate(widths[:-1])]
    layers.append(QDense(widths[-1], name="logits", **kw))
    return keras.Sequential([keras.Input(tuple(input_shape)), *layers], name=name)


def cnn(
    filters: int = 8,
    dense: int = 16,
    classes: int = 10,
    *,
    input_shape: Sequence[int] = (8, 8, 1),
    kernel_size: int = 3,
    name: str = "cnn",
) -> Any:
    """``Conv2D(filters, kernel_size, relu) -> MaxPool 2x2 -> Flatten -> Dense(dense, relu) -> Dense(classes)``.

    The default input is the digits as 8x8x1 images (``hgq_fpga.datasets.digits(image=True)``).
    """
    import keras

    from .layers import QConv2D, QDense, QMaxPooling2D

    if min(int(filters), int(dense), int(classes)) < 1:
        raise ValueError(f"filters, dense and classes must be positive; received filters={filters}, "
                         f"dense={dense}, classes={classes}")
    return keras.Sequential([
        keras.Input(tuple(input_shape)),
        QConv2D(int(filters), int(kernel_size), activation="relu", name="conv"),
        QMaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flatten"),
        QDense(int(dense), activation="relu", name="dense"),
        QDense(int(classes), name="logits"),
    ], name=name)


def compile_classifier(model: Any, learning_rate: float = 3e-3) -> Any:
    """Compile ``model`` (logits out) with Adam, sparse categorical cross-entropy and accuracy."""
    import keras

    model.compile(keras.optimizers.Adam(learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


#: the builders a sweep configuration can name
BUILDERS = {"mlp": mlp, "cnn": cnn}
