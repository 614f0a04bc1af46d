"""``hgq_fpga.fixed.quantize`` against C++ ``ap_fixed`` / ``ap_ufixed``, bit for bit.

The reference is g++ compiling hls4ml's ``ap_types`` headers (fixture
``apfixed_compiler`` in conftest.py): each input double is assigned to
``ap_fixed<W, I, AP_<Q>, AP_<O>>`` (``ap_ufixed`` when unsigned) and the raw
mantissa is compared with ``quantize(x, k, i, f, Q, O) * 2**f``. Zero
mismatches are allowed.

In the hgq_fpga convention ``I = k + i`` counts the sign bit and ``f = W - I``.
Inputs are chosen in units of the LSB (``v = x * 2**f``) on binary grids, so
every double is exact:

* exhaustive: ``W = 1..8``, signed and unsigned, two integer-bit positions
  per width (``I = W``, and ``I <= 0`` or ``I > W``, i.e. ``f < 0``), all 28 modes;
  every multiple of 1/8 LSB over four times the format's range in both
  directions (so every grid value, every tie and every rounding case, wrap
  and saturation on both sides), plus tiny and huge values;
* random: wider formats (``W`` up to 40, random ``I``), all 28 modes, random
  values on fine grids including ties, range edges and values far out of range,
  quantized with per-element format arrays in one call.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hgq_fpga.fixed import OverflowMode, RoundingMode, quantize, to_mantissa

SEED = 20240521
MODES = [(q.value, o.value) for q, o in itertools.product(RoundingMode, OverflowMode)]
REPO_ROOT = Path(__file__).resolve().parents[2]


def int_bit_positions(width: int) -> tuple[int, int]:
    """Two ``I`` per width: ``I = W`` and, alternating, ``I <= 0`` or ``I > W`` (``f < 0``).

    Odd widths get ``I = 0, -1, -2, -3``; even widths ``I = W + 2``. The random
    formats add ``0 < I < W``.
    """
    return width, (width + 2 if width % 2 == 0 else -(width // 2))


EXHAUSTIVE_FORMATS = [
    (width, int_bits, signed)
    for signed in (True, False)
    for width in range(1, 9)
    for int_bits in int_bit_positions(width)
]


def random_formats(count: int = 8) -> list[tuple[int, int, bool]]:
    """Wide formats ``(W, I, signed)``: W in 9..40 (40 always present), random I."""
    rng = np.random.default_rng(SEED)
    formats = []
    for n in range(count):
        width = 40 if n < 2 else int(rng.integers(9, 41))
        int_bits = int(rng.integers(-8, width + 9))
        formats.append((width, int_bits, n % 2 == 0))
    return formats


RANDOM_FORMATS = random_formats()
ALL_KEYS = [
    (w, i, s, q, o) for (w, i, s) in EXHAUSTIVE_FORMATS + RANDOM_FORMATS for (q, o) in MODES
]


def kif(width: int, int_bits: int, signed: bool) -> tuple[int, int, int]:
    """hgq_fpga ``(k, i, f)`` of the C++ type ``ap_[u]fixed<W, I>``."""
    k = int(signed)
    return k, int_bits - k, width - int_bits


def mantissa_range(width: int, signed: bool) -> tuple[int, int]:
    """Smallest and largest mantissa of a ``width``-bit (un)signed type."""
    if signed:
        return -(2 ** (width - 1)), 2 ** (width - 1) - 1
    return 0, 2**width - 1


def exhaustive_lsb_values(width: int) -> np.ndarray:
    """Every multiple of 1/8 in ``[-2**(W+2), 2**(W+2)]``, plus tiny and huge values.

    In LSB units; ``2**(W+2)`` is four times the unsigned and eight times the
    signed range.
    """
    span = 2 ** (width + 2)
    grid = np.arange(-8 * span, 8 * span + 1, dtype=np.float64) / 8.0
    far = np.array([2.0**-30, 2.0**20 + 0.375, 2.0**35 + 0.5, 2.0**49, 2.0**49 + 0.5])
    return np.concatenate([grid, far, -far])


def random_lsb_values(width: int, signed: bool, rng: np.random.Generator) -> np.ndarray:
    """Random values in LSB units, all exact doubles with ``|v| < 2**51``.

    Uniform values on grids ``2**-g`` (g <= 6) over four times the range,
    exact ties, the neighbourhood of the range edges and of the wrap-around
    points, and log-uniform values far out of range.
    """
    span = 2 ** (width + 2)
    g = rng.integers(0, 7, size=2000)
    uniform = rng.integers(-span * 2**g, span * 2**g + 1) / 2.0**g
    ties = rng.integers(-span, span, size=500) + 0.5
    lo, hi = mantissa_range(width, signed)
    edges = np.array([lo, hi, 2**width, -(2**width), 2 ** (width + 1), -(2 ** (width - 1))])
    steps = np.array([-1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
    near_edges = (edges[:, None] + steps[None, :]).ravel()
    sign = rng.choice([-1.0, 1.0], size=1000)
    far = sign * rng.integers(1, 2**20, size=1000) * np.exp2(rng.integers(-30, 32, size=1000))
    return np.concatenate([uniform, ties, near_edges, far])


def first_mismatches(x: np.ndarray, cpp: np.ndarray, py: np.ndarray, count: int = 5) -> str:
    """A readable list of the first few differing inputs."""
    bad = np.flatnonzero(cpp != py)[:count]
    return ", ".join(f"x={float(x[n])!r}: ap_fixed {cpp[n]} vs quantize {py[n]}" for n in bad)


def assert_same_mantissas(label: str, x: np.ndarray, cpp: np.ndarray, py: np.ndarray) -> None:
    """Fail with the first mismatches unless ``cpp`` and ``py`` are identical."""
    n_bad = int(np.count_nonzero(cpp != py))
    assert n_bad == 0, f"{label}: {n_bad}/{x.size} mismatches; {first_mismatches(x, cpp, py)}"


@pytest.fixture(scope="module")
def driver(apfixed_compiler):
    """The compiled reference for every key of this module (one g++ build)."""
    return apfixed_compiler(ALL_KEYS)


def cpp_label(width: int, int_bits: int, signed: bool, rounding: str, overflow: str) -> str:
    """The C++ type, e.g. ``ap_ufixed<4,2,RND,SAT>``."""
    return f"ap_{'' if signed else 'u'}fixed<{width},{int_bits},{rounding},{overflow}>"


def random_inputs() -> list[np.ndarray]:
    """Inputs for each of :data:`RANDOM_FORMATS`, seeded per format."""
    inputs = []
    for width, int_bits, signed in RANDOM_FORMATS:
        rng = np.random.default_rng([SEED, width, int_bits + 64, int(signed)])
        f = kif(width, int_bits, signed)[2]
        inputs.append(random_lsb_values(width, signed, rng) * 2.0**-f)
    return inputs


@pytest.mark.slow
@pytest.mark.parametrize("width, int_bits, signed", EXHAUSTIVE_FORMATS)
def test_exhaustive_small_widths(driver, width: int, int_bits: int, signed: bool) -> None:
    """All 28 modes, every 1/8-LSB point over 4x the range: identical mantissas."""
    k, i, f = kif(width, int_bits, signed)
    x = exhaustive_lsb_values(width) * 2.0**-f
    keys = [(width, int_bits, signed, q, o) for q, o in MODES]
    for key, cpp in zip(keys, driver.mantissas([(key, x) for key in keys])):
        py = to_mantissa(quantize(x, k, i, f, key[3], key[4]), f)
        assert_same_mantissas(cpp_label(*key), x, cpp, py)


@pytest.mark.slow
@pytest.mark.parametrize("rounding, overflow", MODES)
def test_random_wide_formats(driver, rounding: str, overflow: str) -> None:
    """Random values for W up to 40; Python quantizes all formats in one per-element call."""
    xs = random_inputs()
    keys = [(w, i, s, rounding, overflow) for (w, i, s) in RANDOM_FORMATS]
    cpp_all = driver.mantissas(list(zip(keys, xs)))
    sizes = [x.size for x in xs]
    k, i, f = np.repeat([kif(*fmt) for fmt in RANDOM_FORMATS], sizes, axis=0).T
    py = to_mantissa(quantize(np.concatenate(xs), k, i, f, rounding, overflow), f)
    py_all = np.split(py, np.cumsum(sizes)[:-1])
    for key, x, cpp, py_part in zip(keys, xs, cpp_all, py_all):
        assert_same_mantissas(cpp_label(*key), x, cpp, py_part)


def group_modes(labels: list[tuple[str, str]]) -> set[frozenset[tuple[str, str]]]:
    """Partition :data:`MODES` into classes with equal labels."""
    classes: dict[object, set[tuple[str, str]]] = {}
    for mode, label in zip(MODES, labels):
        classes.setdefault(label, set()).add(mode)
    return {frozenset(c) for c in classes.values()}


def unsigned_mode_label(rounding: str, overflow: str) -> tuple[str, str]:
    """Which modes coincide for ``ap_ufixed``.

    Saturating modes send every negative result to 0, so rounding modes that
    differ only below zero coincide; ``SAT_SYM`` is ``SAT`` for unsigned.
    """
    if overflow == "WRAP":
        return rounding, overflow
    same = {"TRN_ZERO": "TRN", "RND_INF": "RND", "RND_MIN_INF": "RND_ZERO"}
    return same.get(rounding, rounding), "SAT" if overflow == "SAT_SYM" else overflow


@pytest.mark.slow
@pytest.mark.parametrize("signed", [True, False])
def test_reference_distinguishes_modes(driver, signed: bool) -> None:
    """The C++ results really depend on the mode, so the comparison is not vacuous.

    For a 4-bit signed type all 28 modes differ on the exhaustive inputs; for
    unsigned they fall into the 15 classes of :func:`unsigned_mode_label`.
    """
    x = exhaustive_lsb_values(4)
    results = driver.mantissas([((4, 4, signed, q, o), x) for q, o in MODES])
    expected = MODES if signed else [unsigned_mode_label(q, o) for q, o in MODES]
    assert group_modes([r.tobytes() for r in results]) == group_modes(expected)


ZERO_WIDTH_FORMATS = [(0, 0, 0), (1, -1, 0), (0, -3, 2), (1, 2, -5), (0, -10, 4), (1, -4, 1)]


@pytest.mark.parametrize("rounding, overflow", MODES)
def test_zero_width_is_constant_zero(rounding: str, overflow: str) -> None:
    """``W = k + i + f <= 0`` has no C++ type; such a format holds only 0.

    Checked per element, next to a normal format that must stay unaffected.
    """
    rng = np.random.default_rng(SEED)
    x = np.concatenate([rng.integers(-(2**20), 2**20, size=400) / 8.0, [0.5, -0.5, 1e9, -1e9]])
    for k, i, f in ZERO_WIDTH_FORMATS:
        q = quantize(x, k, i, f, rounding, overflow)
        assert np.all(q == 0.0), f"(k, i, f) = {(k, i, f)} gave {q[q != 0][:5]}"
    mixed_k = np.where(np.arange(x.size) % 2 == 0, 0, 1)
    mixed = quantize(x, mixed_k, np.where(mixed_k == 0, -2, 3), 1, rounding, overflow)
    normal = quantize(x, 1, 3, 1, rounding, overflow)
    assert np.all(mixed[0::2] == 0.0)
    np.testing.assert_array_equal(mixed[1::2], normal[1::2])


FRAMEWORKS = ("keras", "tensorflow", "torch", "jax")
STUB_PARENT = (
    "import sys, types\n"
    "parent = types.ModuleType('hgq_fpga')\n"
    "parent.__path__ = [sys.argv[1] + '/hgq_fpga']\n"
    "sys.modules['hgq_fpga'] = parent\n"
)


def frameworks_loaded_by(preamble: str) -> list[str]:
    """Deep-learning modules present after ``preamble`` + ``import hgq_fpga.fixed``.

    Runs in a fresh interpreter (this process may have loaded Keras already).
    """
    code = (
        preamble
        + "import sys, hgq_fpga.fixed\n"
        + f"print(' '.join(m for m in {FRAMEWORKS!r} if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(REPO_ROOT)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_fixed_subpackage_loads_no_framework() -> None:
    """The modules of ``hgq_fpga.fixed`` themselves need numpy only.

    The parent package is stubbed, so its ``__init__`` does not run.
    """
    assert frameworks_loaded_by(STUB_PARENT) == []


def test_import_hgq_fpga_fixed_loads_no_framework() -> None:
    """A plain ``import hgq_fpga.fixed`` (parent ``__init__`` included) loads no Keras."""
    assert frameworks_loaded_by("") == []
