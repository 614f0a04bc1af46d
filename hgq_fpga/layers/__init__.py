"""Quantized Keras 3 layers: every input, weight and bias element carries its
own trainable fractional bits.

Each layer is the Keras layer with a ``Q`` in front, composed of quantizer
sub-layers (``input_quantizer``, ``kernel_quantizer``, ``bias_quantizer``);
plain ``Input``, ``Flatten`` and ``Reshape`` work between them.
"""

from .activation import EXACT_ACTIVATIONS, TABLE_ACTIVATIONS, QActivation
from .base import SUPPORTED_ACTIVATIONS, QuantizedLayerMixin
from .conv import QConv1D, QConv2D
from .core import QDense
from .merge import QAdd, QConcatenate
from .normalization import QBatchNormalization
from .pooling import QAveragePooling1D, QAveragePooling2D, QMaxPooling1D, QMaxPooling2D
from .softmax import QSoftmax

__all__ = [
    "EXACT_ACTIVATIONS",
    "TABLE_ACTIVATIONS",
    "QActivation",
    "QAdd",
    "QAveragePooling1D",
    "QAveragePooling2D",
    "QBatchNormalization",
    "QConcatenate",
    "QConv1D",
    "QConv2D",
    "QDense",
    "QMaxPooling1D",
    "QMaxPooling2D",
    "QSoftmax",
    "QuantizedLayerMixin",
    "SUPPORTED_ACTIVATIONS",
]
