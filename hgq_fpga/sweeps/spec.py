"""What a sweep is: architectures x LUT budgets x seeds, and the settings every trial shares.

A :class:`SweepSpec` is plain data (it is saved as ``sweep.json`` in the sweep
folder and compared when a sweep is resumed). The model builder is named, not
stored: ``"mlp"`` or ``"cnn"`` (:mod:`hgq_fpga.models`), or
``"package.module:function"`` for your own. A builder takes the
architecture's options as keyword arguments and returns a Keras model
(compiled or not: an uncompiled one gets :func:`hgq_fpga.models.compile_classifier`).

Example:
    >>> spec = SweepSpec(build="mlp", architectures={"small": {"widths": [16, 10]}},
    ...                  budgets=[500, 1000], seeds=[0, 1], epochs=2)
    >>> [t.key for t in spec.trials()][:2]
    ['small_lut500_seed0', 'small_lut500_seed1']
"""

from __future__ import annotations

import hashlib
import importlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["SETTINGS", "SweepSpec", "Trial", "data_fingerprint", "resolve_build"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: the fields that every trial of a sweep folder shares (resuming with other values is refused)
SETTINGS = ("build", "epochs", "batch_size", "learning_rate", "method", "budget_options", "data")


@dataclass(frozen=True)
class Trial:
    """One training run: an architecture, a LUT budget (None: no budget) and a seed."""

    architecture: str
    budget: float | None
    seed: int

    @property
    def key(self) -> str:
        """The trial's folder name, e.g. ``small_lut500_seed0`` (``..._free_...`` without a budget)."""
        b = "free" if self.budget is None else f"lut{self.budget:g}"
        return f"{self.architecture}_{b}_seed{self.seed}"


def _budget(b: Any) -> float | None:
    if b is None or (isinstance(b, str) and b.lower() in ("none", "free")):
        return None
    try:
        v = float(b)
    except (TypeError, ValueError):
        v = math.nan
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"budgets are positive LUT counts (or null for no budget); received {b!r}")
    return v


@dataclass
class SweepSpec:
    """Architectures x budgets x seeds (see the module docstring).

    Attributes:
        build: ``"mlp"``, ``"cnn"`` or ``"package.module:function"``.
        architectures: ``{name: builder options}``; names are ``[A-Za-z0-9_.-]``.
        budgets: LUT budgets (None: train without a budget, as a reference).
        seeds: ``keras.utils.set_random_seed`` of each trial.
        epochs, batch_size, learning_rate: of ``fit`` (and of the compile, for uncompiled models).
        method: :class:`~hgq_fpga.ResourceBudget`'s rule.
        budget_options: more :class:`~hgq_fpga.ResourceBudget` arguments (``dsp``, ``strategy``, ...).
        data: a fingerprint of the data (set by :func:`hgq_fpga.sweep`).
    """

    build: str
    budgets: list[float | None]
    epochs: int
    architectures: dict[str, dict[str, Any]] = field(default_factory=lambda: {"model": {}})
    seeds: list[int] = field(default_factory=lambda: [0])
    batch_size: int = 32
    learning_rate: float = 3e-3
    method: str = "constraint"
    budget_options: dict[str, Any] = field(default_factory=dict)
    data: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.build, str) or not self.build:
            raise ValueError(f"build must name a builder ('mlp', 'cnn' or 'module:function'); received {self.build!r}")
        self.budgets = [_budget(b) for b in _as_list(self.budgets, "budgets")]
        self.seeds = [_int(s, "seeds") for s in _as_list(self.seeds, "seeds")]
        self.epochs = _int(self.epochs, "epochs", minimum=1)
        self.batch_size = _int(self.batch_size, "batch_size", minimum=1)
        self.learning_rate = float(self.learning_rate)
        if self.method not in ("constraint", "step", "primal_dual"):
            raise ValueError(f"method must be 'constraint', 'step' or 'primal_dual'; received method={self.method!r}")
        if not isinstance(self.architectures, Mapping) or not self.architectures:
            raise ValueError(f"architectures must map names to builder options; received {self.architectures!r}")
        for name, options in self.architectures.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"architecture names are letters, digits, '_', '.', '-' (64 at most); "
                                 f"received {name!r}")
            if not isinstance(options, Mapping):
                raise ValueError(f"architecture {name!r}: options must be a mapping; received {options!r}")
        self.architectures = {k: dict(v) for k, v in self.architectures.items()}
        self.budget_options = dict(self.budget_options or {})

    def trials(self) -> list[Trial]:
        """Every trial, architecture by architecture, budget by budget, seed by seed."""
        return [Trial(a, b, s) for a in self.architectures for b in self.budgets for s in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (``sweep.json``)."""
        return asdict(self)

    def conflicts(self, saved: Mapping[str, Any]) -> list[str]:
        """How this spec differs from a saved one in what trials share (empty: resumable)."""
        mine = self.to_dict()
        out = [f"{k}: saved {saved.get(k)!r}, now {mine[k]!r}" for k in SETTINGS if saved.get(k) != mine[k]]
        for name, options in saved.get("architectures", {}).items():
            if name in self.architectures and self.architectures[name] != options:
                out.append(f"architecture {name!r}: saved {options!r}, now {self.architectures[name]!r}")
        return out


def _as_list(v: Any, what: str) -> list[Any]:
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or not len(v):
        raise ValueError(f"{what} must be a non-empty list; received {what}={v!r}")
    return list(v)


def _int(v: Any, what: str, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or (minimum is not None and v < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{what} must be integers{bound}; received {v!r}")
    return int(v)


def resolve_build(name: str) -> Callable[..., Any]:
    """The builder a spec names: ``"mlp"``, ``"cnn"`` or ``"package.module:function"``."""
    from ..models import BUILDERS

    if name in BUILDERS:
        return BUILDERS[name]
    module, _, attr = name.partition(":")
    if not module or not attr:
        raise ValueError(f"model {name!r} is neither one of {', '.join(BUILDERS)} nor 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"model {name!r} cannot be imported ({e}); the module must be importable on every "
                         f"worker (installed, or on PYTHONPATH)") from e
    if not callable(obj):
        raise ValueError(f"model {name!r} is not callable")
    return obj


def build_name(build: str | Callable[..., Any]) -> str:
    """A builder's name for the spec: the string itself, or ``module:qualname`` of a function."""
    if isinstance(build, str):
        return build
    module, qual = getattr(build, "__module__", None), getattr(build, "__qualname__", None)
    if not module or not qual:
        raise TypeError(f"build must be a builder name or a function; received {build!r}")
    return f"{module}:{qual}"


def data_fingerprint(arrays: Sequence[np.ndarray]) -> str:
    """SHA-256 over the arrays' dtypes, shapes and bytes (first 16 hex digits)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
