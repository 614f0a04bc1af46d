"""A self-contained HTML report of a model: verdict, resources, bits, formats, verification.

``write_report(model, out_dir)`` writes ``report.html`` (plots embedded, tables as
HTML tables) and the plots as PNG files next to it:

* ``weight_bits_hist.png`` -- one panel per layer with weights: the histogram of
  per-weight bit-widths (0 = pruned);
* ``weight_bits_map.png`` -- one panel per such layer: the heat map of per-weight
  bits (inputs down, outputs across; convolutions flattened to window x channels);
* ``activation_bits.png`` -- one panel per activation quantizer: its bits per
  element (a histogram when it has many elements);
* ``resources.png`` -- LUTs (and DSPs) per layer from :func:`hgq_fpga.estimate`.

The page opens with the verification verdict (BIT-EXACT, MISMATCH or not
verified), the provenance (date, versions, model file and its SHA-256), and the
utilization of the chosen part; the latency is a vendor figure, shown when a
:class:`~hgq_fpga.resources.VendorReport` is passed.

Example:
    >>> paths = write_report(model, "out/report", data=x_test)     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .compat.keras import all_layers
from .files import write_file

__all__ = ["ReportFiles", "write_report"]

#: Okabe-Ito colours (distinct under every common colour-vision deficiency)
BLUE, ORANGE, GREEN = "#0072B2", "#D55E00", "#009E73"

#: an activation quantizer with at most this many elements is drawn one bar per element
BAR_LIMIT = 128


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote.

    Attributes:
        html: the report page.
        plots: plot name -> PNG path.
        panels: plot name -> number of panels drawn.
        utilization: percent of the part per estimated resource (``lut``, ``dsp``);
            empty for a part not in :data:`hgq_fpga.resources.parts.DEVICES`.
        verification: the :class:`~hgq_fpga.backends.hls4ml.VerifyResult`, or None
            when no data were given.
    """

    html: Path
    plots: dict[str, Path] = field(default_factory=dict)
    panels: dict[str, int] = field(default_factory=dict)
    utilization: dict[str, float] = field(default_factory=dict)
    verification: Any = None


# -- what is plotted -------------------------------------------------------------------------------

def _weight_bits(model: Any) -> list[tuple[str, np.ndarray, str]]:
    """``(layer name, per-weight bits as a 2-D array, what its rows are)`` for every layer with a
    kernel (a convolution's rows are its window positions x input channels)."""
    from keras import ops

    from .layers.weighted import WeightedLayerMixin

    out = []
    for layer in all_layers(model):
        if isinstance(layer, WeightedLayerMixin):
            kq = layer.kernel_quantizer
            bits = np.asarray(ops.convert_to_numpy(kq.bits(layer.kernel)), np.float64)
            bits = np.broadcast_to(bits, tuple(layer.kernel.shape))
            rows = "input" if bits.ndim <= 2 else "window \u00d7 channel"
            out.append((layer.name, bits.reshape(-1, bits.shape[-1]), rows))
    return out


def _activation_bits(model: Any) -> list[tuple[str, np.ndarray]]:
    """``(layer: quantizer, bits per element)`` for every built activation quantizer."""
    from keras import ops

    from .calibration import iter_quantizers
    from .quantizers import ActivationQuantizer

    out = []
    for layer, q in iter_quantizers(model):
        if isinstance(q, ActivationQuantizer) and q.built:
            bits = np.asarray(ops.convert_to_numpy(q.bits()), np.float64).ravel()
            out.append((f"{layer.name}: {q.name}", bits))
    return out


# -- plots -----------------------------------------------------------------------------------------

def _label(name: str, limit: int = 40) -> str:
    """A layer name as plot text: at most ``limit`` characters, ``$`` escaped (no mathtext)."""
    short = name if len(name) <= limit else name[: limit - 1] + "\u2026"
    return short.replace("$", r"\$")


