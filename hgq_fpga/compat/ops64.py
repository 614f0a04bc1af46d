"""``keras.ops``, with float64 tensors kept float64 on JAX and PyTorch.

Keras (3.10-3.15) computes some operations on float64 tensors in float32 on JAX and
PyTorch: its type promotion turns every 64-bit result into a 32-bit one there
(``keras.backend.result_type("float64", "float64")`` is ``"float32"`` on both), and the
operations that cast to that result narrow their float64 inputs. Measured on Keras 3.15
(``tests/layers/test_float64.py`` checks each): ``floor`` and ``ceil`` on JAX and PyTorch,
and on PyTorch ``maximum``, ``minimum``, ``floor_divide`` and ``matmul`` as well, even of
two float64 tensors. A fixed-point value with more than 24 significant bits then moves
to another grid point: Keras's float64 twin of a model
(:mod:`hgq_fpga.emulator.keras64`, what ``verify`` compares the firmware with) differed
from the emulator in 3 of 192 outputs of a dense model at 24 fractional bits on both.

This module is ``keras.ops`` with those six replaced: for a float64 tensor on JAX or
PyTorch they call the backend's own operation (``jax.numpy.floor``, ``torch.maximum``,
...), which keeps the dtype; everything else, and every float32 tensor, goes to
``keras.ops`` unchanged (the same traced graphs). The quantizers and quantized layers
import it as ``ops``.

Example:
    >>> import numpy as np
    >>> from hgq_fpga.compat import ops64
    >>> x = ops64.convert_to_tensor(np.array([2.0**30 + 0.5]), "float64")  # (float32: 2**30)
    >>> wide = ops64.floor(x)
    >>> # (on JAX a float64 tensor needs jax_enable_x64; without it the tensor is float32 already)
    >>> float(ops64.convert_to_numpy(wide)[0]) == 2.0**30 or not str(x.dtype).endswith("float64")
    True
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops as _ops

globals().update({name: getattr(_ops, name) for name in dir(_ops) if not name.startswith("_")})


#: the backend, fixed when Keras is imported
_BACKEND = keras.backend.backend()


def _narrowed(x: Any, backends: tuple[str, ...] = ("jax", "torch")) -> bool:
    """Whether Keras would narrow ``x`` here: a float64 tensor on one of ``backends`` (the dtype's name
    alone, ``float64`` or ``torch.float64``: PyTorch runs every operation eagerly, and this runs with each)."""
    return _BACKEND in backends and str(getattr(x, "dtype", "")).endswith("float64") and _ops.is_tensor(x)


def _native(name: str) -> Any:
    """The backend's own ``name`` (``jax.numpy``'s or ``torch``'s)."""
    if _BACKEND == "jax":
        import jax.numpy as jnp

        return getattr(jnp, name)
    import torch

    return getattr(torch, name)


def _binary(name: str, x1: Any, x2: Any) -> Any:
    """``name(x1, x2)``: by torch when either is a float64 tensor there (both taken as float64)."""
    if _narrowed(x1, ("torch",)) or _narrowed(x2, ("torch",)):
        return _native(name)(_ops.convert_to_tensor(x1, "float64"), _ops.convert_to_tensor(x2, "float64"))
    return getattr(_ops, name)(x1, x2)


def floor(x: Any) -> Any:
    """``keras.ops.floor``, float64 kept float64 (JAX, PyTorch)."""
    return _native("floor")(x) if _narrowed(x) else _ops.floor(x)


def ceil(x: Any) -> Any:
    """``keras.ops.ceil``, float64 kept float64 (JAX, PyTorch)."""
    return _native("ceil")(x) if _narrowed(x) else _ops.ceil(x)


def maximum(x1: Any, x2: Any) -> Any:
    """``keras.ops.maximum``, float64 kept float64 (PyTorch)."""
    return _binary("maximum", x1, x2)


def minimum(x1: Any, x2: Any) -> Any:
    """``keras.ops.minimum``, float64 kept float64 (PyTorch)."""
    return _binary("minimum", x1, x2)


def floor_divide(x1: Any, x2: Any) -> Any:
    """``keras.ops.floor_divide``, float64 kept float64 (PyTorch)."""
    return _binary("floor_divide", x1, x2)


def matmul(x1: Any, x2: Any) -> Any:
    """``keras.ops.matmul``, float64 kept float64 (PyTorch)."""
    return _binary("matmul", x1, x2)


def __getattr__(name: str) -> Any:
    """Any other ``keras.ops`` name (the copies above are made once, at import; this serves type checkers,
    for which a module ``__getattr__`` makes every other name of this module ``keras.ops``'s)."""
    return getattr(_ops, name)
