"""Keras 3 quantizers with per-element trainable fractional bits.

``get()`` turns ``None``, a dict of options, a serialized config or an
instance into a quantizer, like ``keras.activations.get``.
"""

from __future__ import annotations

from typing import Any

import keras

from .activation import CALIBRATED, FRESH, TRAINED, ActivationQuantizer
from .base import BitQuantizerBase, ElementClip, bits_with_gradient, quantize_with_gradient, scale_gradient
from .granularity import Granularity, granular_shape
from .weight import WeightQuantizer

__all__ = [
    "ActivationQuantizer",
    "BitQuantizerBase",
    "CALIBRATED",
    "ElementClip",
    "FRESH",
    "Granularity",
    "TRAINED",
    "WeightQuantizer",
    "get",
    "granular_shape",
    "bits_with_gradient",
    "quantize_with_gradient",
    "scale_gradient",
]


def get(spec: Any, kind: type[BitQuantizerBase], **defaults: Any) -> BitQuantizerBase:
    """Build a quantizer of class ``kind`` from ``spec``.

    Args:
        spec: ``None`` (defaults), a dict of constructor options
            (``{"f0": 4, "granularity": "channel"}``), a serialized Keras
            config (``{"class_name": ..., "config": ...}``) or an instance.
        kind: :class:`WeightQuantizer` or :class:`ActivationQuantizer`.
        **defaults: options used where ``spec`` gives none.

    Example:
        >>> get({"f0": 3}, WeightQuantizer).f0
        3.0
    """
    if isinstance(spec, BitQuantizerBase):
        if not isinstance(spec, kind):
            raise TypeError(
                f"expected a {kind.__name__}. Received: {type(spec).__name__}"
            )
        return spec
    if spec is None:
        return kind(**defaults)
    if isinstance(spec, dict):
        if "class_name" in spec and "config" in spec:
            obj = keras.saving.deserialize_keras_object(spec)
            return get(obj, kind)
        return kind(**{**defaults, **spec})
    raise TypeError(
        f"a quantizer spec must be None, a dict of options or a {kind.__name__}. "
        f"Received: {spec!r}"
    )
