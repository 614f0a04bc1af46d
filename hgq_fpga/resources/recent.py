"""A bounded, thread-safe cache of the most recently used values, for the estimator's solved parts.

The estimator keeps what is expensive to solve and depends only on its key: da4ml's
pipelines and traced costs (:mod:`.da`), the RTL backend's candidate adder graphs
(:mod:`.shared`) and the adder trees of dense/convolution columns (:mod:`.circuit`), so
that a model estimated again (a repair round, a check while the bits are frozen, a
conversion after an estimate) solves only what changed. Each was an ``OrderedDict``
trimmed by hand, one of them without a lock although estimates may run in several
threads; :class:`Recent` is the one implementation. (``functools.lru_cache`` caches a
function of hashable arguments; these keys are built from arrays by the callers, and
one cache is bounded by the total size of its values, not their number.)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

__all__ = ["Recent"]

V = TypeVar("V")


class Recent(Generic[V]):
    """At most ``size`` values (each counted by ``weight(value)``, 1 by default), the least
    recently used dropped first; the most recent one always stays, whatever its weight.

    Example:
        >>> kept = Recent(2)
        >>> for key in "abc":
        ...     _ = kept.put(key, key.upper())
        >>> kept.get("a"), kept.get("c")
        (None, 'C')
    """

    def __init__(self, size: int, weight: Callable[[V], int] | None = None) -> None:
        self.size, self.weight = int(size), weight
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: Hashable) -> V | None:
        """The value kept for ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> V:
        """Keep ``value`` for ``key`` as the most recent; returns it."""
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
        self.trim()
        return value

    def setdefault(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value kept for ``key`` (now the most recent), else ``make()``, kept (not trimmed:
        for a value that grows after it is kept, :meth:`trim` once it has)."""
        with self._lock:
            value = self._values.get(key)
            if value is None:
                value = self._values[key] = make()
            else:
                self._values.move_to_end(key)
            return value

    def trim(self) -> None:
        """Drop the least recently used values beyond ``size``."""
        with self._lock:
            weight = self.weight or (lambda value: 1)
            total = len(self._values) if self.weight is None else sum(map(weight, self._values.values()))
            while total > self.size and len(self._values) > 1:
                total -= weight(self._values.popitem(last=False)[1])

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._values.clear()
