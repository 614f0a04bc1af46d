"""Loading ``.keras`` files that may come from anywhere, with bounded memory.

A ``.keras`` file is a zip archive; Keras reads every member whole, and only
refuses members above 4 GiB, so a 2 MB archive can ask for gigabytes. Before
Keras sees the file, :func:`check_archive` reads the archive's directory
(no member is decompressed) and refuses, naming the member and the limit:

========================  ===================  ===========================================
limit                     default              what it bounds
========================  ===================  ===========================================
``max_total_bytes``       256 MiB              the sum of the members' uncompressed sizes
``max_config_bytes``      16 MiB               ``config.json`` (parsed as JSON in memory)
``max_members``           64                   the number of members
========================  ===================  ===========================================

Python's zip reader never returns more bytes than a member's declared size,
so these declared sizes bound what loading can take. The models this flow
deploys on FPGAs weigh kilobytes to megabytes; pass larger limits (the
command's ``--max-model-mib``) for larger ones. Layers load in Keras's safe
mode (no code in the file runs).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["MAX_CONFIG_BYTES", "MAX_MEMBERS", "MAX_TOTAL_BYTES", "MAX_NAME", "MAX_UNITS", "MAX_ELEMENTS",
           "check_archive", "check_config", "load_model"]

MAX_TOTAL_BYTES = 256 * 2**20
MAX_CONFIG_BYTES = 16 * 2**20
MAX_MEMBERS = 64
#: the longest layer (or any) name accepted: names reach tables and plots
MAX_NAME = 256
#: the largest ``units`` / ``filters`` / kernel or pool size: far beyond any FPGA design
MAX_UNITS = 2**16
#: the largest number of elements of an input shape
MAX_ELEMENTS = 2**24
#: configuration keys that are bit counts (bounded by :data:`hgq_fpga.fixed.format.FORMAT_LIMIT`)
BIT_KEYS = ("f0", "f_min", "f_max", "i", "k", "table_f")
SIZE_KEYS = ("units", "filters", "kernel_size", "pool_size", "strides", "dilation_rate")
SHAPE_KEYS = ("batch_shape", "batch_input_shape", "shape", "target_shape")


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def check_archive(path: str | os.PathLike, *, max_total_bytes: int = MAX_TOTAL_BYTES,
                  max_config_bytes: int = MAX_CONFIG_BYTES, max_members: int = MAX_MEMBERS) -> None:
    """Refuse a ``.keras`` file that is not a zip archive, or whose declared sizes exceed the limits.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a ``.keras`` archive, or over a limit (the message names both).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file (expected a .keras model saved with model.save)")
    if not zipfile.is_zipfile(p):
        head = p.read_bytes()[:1].decode("latin-1") if p.stat().st_size else ""
        kind = "JSON text" if head in ("{", "[") else "HDF5 (a Keras 2 .h5 file)" if head == "\x89" else "not a zip"
        raise ValueError(f"{p}: not a .keras archive (a .keras file is a zip; this one is {kind}). "
                         "Save the model with model.save('name.keras') under Keras 3.")
    with zipfile.ZipFile(p) as archive:
        members = archive.infolist()
    if len(members) > max_members:
        raise ValueError(f"{p}: {len(members)} members in the archive, more than the limit of {max_members}")
    for m in members:
        if m.filename.endswith("config.json") and m.file_size > max_config_bytes:
            raise ValueError(f"{p}: member {m.filename!r} would take {_mib(m.file_size)} in memory, over the "
                             f"limit of {_mib(max_config_bytes)} for a model's configuration")
    total = sum(m.file_size for m in members)
    if total > max_total_bytes:
        big = max(members, key=lambda m: m.file_size)
        raise ValueError(f"{p}: the archive would take {_mib(total)} once read ({big.filename!r}: "
                         f"{_mib(big.file_size)}), over the limit of {_mib(max_total_bytes)}. If the model "
                         "is that large and you trust the file, raise the limit (max_total_bytes=..., "
                         "or --max-model-mib on the command line).")
    with zipfile.ZipFile(p) as archive:
        _read_config(archive, p)


