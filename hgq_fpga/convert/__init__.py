"""Conversion of the fixed-point IR to hls4ml projects."""

from .hls4ml_layers import UnsupportedForHls4ml, graph_to_layer_list
from .project import BACKENDS, STRATEGIES, to_hls4ml
from .verify import VerifyResult, verify

__all__ = [
    "BACKENDS", "STRATEGIES", "UnsupportedForHls4ml", "VerifyResult", "graph_to_layer_list", "to_hls4ml", "verify",
]
