"""One registry per stage: what that stage does with each IR operation class.

A stage (the cost model, a backend, the emulator's float path) keeps a
:class:`Registry` and registers one function per operation class::

    COST = Registry("estimate")

    @COST.register(Dense)
    def _dense(analysis, op): ...

Lookup follows the class hierarchy (a subclass uses its base's entry unless
it has its own). An operation without an entry raises
:class:`UnsupportedOp`, naming the operation, its layer and the stage, unless
the registry was made with a ``default``.

Example:
    >>> from hgq_fpga.ir.ops import Relu
    >>> names = Registry("example")
    >>> _ = names.register(Relu)(lambda op: "relu!")
    >>> names(Relu(name="r"))
    'relu!'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Registry", "UnsupportedOp"]


class UnsupportedOp(ValueError):
    """A stage has no rule for an IR operation."""


class Registry:
    """Functions keyed by IR operation class, for one stage named ``stage``."""

    def __init__(self, stage: str, *, default: Callable[..., Any] | None = None, hint: str = "") -> None:
        self.stage = stage
        self.default = default
        self.hint = hint
        self._rules: dict[type, Callable[..., Any]] = {}

    def register(self, *classes: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: use the function for ``classes`` (and their subclasses)."""
        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            for cls in classes:
                self._rules[cls] = fn
            return fn

        return decorate

    def unregister(self, cls: type) -> None:
        """Remove the entry of ``cls`` (tests that add a toy operation clean up with it)."""
        self._rules.pop(cls, None)

    def supports(self, cls: type) -> bool:
        return any(c in self._rules for c in cls.__mro__)

    def lookup(self, op: Any) -> Callable[..., Any]:
        """The function for ``op``'s class (nearest in its hierarchy).

        Raises:
            UnsupportedOp: when neither the class nor a base has an entry and
                there is no default.
        """
        for cls in type(op).__mro__:
            fn = self._rules.get(cls)
            if fn is not None:
                return fn
        if self.default is not None:
            return self.default
        known = ", ".join(sorted(c.__name__ for c in self._rules))
        raise UnsupportedOp(
            f"{self.stage}: IR operation {type(op).__name__} (node {getattr(op, 'name', '?')!r}, layer "
            f"{getattr(op, 'layer', None)!r}) is not supported here. Supported: {known}."
            + (f" {self.hint}" if self.hint else "")
        )

    def __call__(self, op: Any, *args: Any, **kwargs: Any) -> Any:
        return self.lookup(op)(op, *args, **kwargs)