def check_config(config: Any, where: str = "the model") -> None:
    """Refuse absurd values in a model's configuration before Keras builds anything from it.

    Names longer than :data:`MAX_NAME`; ``units``, ``filters``, kernel, pool
    and stride sizes above :data:`MAX_UNITS`; shapes of more than
    :data:`MAX_ELEMENTS` elements; bit counts (``f0``, ``i``, ...) beyond
    :data:`~hgq_fpga.fixed.format.FORMAT_LIMIT`. The message names the layer.

    >>> check_config({"class_name": "Dense", "config": {"name": "d", "units": 10**9}})
    Traceback (most recent call last):
    ...
    ValueError: layer 'd': units=1000000000 is beyond the limit of 65536 (a corrupt or crafted model file)
    """
    stack = [(config, where, 0)]
    while stack:
        node, owner, depth = stack.pop()
        if depth > 200:
            raise ValueError(f"{owner}: the configuration is nested more than 200 levels deep (a crafted file)")
        if isinstance(node, list):
            stack.extend((v, owner, depth + 1) for v in node)
            continue
        if not isinstance(node, dict):
            continue
        name = node.get("name")
        if isinstance(name, str):
            if len(name) > MAX_NAME:
                raise ValueError(f"a name of {len(name)} characters ({name[:40]!r}...) is longer than the limit of "
                                 f"{MAX_NAME} (a corrupt or crafted model file)")
            owner = f"layer {name!r}"
        for key, value in node.items():
            _check_value(owner, key, value)
            stack.append((value, owner, depth + 1))


def _check_value(owner: str, key: str, value: Any) -> None:
    from .fixed.format import FORMAT_LIMIT

    numbers = [v for v in (value if isinstance(value, list) else [value])
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if key in BIT_KEYS and any(not abs(v) <= FORMAT_LIMIT for v in numbers):
        raise ValueError(f"{owner}: {key}={value} is beyond the limit of {FORMAT_LIMIT} bits "
                         "(a corrupt or crafted model file)")
    if key in SIZE_KEYS and any(not abs(v) <= MAX_UNITS for v in numbers):
        raise ValueError(f"{owner}: {key}={value} is beyond the limit of {MAX_UNITS} "
                         "(a corrupt or crafted model file)")
    if key in SHAPE_KEYS and numbers:
        size = 1
        for v in numbers:
            size *= max(int(v), 1) if abs(v) <= MAX_ELEMENTS else MAX_ELEMENTS + 1
        if size > MAX_ELEMENTS:
            raise ValueError(f"{owner}: {key}={value} has more than {MAX_ELEMENTS} elements "
                             "(a corrupt or crafted model file)")


def _read_config(archive: zipfile.ZipFile, p: Path) -> None:
    import json

    try:
        text = archive.read("config.json")
    except KeyError:
        return
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{p}: its config.json is not valid JSON ({type(e).__name__}); the file is damaged "
                         "or not a Keras model") from None
    check_config(config, str(p))


def load_model(path: str | os.PathLike, *, max_total_bytes: int = MAX_TOTAL_BYTES,
               max_config_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """Load a ``.keras`` model of hgq_fpga layers: checked first (:func:`check_archive`), then in safe mode.

    Example:
        >>> model = hgq_fpga.loading.load_model("model.keras")   # doctest: +SKIP
    """
    check_archive(path, max_total_bytes=max_total_bytes, max_config_bytes=max_config_bytes)
    p = Path(path)
    if p.suffix != ".keras":
        raise ValueError(f"{p}: Keras 3 opens a model archive only under a name ending in .keras; "
                         f"rename or copy it to {p.with_suffix('.keras').name}")
    import keras

    from . import layers  # noqa: F401  (registers the layer classes for loading)

    try:
        return keras.saving.load_model(p, safe_mode=True)
    except Exception as e:
        saved = _saved_with(p)
        version = (f" It was saved by Keras {saved}; this is Keras {keras.__version__}: save it again with "
                   f"this version, or load it where it was saved." if saved and saved != keras.__version__ else "")
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"{p}: Keras could not rebuild the model ({type(e).__name__}: {first}).{version}") from e


def _saved_with(p: Path) -> str | None:
    """The Keras version in an archive's metadata.json (None if it does not say)."""
    import json

    try:
        with zipfile.ZipFile(p) as archive:
            meta = json.loads(archive.read("metadata.json"))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None
    version = meta.get("keras_version") if isinstance(meta, dict) else None
    return str(version)[:40] if version else None
