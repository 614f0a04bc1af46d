"""A float64 twin of a Keras model, for exact comparisons with the firmware.

Keras computes in float32 by default; a fixed-point value with more than 24
significant bits (a wide accumulator, or an input far outside the calibrated
range before it wraps) is not exact there. The float64 twin holds every
value up to 53 bits exactly, so it can be compared bit for bit.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["as_float64"]


def _to_float64(obj: Any) -> Any:
    if isinstance(obj, dict):
        if obj.get("class_name") == "DTypePolicy" and isinstance(obj.get("config"), dict):
            return {**obj, "config": {**obj["config"], "name": "float64"}}
        return {k: ("float64" if k == "dtype" and isinstance(v, str) else _to_float64(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_float64(v) for v in obj]
    return obj


def as_float64(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose every layer and quantizer computes in float64.

    Weights, bit-widths and calibration are copied exactly.
    """
    config = _to_float64(keras.saving.serialize_keras_object(model))
    clone = keras.saving.deserialize_keras_object(config)
    clone.set_weights(model.get_weights())
    return clone
