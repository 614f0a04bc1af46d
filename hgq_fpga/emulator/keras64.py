"""A float64 twin of a Keras model, for exact comparisons with the firmware.

Keras computes in float32 by default; a fixed-point value with more than 24
significant bits (a wide accumulator, or an input far outside the calibrated
range before it wraps) is not exact there. The float64 twin holds every
value up to 53 bits exactly, so it can be compared bit for bit, on every
backend: the quantized layers keep float64 float64 where Keras would narrow it
(:mod:`hgq_fpga.compat.ops64`), and on JAX, whose arrays are 32-bit unless
``jax_enable_x64`` is set, :func:`float64_outputs` builds and runs the twin with
64-bit types switched on (:func:`wide_types`).

Example:
    >>> import numpy as np, keras
    >>> from hgq_fpga.layers import QActivation
    >>> model = keras.Sequential([keras.Input((1,)), QActivation("linear", input_quantizer={"f0": 24})])
    >>> x = np.array([[1.0 + 2.0**-24]])  # (float32: 1.0)
    >>> float(float64_outputs(model, x)[0, 0]) == 1.0 + 2.0**-24
    True
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras
import numpy as np

__all__ = ["as_float64", "float64_outputs", "wide_types"]


def _to_float64(obj: Any) -> Any:
    if isinstance(obj, dict):
        if obj.get("class_name") == "DTypePolicy" and isinstance(obj.get("config"), dict):
            return {**obj, "config": {**obj["config"], "name": "float64"}}
        return {k: ("float64" if k == "dtype" and isinstance(v, str) else _to_float64(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_float64(v) for v in obj]
    return obj


@contextlib.contextmanager
def wide_types() -> Iterator[None]:
    """64-bit types on: JAX's ``jax_enable_x64`` for the block (a no-op on TensorFlow and PyTorch)."""
    if keras.backend.backend() != "jax":
        yield
        return
    import jax

    with jax.enable_x64(True):
        yield


def float64_outputs(model: keras.Model, x: Any) -> Any:
    """The outputs of ``model``'s float64 twin (:func:`as_float64`) on ``x`` (an array or a list of
    them, taken as float64), as float64 numpy arrays (a list for several outputs), on every backend."""
    xs = [np.asarray(a, np.float64) for a in x] if isinstance(x, (list, tuple)) else np.asarray(x, np.float64)
    xs = xs[0] if isinstance(xs, list) and len(xs) == 1 else xs
    with wide_types():
        out = as_float64(model)(xs)
        if isinstance(out, (list, tuple)):
            return [np.asarray(keras.ops.convert_to_numpy(o), np.float64) for o in out]
        return np.asarray(keras.ops.convert_to_numpy(out), np.float64)


def as_float64(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose every layer and quantizer computes in float64.

    Weights, bit-widths and calibration are copied exactly. On JAX build and call it inside
    :func:`wide_types` (or with ``jax_enable_x64`` set): :func:`float64_outputs` does both.
    """
    config = _to_float64(keras.saving.serialize_keras_object(model))
    clone = keras.saving.deserialize_keras_object(config)
    clone.set_weights(model.get_weights())
    return clone
