"""Granularity: which elements of a tensor share one bit-width.

Example:
    >>> granular_shape((16, 8), "channel")
    (1, 8)
    >>> granular_shape((None, 4, 4, 3), "element", batch_axis=True)
    (1, 4, 4, 3)
"""

from __future__ import annotations

from enum import Enum
from typing import Sequence

__all__ = ["Granularity", "granular_shape"]


class Granularity(str, Enum):
    """``ELEMENT``: one width per element; ``CHANNEL``: per last-axis index;
    ``TENSOR``: one for the whole tensor."""

    ELEMENT = "element"
    CHANNEL = "channel"
    TENSOR = "tensor"

    @classmethod
    def from_string(cls, value: "str | Granularity") -> "Granularity":
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ValueError(
                "granularity must be one of 'element', 'channel', 'tensor'. "
                f"Received: granularity={value!r}"
            ) from None

    def __str__(self) -> str:
        return self.value


def granular_shape(
    shape: Sequence[int | None],
    granularity: "Granularity | str",
    *,
    batch_axis: bool = False,
) -> tuple[int, ...]:
    """Shape of the bit-width variables for a tensor of ``shape``.

    Args:
        shape: the tensor shape (with the batch axis first if ``batch_axis``).
        granularity: ``"element"``, ``"channel"`` or ``"tensor"``.
        batch_axis: whether ``shape[0]`` is the batch axis (always shared).

    Raises:
        ValueError: if a needed dimension is unknown (``None``).
    """
    g = Granularity.from_string(granularity)
    lead = (1,) if batch_axis else ()
    dims = tuple(shape[1:] if batch_axis else shape)
    if g is Granularity.TENSOR:
        return lead + (1,) * len(dims)
    if g is Granularity.CHANNEL:
        if not dims or dims[-1] is None:
            raise ValueError(
                f"granularity='channel' needs a known last dimension. Received shape={tuple(shape)}"
            )
        return lead + (1,) * (len(dims) - 1) + (int(dims[-1]),)
    if any(d is None for d in dims):
        raise ValueError(
            "granularity='element' needs every non-batch dimension known. "
            f"Received shape={tuple(shape)}; give the Input a full shape or use "
            "granularity='channel'."
        )
    return lead + tuple(int(d) for d in dims)
