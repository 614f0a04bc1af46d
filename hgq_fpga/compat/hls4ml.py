"""Private hls4ml names hgq_fpga needs (checked on hls4ml 1.3.0).

* ``bit_exact._produce_kif``: the dispatcher of the ``BitExact`` pass's
  per-layer typing rules. hls4ml has no public hook to amend one rule; we
  register our wrapper once, and it acts only on layers that hgq_fpga created
  (marked ``hgq_fpga`` in their attributes), so other users of hls4ml in the
  same process, and conversions in other threads, see hls4ml's rule unchanged.
* the ``vivado:process_fixed_point_quantizer_layer`` and
  ``fuse_fixed_point_quantizer`` passes: wrapped (once per process, for
  hgq_fpga's layers only) to keep a quantizer as a layer and to write its
  ``io_stream`` C++.
* ``ModelGraph._top_function_lib``: the loaded C simulation library.
  ``ModelGraph.compile()`` rewrites the whole project before building it
  (undoing our exact testbench); :class:`ProjectGraph` builds it without
  rewriting.
* ``vivado_report._parse_project_script`` / ``_find_solutions``: how hls4ml
  itself locates a project's synthesis reports (no public equivalent).
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hls4ml.model.graph import ModelGraph

__all__ = ["KEEP", "MARK", "ProjectGraph", "amend_kif_rule", "find_solutions", "keep_marked_quantizers",
           "load_library", "parse_project_script", "stream_marked_quantizers"]

#: attribute marking the layers hgq_fpga creates
MARK = "hgq_fpga"
#: attribute of an hgq_fpga quantizer that hls4ml must keep as a layer (not fuse into a type)
KEEP = "hgq_fpga_keep"

_LOCK = threading.Lock()
_AMENDED: set[type] = set()


def amend_kif_rule(layer_cls: type, amend: Callable[[Callable[[Any], Any]], Callable[[Any], Any]]) -> None:
    """Wrap the ``BitExact`` typing rule of ``layer_cls`` for hgq_fpga's layers only (once per process).

    ``amend(original)`` returns the rule to use for a layer marked :data:`MARK`.
    """
    from hls4ml.model.optimizer.passes import bit_exact

    with _LOCK:
        if layer_cls in _AMENDED:
            return
        dispatcher = bit_exact._produce_kif
        original = dispatcher.dispatch(layer_cls)
        ours = amend(original)

        def rule(layer: Any) -> Any:
            return ours(layer) if layer.attributes.get(MARK) else original(layer)

        dispatcher.register(layer_cls, rule)
        _AMENDED.add(layer_cls)


def keep_marked_quantizers() -> None:
    """Make hls4ml's ``fuse_fixed_point_quantizer`` pass skip quantizers marked :data:`KEEP` (once per process).

    hls4ml 1.3.0 fuses a quantizer whose mask has one format into the type of
    the layer before it. For a quantizer that zeroes every element there is no
    such type (``ap_fixed`` has no zero width; hls4ml's stand-in
    ``ap_ufixed<2,32>`` turns negative values into ``3 * 2**30``), while the
    quantizer layer's own C++ writes ``out[i] = 0``. Other layers, and other
    users of hls4ml in the process, are unaffected.
    """
    from hls4ml.model.optimizer import get_optimizer

    with _LOCK:
        opt = get_optimizer("fuse_fixed_point_quantizer")
        if getattr(opt, "_hgq_fpga_keeps", False):
            return
        original = opt.match

        def match(node: Any) -> Any:
            return False if node.attributes.get(KEEP) else original(node)

        opt.match = match
        opt._hgq_fpga_keeps = True


def load_library(hls_model: ModelGraph, library: Path) -> None:
    """Load (or reload) the C simulation library into ``hls_model``."""
    old = hls_model._top_function_lib
    if old is not None and sys.platform.startswith("linux"):
        dlclose = ctypes.CDLL("libdl.so.2").dlclose
        dlclose.argtypes, dlclose.restype = [ctypes.c_void_p], ctypes.c_int
        dlclose(old._handle)
    hls_model._top_function_lib = ctypes.cdll.LoadLibrary(str(library))


class ProjectGraph(ModelGraph):
    """An hls4ml model of a project hgq_fpga wrote: ``compile()`` builds the C
    simulation of the written project (keeping the compiler's message on
    failure) instead of writing the project again."""

    def compile(self) -> None:  # noqa: D401 - hls4ml's name
        from ..backends.hls4ml.project import compile_csim

        compile_csim(self)


def parse_project_script(project_dir: str) -> tuple[Any, Any]:
    """``(project name, top)`` from a project's ``project.tcl``, as hls4ml reads them."""
    from hls4ml.report import vivado_report

    return vivado_report._parse_project_script(project_dir)


def find_solutions(project_path: str) -> list[str]:
    """The HLS solutions of a synthesized project, as hls4ml finds them."""
    from hls4ml.report import vivado_report

    return vivado_report._find_solutions(project_path)


def stream_marked_quantizers(codegen: Callable[[Any], str]) -> None:
    """Give hgq_fpga's quantizer layers C++ for ``io_stream`` projects (once per process).

    hls4ml 1.3.0's ``process_fixed_point_quantizer_layer`` pass raises
    ``NotImplementedError`` outside ``io_parallel``. For a layer marked
    :data:`MARK` in an ``io_stream`` model, ``codegen(layer)`` writes the
    function instead (the call template is hls4ml's and fits stream arguments
    as well); every other layer and model goes to hls4ml's pass unchanged.
    """
    from hls4ml.model.optimizer import get_optimizer
    from hls4ml.model.types import Source

    with _LOCK:
        opt = get_optimizer("vivado:process_fixed_point_quantizer_layer")
        if getattr(opt, "_hgq_fpga_streams", False):
            return
        original = opt.transform

        def transform(model: Any, node: Any) -> Any:
            if node.attributes.get(MARK) and model.config.get_config_value("IOType") == "io_stream":
                node.set_attr("mask_fn_codegen", Source(codegen(node)))
                return False
            return original(model, node)

        opt.transform = transform
        opt._hgq_fpga_streams = True
