"""The fixed-point intermediate representation: a small graph of exact
operations with the exact format of every tensor, built from a calibrated
Keras model. The emulator and the converter both work from it."""

from .from_keras import SUPPORTED_LAYERS, UnsupportedLayerError, build_ir, quantizer_kif
from .graph import Graph, Node, TensorInfo

__all__ = ["Graph", "Node", "SUPPORTED_LAYERS", "TensorInfo", "UnsupportedLayerError", "build_ir", "quantizer_kif"]
