"""One trainable variable for all the fractional bits of a layer.

Keras optimizers update variables one at a time, and each update costs
graph operations and kernel launches; a quantized layer with separate
``f`` variables for its input, kernel and bias would pay that three times.
:class:`PackedBits` concatenates the flattened ``f`` of the layer's
trainable quantizers into one variable and hands each quantizer its slice.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np

from ..compat import ops64 as ops
from .base import BitQuantizerBase, ElementClip, scale_gradient

__all__ = ["PackedBits", "pack_bits"]


@keras.saving.register_keras_serializable(package="hgq_fpga")
class PackedBits(keras.layers.Layer):
    """Holds ``f`` (one flat trainable variable) for several quantizers.

    Built by the owning layer with :meth:`pack`; its variable is saved and
    restored like any other layer variable.
    """

    def pack(self, quantizers: Sequence[BitQuantizerBase]) -> None:
        """Create the variable for ``quantizers`` (already built with ``defer_bits``)."""
        sizes = [q.bits_size for q in quantizers]
        init = np.concatenate([np.full(n, q.f0, "float32") for q, n in zip(quantizers, sizes)])
        low = np.concatenate([np.full(n, q.f_min, "float32") for q, n in zip(quantizers, sizes)])
        high = np.concatenate([np.full(n, q.f_max, "float32") for q, n in zip(quantizers, sizes)])
        self.f = self.add_weight(
            name="f",
            shape=(int(init.size),),
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(init, dtype or self.variable_dtype),
            trainable=True,
            constraint=ElementClip(low, high),
        )
        offset = 0
        for q, n in zip(quantizers, sizes):
            q.attach(self.f, offset)
            offset += n
        # plain references, not tracked: the quantizers belong to the owning layer
        object.__setattr__(self, "_members", list(quantizers))
        object.__setattr__(self, "_sizes", [int(n) for n in sizes])
        self.built = True

    def values(self, gradient_scale: Any = None) -> dict[int, Any]:
        """``{id(quantizer): f tensor}`` from one read and one split of the variable.

        Args:
            gradient_scale: a scalar tensor that multiplies the gradient reaching the
                variable through these values (the budget's ``task_share``), or None.
        """
        flat = ops.convert_to_tensor(self.f)
        if gradient_scale is not None:
            flat = scale_gradient(flat, gradient_scale)
        if len(self._sizes) == 1:
            parts = [flat]
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # (one SplitV by sizes: keras.ops.split turns the split points into sizes with 23
            # more graph ops, traced into every step of every layer)
            parts = tf.split(flat, self._sizes)
        else:
            parts = ops.split(flat, [int(n) for n in np.cumsum(self._sizes)[:-1]])
        return {
            id(q): ops.reshape(part, q.bits_shape) for q, part in zip(self._members, parts)
        }

    def build(self, input_shape: Any = None) -> None:  # built by pack()
        pass

    def get_build_config(self) -> None:
        return None


def pack_bits(owner: keras.layers.Layer, quantizers: Sequence[BitQuantizerBase]) -> PackedBits | None:
    """Pack the trainable, deferred quantizers' ``f`` into one ``PackedBits`` sub-layer."""
    deferred = [q for q in quantizers if q.defer_bits]
    if not deferred:
        return None
    packed = PackedBits(name="bits", dtype=owner.dtype_policy)
    packed.pack(deferred)
    return packed
