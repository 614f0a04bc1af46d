"""A g++-compiled ``ap_fixed`` reference, built once per test session.

The fixture :func:`apfixed_compiler` returns a function that turns a list of
C++ types, given as keys ``(W, I, signed, rounding, overflow)``, into an
:class:`ApFixedDriver`: executables generated from ``apfixed_driver.cpp.in``
that assign doubles to ``ap_fixed<W, I, AP_<rounding>, AP_<overflow>>`` (or
``ap_ufixed``) and return the raw integer mantissas.

The headers are the ``ap_types`` shipped inside hls4ml; nothing is copied into
the repository. The table of template instantiations is split into chunks that
are compiled in parallel (each instantiation costs about 30 ms of g++ time).
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest

Key = tuple[int, int, bool, str, str]
"""A C++ type: ``(W, I, signed, rounding, overflow)``, I counting the sign bit."""

TEMPLATE = Path(__file__).with_name("apfixed_driver.cpp.in")
CXX_FLAGS = ("-std=c++14", "-O0", "-fno-exceptions", "-w")  # -O0: fastest build + run
CHUNK_TARGET = 600  # most instantiations per translation unit: g++ needs ~1 GB for 600

_build_log: list[str] = []


def ap_types_dir() -> Path | None:
    """The ``ap_types`` folder of the installed hls4ml, or None if absent.

    Found without importing hls4ml: same as
    ``os.path.join(os.path.dirname(hls4ml.__file__), 'templates', 'vivado', 'ap_types')``.
    """
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "templates" / "vivado" / "ap_types"
    return path if (path / "ap_fixed.h").is_file() else None


def cpp_entry(key: Key) -> str:
    """The function-pointer table entry of one C++ type."""
    width, int_bits, signed, rounding, overflow = key
    flag = "true" if signed else "false"
    return f"&apfx_convert<{width}, {int_bits}, {flag}, AP_{rounding}, AP_{overflow}>"


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _compile(source: Path, exe: Path, include: Path) -> None:
    cmd = ["g++", *CXX_FLAGS, f"-I{include}", str(source), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"g++ failed on {source}:\n{proc.stderr[-4000:]}")


class ApFixedDriver:
    """Runs compiled ``ap_fixed`` conversions; see :func:`apfixed_compiler`."""

    def __init__(self, keys: Sequence[Key], exes: Sequence[Path], chunk: int) -> None:
        self._where = {key: (exes[n // chunk], n % chunk) for n, key in enumerate(keys)}

    def mantissas(self, requests: Sequence[tuple[Key, np.ndarray]]) -> list[np.ndarray]:
        """C++ mantissas for each ``(key, x)``: ``x`` assigned to the type, as int64.

        One process per executable involved, values passed as binary doubles.
        """
        per_exe: dict[Path, list[int]] = {}
        for n, (key, _) in enumerate(requests):
            per_exe.setdefault(self._where[key][0], []).append(n)
        out: list[np.ndarray] = [np.empty(0, np.int64)] * len(requests)
        for exe, numbers in per_exe.items():
            blobs, sizes = [], []
            for n in numbers:
                key, x = requests[n]
                xs = np.ascontiguousarray(x, dtype="<f8").ravel()
                blobs += [struct.pack("<iq", self._where[key][1], xs.size), xs.tobytes()]
                sizes.append(xs.size)
            proc = subprocess.run([str(exe)], input=b"".join(blobs), capture_output=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{exe.name} failed: {proc.stderr.decode()}")
            flat = np.frombuffer(proc.stdout, dtype="<i8").astype(np.int64)
            parts = np.split(flat, np.cumsum(sizes)[:-1])
            for n, part in zip(numbers, parts):
                out[n] = part
        return out


def build_driver(keys: Sequence[Key], workdir: Path) -> ApFixedDriver:
    """Generate, compile (in parallel) and wrap the driver for ``keys``.

    Raises:
        RuntimeError: if g++ fails.
    """
    include = ap_types_dir()
    if include is None:
        raise RuntimeError("hls4ml's ap_types headers were not found")
    keys = list(dict.fromkeys(keys))
    workers = _cpu_count()
    n_chunks = workers * math.ceil(len(keys) / (workers * CHUNK_TARGET))
    chunk = math.ceil(len(keys) / n_chunks)
    template = TEMPLATE.read_text()
    jobs = []
    for c in range(0, len(keys), chunk):
        source = workdir / f"apfixed_driver_{c // chunk}.cpp"
        table = ",\n".join(cpp_entry(key) for key in keys[c : c + chunk])
        source.write_text(template.replace("@APFX_TABLE@", table))
        jobs.append((source, source.with_suffix(""), include))
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda job: _compile(*job), jobs))
    seconds = time.perf_counter() - start
    _build_log.append(
        f"ap_fixed driver: {len(keys)} instantiations in {len(jobs)} executables, "
        f"compiled in {seconds:.1f} s with {workers} parallel g++ ({' '.join(CXX_FLAGS)})"
    )
    return ApFixedDriver(keys, [job[1] for job in jobs], chunk)


@pytest.fixture(scope="session")
def apfixed_compiler(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[Sequence[Key]], ApFixedDriver]:
    """``build(keys) -> ApFixedDriver``, each distinct key list compiled once.

    Skips when g++ or hls4ml's ap_types headers are not available.
    """
    if shutil.which("g++") is None:
        pytest.skip("g++ not found: cannot compile the ap_fixed reference")
    if ap_types_dir() is None:
        pytest.skip("hls4ml (with its ap_types headers) is not installed")
    cache: dict[tuple[Key, ...], ApFixedDriver] = {}

    def build(keys: Sequence[Key]) -> ApFixedDriver:
        frozen = tuple(keys)
        if frozen not in cache:
            cache[frozen] = build_driver(frozen, tmp_path_factory.mktemp("apfixed"))
        return cache[frozen]

    return build


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report the driver's compile time, to keep an eye on CI cost."""
    for line in _build_log:
        terminalreporter.write_line(line)
