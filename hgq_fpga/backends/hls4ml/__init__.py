"""Conversion of the fixed-point IR to hls4ml projects."""

from .layers import UnsupportedForHls4ml, graph_to_layer_list
from .limits import MAX_UNROLLED_MULTIPLICATIONS, ModelTooLarge, check_limits
from .project import BACKENDS, STRATEGIES, CompileError, SelfCheckError, check_project, compile_csim, to_hls4ml
from .verify import VerifyResult, verify

__all__ = [
    "BACKENDS", "MAX_UNROLLED_MULTIPLICATIONS", "STRATEGIES", "CompileError", "ModelTooLarge", "SelfCheckError",
    "UnsupportedForHls4ml", "VerifyResult", "check_limits", "check_project", "compile_csim", "graph_to_layer_list",
    "to_hls4ml", "verify",
]
