"""Frontends: user models -> the fixed-point IR (:mod:`hgq_fpga.ir`)."""

from .keras import LAYERS, SUPPORTED_LAYERS, UnsupportedLayerError, build_ir, quantizer_kif

__all__ = ["LAYERS", "SUPPORTED_LAYERS", "UnsupportedLayerError", "build_ir", "quantizer_kif"]
