"""hgq_fpga: from Keras training to FPGA firmware with per-element trainable
bit-widths.

Public entry points:

* :mod:`hgq_fpga.fixed` -- the fixed-point numbers (numpy only);
* :mod:`hgq_fpga.quantizers` -- Keras quantizers with trainable bits;
* :mod:`hgq_fpga.layers` -- ``QDense``, ``QConv2D``, ... ;
* :func:`calibrate` -- set activation integer bits from data;
* :func:`bit_summary` -- bit statistics of a model;
* :func:`build_ir` -- the fixed-point graph of a calibrated model;
* :func:`emulate` -- bit-accurate numpy emulation of the firmware;
* :func:`estimate` -- LUTs, DSPs and EBOPs of the firmware
  (:mod:`hgq_fpga.resources`: cost rules, yosys synthesis, vendor reports);
* :class:`ResourceBudget` -- train under a LUT/DSP budget (:mod:`hgq_fpga.constraints`);
* :func:`to_hls4ml`, :func:`verify` -- hls4ml projects, checked bit for bit
  against the C simulation;
* :func:`to_rtl` -- a pipelined Verilog project (testbench, constraints,
  Vivado and yosys scripts); ``verify(model, x, backend="rtl")`` checks its
  Icarus Verilog simulation bit for bit;
* :func:`from_qkeras` -- import a QKeras model, bit-identical;
* :func:`load_model` -- load a ``.keras`` file safely (size limits, safe mode);
* :func:`write_report` -- an HTML report (tables, plots, utilization of the
  part, provenance, the verification verdict); :func:`device` -- a part's
  LUTs, FFs, DSPs and block RAMs;
* :func:`sweep` -- architectures x budgets x seeds into a resumable sweep
  folder, on a local process pool or a Ray cluster; :func:`synthesize_many`
  -- yosys or vendor syntheses of its models in parallel
  (:mod:`hgq_fpga.sweeps`); :mod:`hgq_fpga.models` -- ready-made models.

Results (:class:`ResourceReport`, :class:`VerifyResult`, :class:`BitSummary`,
the budget's result) show as tables in notebooks and export with ``to_pandas()``.

The API reference is ``docs/api.md`` (generated from the docstrings).

Submodules load on first use, so ``import hgq_fpga.fixed`` needs only numpy
(the numeric core never imports Keras). ``import hgq_fpga`` is enough for
``keras.models.load_model`` to find hgq_fpga's layers
(:mod:`hgq_fpga.registration`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "fixed": ("hgq_fpga.fixed", None),
    "quantizers": ("hgq_fpga.quantizers", None),
    "layers": ("hgq_fpga.layers", None),
    "datasets": ("hgq_fpga.datasets", None),
    "templates": ("hgq_fpga.templates", None),
    "testing": ("hgq_fpga.testing", None),
    "ir": ("hgq_fpga.ir", None),
    "build_ir": ("hgq_fpga.frontend", "build_ir"),
    "to_verilog": ("hgq_fpga.backends.rtl", "to_verilog"),
    "to_rtl": ("hgq_fpga.backends.rtl", "to_rtl"),
    "emulate": ("hgq_fpga.emulator", "emulate"),
    "emulate_mantissas": ("hgq_fpga.emulator", "emulate_mantissas"),
    "to_hls4ml": ("hgq_fpga.backends.hls4ml", "to_hls4ml"),
    "verify": ("hgq_fpga.backends.hls4ml", "verify"),
    "VerifyResult": ("hgq_fpga.backends.hls4ml", "VerifyResult"),
    "resources": ("hgq_fpga.resources", None),
    "estimate": ("hgq_fpga.resources", "estimate"),
    "ResourceReport": ("hgq_fpga.resources", "ResourceReport"),
    "CostModel": ("hgq_fpga.resources", "CostModel"),
    "constraints": ("hgq_fpga.constraints", None),
    "ResourceBudget": ("hgq_fpga.constraints", "ResourceBudget"),
    "calibrate": ("hgq_fpga.calibration", "calibrate"),
    "is_calibrated": ("hgq_fpga.calibration", "is_calibrated"),
    "iter_quantizers": ("hgq_fpga.calibration", "iter_quantizers"),
    "CalibrationResult": ("hgq_fpga.calibration", "CalibrationResult"),
    "bit_summary": ("hgq_fpga.summary", "bit_summary"),
    "BitSummary": ("hgq_fpga.summary", "BitSummary"),
    "from_qkeras": ("hgq_fpga.qkeras_import", "from_qkeras"),
    "load_model": ("hgq_fpga.loading", "load_model"),
    "report": ("hgq_fpga.report", None),
    "write_report": ("hgq_fpga.report", "write_report"),
    "device": ("hgq_fpga.resources.parts", "device"),
    "models": ("hgq_fpga.models", None),
    "sweeps": ("hgq_fpga.sweeps", None),
    "sweep": ("hgq_fpga.sweeps", "sweep"),
    "synthesize_many": ("hgq_fpga.sweeps", "synthesize_many"),
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hgq_fpga' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# ``import hgq_fpga`` is enough for keras.models.load_model to find the layers (without importing Keras here)
from . import registration as _registration  # noqa: E402

_registration.install()
