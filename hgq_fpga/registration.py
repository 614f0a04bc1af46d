"""Make ``import hgq_fpga`` enough for ``keras.models.load_model`` to find hgq_fpga's layers.

Keras finds a custom class only if the module that registers it
(``@keras.saving.register_keras_serializable``) was imported; it never
imports a non-Keras module named in a saved file. hgq_fpga's layers live in
:mod:`hgq_fpga.layers`, which needs Keras, while ``import hgq_fpga`` must stay
light (the numeric core, the IR and the command's ``--help`` never load
Keras). So :func:`install` registers the layers

* at once, when Keras is already imported;
* otherwise right after Keras is first imported, by a one-shot import hook
  (a :data:`sys.meta_path` finder that wraps Keras's own loader and removes
  itself).

Example (``tests/test_registration.py`` runs it in fresh processes)::

    import hgq_fpga, keras
    model = keras.models.load_model("model.keras")  # QDense, QConv2D, ... found
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

__all__ = ["install"]

_LOCK = threading.Lock()
_DONE = {"hook": False}


def _register() -> None:
    importlib.import_module("hgq_fpga.layers")


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the spec of ``keras`` so the layers register once it has loaded."""

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname != "keras":
            return None
        with _LOCK:
            if self in sys.meta_path:
                sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Loader(spec.loader)
        return spec


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        _register()


def install() -> None:
    """Register hgq_fpga's layers with Keras now, or as soon as Keras is imported (idempotent)."""
    if "keras" in sys.modules:
        _register()
        return
    with _LOCK:
        if not _DONE["hook"]:
            sys.meta_path.insert(0, _AfterKeras())
            _DONE["hook"] = True
