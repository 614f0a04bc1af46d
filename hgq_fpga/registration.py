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
_DONE = {"hook": False, "busy": False}


def _register() -> bool:
    """Import :mod:`hgq_fpga.layers` (its classes register themselves); False if not possible yet.

    When Keras was imported by one of hgq_fpga's own modules, that module is only half
    initialised and :mod:`hgq_fpga.layers` may need it: the import then fails cleanly and is
    retried later (the hook stays until it succeeds).
    """
    if _DONE["busy"]:  # the imports below pass through the hook again
        return False
    _DONE["busy"] = True
    try:
        importlib.import_module("hgq_fpga.layers")
    except (ImportError, AttributeError):  # a module it needs is half-way through its own import
        return False
    finally:
        _DONE["busy"] = False
    _remove_hook()
    return True


def _initializing(module: Any) -> bool:
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _settled() -> bool:
    """Keras is fully imported and no module of hgq_fpga is half-way through its import."""
    keras = sys.modules.get("keras")
    if keras is None or _initializing(keras):
        return False
    return not any(_initializing(m) for n, m in list(sys.modules.items()) if n.startswith("hgq_fpga"))


def _remove_hook() -> None:
    with _LOCK:
        for finder in [f for f in sys.meta_path if isinstance(f, _AfterKeras)]:
            sys.meta_path.remove(finder)


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the spec of ``keras`` so the layers register once it has loaded,
    and retries at later imports if that was too early."""

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname != "keras":
            if _settled():
                _register()  # a retry: Keras is complete, and nothing of hgq_fpga's is being imported
            return None
        spec = _find_without_self("keras")
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
        if _settled():
            _register()


def _find_without_self(name: str) -> Any:
    with _LOCK:
        ours = [f for f in sys.meta_path if isinstance(f, _AfterKeras)]
        for finder in ours:
            sys.meta_path.remove(finder)
    try:
        return importlib.util.find_spec(name)
    finally:
        with _LOCK:
            sys.meta_path[:0] = ours


def install() -> None:
    """Register hgq_fpga's layers with Keras now, or as soon as Keras is imported (idempotent)."""
    if _settled() and _register():
        return
    with _LOCK:
        if not _DONE["hook"]:
            sys.meta_path.insert(0, _AfterKeras())
            _DONE["hook"] = True