def _save(fig: Any, path: Path) -> int:
    """The figure as PNG, written atomically and never through a link (:func:`hgq_fpga.files.write_file`);
    returns its number of data panels (colorbars not counted) and closes it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_file(path, buffer.getvalue(), overwrite=True)
    panels = sum(1 for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.has_data())
    plt.close(fig)
    return panels


def _panels(n: int, width: float, height: float, cols: int = 4) -> tuple[Any, list[Any]]:
    """A constrained-layout figure with ``n`` panels (a note when ``n`` is 0); unused cells removed."""
    import matplotlib.pyplot as plt

    cols = max(1, min(n, cols))
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 0.8, height * rows), squeeze=False,
                             layout="constrained")
    flat = list(axes.flat)
    for ax in flat[max(n, 1):]:
        fig.delaxes(ax)
    if n == 0:
        flat[0].set_axis_off()
        flat[0].text(0.5, 0.5, "nothing to plot", ha="center", va="center")
    return fig, flat[:n]


def _integer_ticks(ax: Any, nbins: int = 5) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=nbins, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=nbins, integer=True))


def _histograms(layers: list[tuple[str, np.ndarray, str]], path: Path) -> int:
    fig, axes = _panels(len(layers), 3.3, 2.7)
    top = int(max((b.max() for _, b, _ in layers), default=1)) + 1
    for ax, (name, b, _) in zip(axes, layers):
        ax.hist(b.ravel(), bins=np.arange(-0.5, top + 0.5, 1.0), color=BLUE)
        ax.set_title(f"{_label(name)}\n{b.size} kernel weights, {np.mean(b == 0):.0%} pruned", fontsize=9)
        ax.set_xlabel("bits")
        ax.set_ylabel("weights")
        _integer_ticks(ax)
    return _save(fig, path)


def _heatmaps(layers: list[tuple[str, np.ndarray, str]], path: Path) -> int:
    import matplotlib

    fig, axes = _panels(len(layers), 3.3, 3.1)
    vmax = int(max((b.max() for _, b, _ in layers), default=1))
    cmap = matplotlib.colormaps["cividis"].resampled(vmax + 1)  # one colour per bit count
    image = None
    for ax, (name, b, rows) in zip(axes, layers):
        image = ax.imshow(b, aspect="auto", cmap=cmap, vmin=-0.5, vmax=vmax + 0.5, interpolation="nearest")
        what = "inputs" if rows == "input" else "window\u00d7channel"
        ax.set_title(f"{_label(name)}\n{b.shape[0]} {what} \u00d7 {b.shape[1]} outputs", fontsize=9)
        ax.set_xlabel("output")
        ax.set_ylabel(rows)
        _integer_ticks(ax, 4)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, location="right", label="bits", shrink=0.9, aspect=30)
        bar.locator = matplotlib.ticker.MaxNLocator(integer=True)
        bar.update_ticks()
    return _save(fig, path)


def _activations(quantizers: list[tuple[str, np.ndarray]], path: Path) -> int:
    fig, axes = _panels(len(quantizers), 3.3, 2.7)
    for ax, (name, b) in zip(axes, quantizers):
        if b.size <= BAR_LIMIT:
            ax.bar(np.arange(b.size), b, width=1.0, color=GREEN)
            ax.set_xlabel("element")
            ax.set_ylabel("bits")
        else:
            ax.hist(b, bins=np.arange(-0.5, b.max() + 1.5, 1.0), color=GREEN)
            ax.set_xlabel("bits")
            ax.set_ylabel("elements")
        ax.set_title(f"{_label(name)}\n{b.size} elements, mean {b.mean():.2f} bits", fontsize=9)
        _integer_ticks(ax)
    return _save(fig, path)


def _resources(report: Any, path: Path) -> int:
    import matplotlib.pyplot as plt

    names = [_label(r.layer, 24) for r in report.layers]
    pos = np.arange(len(names))  # by position: two names alike once shortened stay two bars
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names) + 2.5), 3.4), layout="constrained")
    ax.bar(pos, [r.lut for r in report.layers], color=BLUE, label="LUT")
    ax.set_xticks(pos, names, rotation=30, ha="right")
    ax.set_ylabel("LUTs (estimate)")
    dsp = [r.dsp for r in report.layers]
    if any(dsp):
        ax2 = ax.twinx()
        ax2.plot(pos, dsp, "D", color=ORANGE, label="DSP")
        ax2.set_ylabel("DSPs")
    ax.set_title(f"{report.lut:.0f} LUTs, {report.dsp} DSPs ({report.strategy})", fontsize=10)
    return min(_save(fig, path), 1)


PLOTS = (("weight_bits_hist", "Histograms of the per-weight bit-widths, one panel per layer"),
         ("weight_bits_map", "Heat maps of the per-weight bit-widths (inputs down, outputs across)"),
         ("activation_bits", "Bit-widths of every activation quantizer, per element"),
         ("resources", "Estimated LUTs (and DSPs) per layer"))


# -- the page --------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:1em auto;
 padding:0 1em;color:#1a1a1a;background:#fff;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
caption{text-align:left;font-weight:600;padding:.2em 0;color:#333}
th,td{border-bottom:1px solid #ddd;padding:3px 8px} thead th{background:#eef1f5;border-bottom:2px solid #999}
tbody tr:nth-child(even){background:#f7f8fa} tfoot td{border-top:2px solid #999}
table.kv th{background:#f7f8fa;font-weight:600}
.note{color:#444;font-size:.92em} .headline{font-size:1.05em}
code{background:#f2f2f2;padding:0 3px;border-radius:3px}
"""


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _provenance(model_path: str | Path | None, strategy: str, part: str) -> list[tuple[str, str]]:
    """Date, versions, Keras backend and, when given, the model file and its SHA-256."""
    import keras

    from . import __version__

    items = [("generated (UTC)", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
             ("hgq_fpga", __version__), ("hls4ml", _version("hls4ml")), ("Keras", _version("keras")),
             ("numpy", _version("numpy")), ("Keras backend", keras.backend.backend()),
             ("strategy", strategy), ("part", part)]
    if model_path is not None:
        p = Path(model_path)
        digest = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        items += [("model file", str(p.resolve())), ("model SHA-256", digest.hexdigest())]
    return items


def _utilization(report: Any, vendor: Any, part: str) -> tuple[str, dict[str, float]]:
    """The utilization table (estimate, and the vendor figures when given) and the estimate's percents."""
    from .resources import device
    from .resources.parts import known_devices
    from .tables import Column, html_table

    dev = device(part)
    estimated = {"lut": report.lut, "dsp": report.dsp}
    used = dev.utilization(**estimated) if dev is not None else {}
    vendor_used = {}
    if vendor is not None:
        vendor_used = {"lut": vendor.lut, "ff": vendor.ff, "dsp": vendor.dsp,
                       "bram36": None if vendor.bram is None else vendor.bram / 2}
    rows = []
    for key, title in (("lut", "LUT"), ("ff", "FF"), ("dsp", "DSP"), ("bram36", "BRAM (36 Kb)")):
        v = vendor_used.get(key)
        rows.append({"resource": title, "estimate": estimated.get(key), "estimate_pct": used.get(key),
                     "vendor": v, "available": getattr(dev, key, None),
                     "vendor_pct": dev.utilization(**{key: v})[key] if dev is not None and v is not None else None})
    columns = [Column("resource", "resource"), Column("estimate", "estimate", ".0f"),
               Column("estimate_pct", "estimate, % of part", ".3g")]
    if vendor is not None:
        columns += [Column("vendor", "vendor", ".0f"), Column("vendor_pct", "vendor, % of part", ".3g")]
    columns.append(Column("available", "available", "d"))
    caption = f"Utilization of {dev.name} ({dev.family})" if dev is not None else f"Utilization: {part}"
    text = html_table(columns, rows, caption=caption)
    if dev is None:
        text += (f'<p class="note">The part {html.escape(part)} is not in the device table, so no utilization '
                 f"is computed. Known devices: {html.escape(known_devices())}.</p>")
    return text, used


def _latency(vendor: Any) -> str:
    if vendor is None or vendor.latency_cycles is None:
        return ("<p><b>Latency:</b> not estimated: the hls4ml estimate does not compute latency; "
                "read it from the vendor report after <code>hgq-fpga synth</code>.</p>")
    return (f"<p><b>Latency:</b> {int(vendor.latency_cycles)} clock cycles "
            f"(vendor report: {html.escape(str(vendor.source))}).</p>")


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _headline(model: Any, summary: Any, report: Any, verification: Any) -> str:
    from .tables import badge

    ok = None if verification is None else bool(verification.ok)
    return (f'<h1>{html.escape(model.name)}</h1><p class="headline">{badge(ok)}</p>'
            f"<p>{summary.n_weights} weights, mean {summary.mean_weight_bits:.2f} bits, "
            f"{summary.pruned_fraction:.1%} pruned; estimate: <b>{report.lut:.0f} LUTs, {report.dsp} DSPs</b>, "
            f"{report.ebops:.0f} EBOPs ({html.escape(report.strategy)}, {html.escape(report.part)})</p>")


def _page(files: ReportFiles, model: Any, report: Any, graph: Any, sections: dict[str, str]) -> str:
    """The report's HTML: the headline and verdict, then the sections of ``sections``."""
    from .resources.estimate import NOT_MODELLED
    from .summary import bit_summary
    from .tables import FORMAT_COLUMNS, format_rows, html_table, resource_table, summary_table, verify_table

    summary = bit_summary(model)
    img = {name: _img(files.plots[name], alt) for name, alt in PLOTS}
    verification = files.verification
    body = [
        _headline(model, summary, report, verification),
        "<h2>Provenance</h2>", sections["provenance"],
        "<h2>Resources</h2>", resource_table(report),
        f'<p class="note">The estimate counts {html.escape(report.what_it_counts)}. It '
        f'{html.escape(NOT_MODELLED)}.</p>',
        sections["utilization"], sections["latency"], img["resources"],
        "<h3>Layer sensitivities</h3>", sections["sensitivities"],
        "<h2>Bit-widths</h2>", summary_table(summary),
        img["weight_bits_hist"], img["weight_bits_map"],
        "<h3>Activations</h3>", img["activation_bits"],
        "<h2>Tensor formats</h2>",
        html_table(FORMAT_COLUMNS, format_rows(graph), caption="Tensors of the fixed-point IR"),
        "<h2>Verification</h2>",
        verify_table(verification) if verification is not None else
        '<p class="note">Not verified: pass <code>data=</code> (or <code>--data</code>) to compare Keras, '
        "the emulator and the C simulation bit for bit.</p>",
    ]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(model.name)}: hgq_fpga report</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def _measure_sensitivities(model: Any, data: Any, strategy: str, part: str) -> Any:
    from .constraints.sensitivity import layer_sensitivities

    return layer_sensitivities(model, data, strategy=strategy, part=part)


