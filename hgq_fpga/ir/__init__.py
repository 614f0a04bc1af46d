"""The fixed-point intermediate representation: typed operations with the
exact format and bounds of every tensor. Keras-free (a test checks it); the
Keras frontend (:mod:`hgq_fpga.frontend.keras`) builds it, and the emulator,
the cost model and the backends read it.
"""

from . import ops
from .builder import GraphBuilder
from .exact import Constant, Mant
from .graph import Graph, TensorInfo
from .ops import (
    Add,
    AvgPool,
    Concat,
    Conv,
    Dense,
    Input,
    Linear,
    MaxPool,
    Multiply,
    Op,
    Quantize,
    Relu,
    Reshape,
    Scale,
    Table,
)
from .registry import Registry, UnsupportedOp

__all__ = [
    "Add", "AvgPool", "Concat", "Constant", "Conv", "Dense", "Graph", "GraphBuilder", "Input", "Linear", "Mant",
    "MaxPool", "Multiply", "Op", "Quantize", "Registry", "Relu", "Reshape", "Scale", "Table", "TensorInfo",
    "UnsupportedOp", "ops",
]
