"""Sums of squares of the weighted layers' inputs, taken inside a forward pass.

:func:`hgq_fpga.calibrate` runs its forward passes inside :func:`summing_squares`;
every :class:`~hgq_fpga.layers.weighted.WeightedLayerMixin` layer (dense,
convolution) then adds, for its input ``x`` (before its input quantizer),

* a dense layer: ``S_i = sum over the samples of x_i^2``, per input element ``i``;
* a convolution: ``S_c = sum over the samples of (mean over the input positions of x_c^2)``,
  per input channel ``c``,

with each sample weighted by ``rows`` (1 for a sample, 0 for the copies that fill a
last batch up to the compiled pass's batch size). Divided by the number of samples
``n``, that is the mean square ``E[x_i^2]`` of a dense layer's input element, or of
a convolution's input channel: what a budget's repair weighs a weight's rounding
error by (:func:`hgq_fpga.constraints.repair.repair_to_budget`; for a convolution
times the output positions, where each kernel weight meets an input).

The sums are computed in the calibration's own traced or compiled pass, so that
a repair needs no forward pass of its own (on JAX that pass was a second program
to compile: 0.7-0.9 s of the digits MLP's first repair in a process,
BENCHMARKS.md). In float32 within a batch (the layer's compute type: Keras casts
a float16 input to a float32 layer's); the caller adds the batches in float64.

Outside :func:`summing_squares` a layer records nothing (one context-variable
read when it is called or traced).

Example:
    >>> import numpy as np, keras
    >>> from hgq_fpga.layers import QDense
    >>> layer = QDense(1)
    >>> model = keras.Sequential([keras.Input((2,)), layer])
    >>> with summing_squares(np.ones(2, "float32")) as squares:
    ...     _ = model(np.array([[1.0, 2.0], [3.0, 0.5]], "float32"))
    >>> np.asarray(squares.sums[id(layer)]).tolist()
    [10.0, 4.25]
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Iterator

from keras import ops

__all__ = ["InputSquares", "record_input", "summing_squares"]

_ACTIVE: contextvars.ContextVar[InputSquares | None] = contextvars.ContextVar("hgq_fpga_input_squares", default=None)


class InputSquares:
    """The sums of one forward pass: ``sums[id(layer)]`` (a backend tensor; a layer called
    twice in the pass adds both calls)."""

    def __init__(self, rows: Any) -> None:
        #: each sample's weight in the sums, shape ``(batch,)``
        self.rows = rows
        self.sums: dict[int, Any] = {}

    def record(self, layer: Any, x: Any) -> None:
        """Add ``layer``'s input ``x`` (batch first) to its sums."""
        x = ops.convert_to_tensor(x)
        rows = ops.reshape(ops.cast(self.rows, x.dtype), (-1,) + (1,) * (len(x.shape) - 1))
        squared = ops.square(x) * rows
        if len(layer.kernel.shape) == 2:  # dense
            s = ops.sum(squared, axis=0)
        else:  # convolution: per channel, the mean over the positions
            positions = math.prod(int(d) for d in x.shape[1:-1])
            s = ops.sum(squared, axis=tuple(range(len(x.shape) - 1))) / positions
        key = id(layer)
        self.sums[key] = s if key not in self.sums else self.sums[key] + s


@contextlib.contextmanager
def summing_squares(rows: Any) -> Iterator[InputSquares]:
    """Within the block, the weighted layers add their inputs' squares to the yielded
    :class:`InputSquares` (samples weighted by ``rows``)."""
    squares = InputSquares(rows)
    token = _ACTIVE.set(squares)
    try:
        yield squares
    finally:
        _ACTIVE.reset(token)


def record_input(layer: Any, x: Any) -> None:
    """Called by a weighted layer on its input: adds it to the active sums, if any."""
    squares = _ACTIVE.get()
    if squares is not None:
        squares.record(layer, x)