def _sensitivities(sensitivities: Any) -> str:
    """The sensitivity table and how to read it, or how to get one."""
    if sensitivities is None:
        return ('<p class="note">Not measured: pass <code>data=</code> (or <code>--data</code>) to see what one bit '
                "less in each layer saves and what it changes.</p>")
    return (sensitivities._repr_html_() +
            '<p class="note">Each layer\'s weights one fractional bit shorter, alone: the LUTs that saves, and the '
            "share of predictions (argmax of the emulated firmware) that change. A layer with a low "
            "<em>changed per 1k LUT saved</em> is where a tighter budget should take its LUTs; a high one is "
            "where bits buy accuracy.</p>")


def _prepare(out_dir: str | Path, overwrite: bool) -> Path:
    out = Path(out_dir)
    if os.path.lexists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace the report")
    if out.is_symlink():
        raise FileExistsError(f"{out} is a link; the report is written only into a real folder")
    out.mkdir(parents=True, exist_ok=overwrite)  # without overwrite, a folder created meanwhile is refused
    return out


def write_report(
    model: Any,
    out_dir: str | Path,
    *,
    data: Any = None,
    overwrite: bool = False,
    strategy: str = "Latency",
    part: str = "xcvu13p-flga2577-2-e",
    progress: bool = False,
    vendor_report: Any = None,
    model_path: str | Path | None = None,
    sensitivities: Any = None,
) -> ReportFiles:
    """Write the report of a calibrated model into ``out_dir``.

    Args:
        data: inputs for a verification (Keras = emulator = C simulation, with
            a g++ compile); skipped when None (the report then says "not verified").
        overwrite: replace an existing ``out_dir``'s report files (the folder
            is refused otherwise).
        strategy, part: the estimate's hls4ml strategy and FPGA part (the part
            also sets the utilization's denominators).
        progress: show the elapsed time of the g++ compile.
        vendor_report: a :class:`~hgq_fpga.resources.VendorReport` of the built
            project: its resources and latency are shown next to the estimate.
        model_path: the model file, named in the report with its SHA-256.
        sensitivities: layer sensitivities to show (e.g. ``budget.result.sensitivities``);
            default: measured on ``data`` when it is given
            (:func:`~hgq_fpga.constraints.layer_sensitivities`).
    """
    import matplotlib

    matplotlib.use("Agg")
    from .frontend.keras import build_ir
    from .resources import estimate
    from .tables import key_value_table

    out = _prepare(out_dir, overwrite)
    graph = build_ir(model)
    report = estimate(model, graph=graph, strategy=strategy, part=part)
    bits = _weight_bits(model)
    files = ReportFiles(out / "report.html")
    for name, fn, arg in (("weight_bits_hist", _histograms, bits), ("weight_bits_map", _heatmaps, bits),
                          ("activation_bits", _activations, _activation_bits(model)),
                          ("resources", _resources, report)):
        files.plots[name] = out / f"{name}.png"
        files.panels[name] = fn(arg, files.plots[name])
    if data is not None:
        from .backends.hls4ml import verify

        files.verification = verify(model, data, progress=progress)
    if sensitivities is None and data is not None:
        sensitivities = _measure_sensitivities(model, data, strategy, part)
    table, files.utilization = _utilization(report, vendor_report, part)
    sections = {"provenance": key_value_table(_provenance(model_path, strategy, part)),
                "utilization": table, "latency": _latency(vendor_report), "sensitivities": _sensitivities(sensitivities)}
    write_file(files.html, _page(files, model, report, graph, sections).encode(), overwrite=True)
    return files
