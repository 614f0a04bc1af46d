"""Optional Python packages: one clear error, with the install command, when one is missing.

Example::

    >>> require("numpy", feature="the emulator", extra="test")   # installed: no error
    >>> require("no_such_package_xyz", feature="this demo", extra="da")
    Traceback (most recent call last):
    ...
    hgq_fpga.optional.MissingDependencyError: this demo needs the Python package no_such_package_xyz, which is not installed: pip install 'hgq_fpga[da]'
"""

from __future__ import annotations

import importlib

__all__ = ["DA_FEATURE", "MissingDependencyError", "require", "require_da4ml"]

DA_FEATURE = "strategy distributed_arithmetic (hls4ml's da4ml adder graphs)"


class MissingDependencyError(ImportError):
    """An optional package that a requested feature needs is not installed."""


def require(module: str, *, feature: str, extra: str) -> None:
    """Import ``module``, or raise :class:`MissingDependencyError` naming ``feature`` and the pip extra."""
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{feature} needs the Python package {module}, which is not installed: pip install 'hgq_fpga[{extra}]'"
        ) from e


def require_da4ml() -> None:
    """da4ml 0.5.x, which hls4ml 1.3.0's distributed_arithmetic strategy and its estimate use."""
    require("da4ml", feature=DA_FEATURE, extra="da")
