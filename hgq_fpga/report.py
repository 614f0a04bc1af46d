"""A self-contained HTML report of a model: bits, resources, formats, verification.

``write_report(model, out_dir)`` writes ``report.html`` (plots embedded) and the
plots as PNG files next to it:

* ``weight_bits_hist.png`` -- one panel per layer with weights: the histogram of
  per-weight bit-widths (0 = pruned);
* ``weight_bits_map.png`` -- one panel per such layer: the heat map of per-weight
  bits (inputs down, outputs across; convolutions flattened to window x channels);
* ``resources.png`` -- LUTs (and DSPs) per layer from :func:`hgq_fpga.estimate`.

Example:
    >>> paths = write_report(model, "out/report", data=x_test)     # doctest: +SKIP
"""

from __future__ import annotations

import base64
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


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote: the HTML, each plot and its number of panels."""

    html: Path
    plots: dict[str, Path] = field(default_factory=dict)
    panels: dict[str, int] = field(default_factory=dict)


def _weight_bits(model: Any) -> list[tuple[str, np.ndarray]]:
    """``(layer name, per-weight bits as a 2-D array)`` for every layer with a kernel."""
    from keras import ops

    from .layers.weighted import WeightedLayerMixin

    out = []
    for layer in all_layers(model):
        if isinstance(layer, WeightedLayerMixin):
            kq = layer.kernel_quantizer
            bits = np.asarray(ops.convert_to_numpy(kq.bits(layer.kernel)), np.float64)
            bits = np.broadcast_to(bits, tuple(layer.kernel.shape))
            out.append((layer.name, bits.reshape(-1, bits.shape[-1])))
    return out


def _label(name: str, limit: int = 40) -> str:
    """A layer name as plot text: at most ``limit`` characters, ``$`` escaped (no mathtext)."""
    short = name if len(name) <= limit else name[: limit - 1] + "\u2026"
    return short.replace("$", r"\$")


def _save(fig: Any, path: Path) -> None:
    """The figure as PNG, written atomically and never through a link (:func:`hgq_fpga.files.write_file`)."""

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_file(path, buffer.getvalue(), overwrite=True)


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 4)
    return (n + cols - 1) // cols, cols


def _histograms(layers: list[tuple[str, np.ndarray]], path: Path) -> int:
    import matplotlib.pyplot as plt

    rows, cols = _grid(len(layers))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    top = int(max((b.max() for _, b in layers), default=1)) + 1
    for ax, (name, b) in zip(axes.flat, layers):
        ax.hist(b.ravel(), bins=np.arange(-0.5, top + 0.5, 1.0), color="tab:blue")
        ax.set_title(f"{_label(name)} ({np.mean(b == 0):.0%} pruned)", fontsize=9)
        ax.set_xlabel("bits")
    for ax in list(axes.flat)[len(layers):]:
        fig.delaxes(ax)
    fig.tight_layout()
    _save(fig, path)
    panels = len(fig.axes)
    plt.close(fig)
    return panels


def _heatmaps(layers: list[tuple[str, np.ndarray]], path: Path) -> int:
    import matplotlib.pyplot as plt

    rows, cols = _grid(len(layers))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    vmax = max((b.max() for _, b in layers), default=1)
    image = None
    for ax, (name, b) in zip(axes.flat, layers):
        image = ax.imshow(b, aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(_label(name), fontsize=9)
        ax.set_xlabel("output")
        ax.set_ylabel("input")
    for ax in list(axes.flat)[len(layers):]:
        fig.delaxes(ax)
    panels = len(fig.axes)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, label="bits", shrink=0.8)
    _save(fig, path)
    plt.close(fig)
    return panels


def _resources(report: Any, path: Path) -> int:
    import matplotlib.pyplot as plt

    names = [_label(r.layer, 24) for r in report.layers]
    pos = np.arange(len(names))  # by position: two names alike once shortened stay two bars
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 2), 3.2))
    ax.bar(pos, [r.lut for r in report.layers], color="tab:green", label="LUT")
    ax.set_xticks(pos, names, rotation=30, ha="right")
    ax.set_ylabel("LUTs (estimate)")
    dsp = [r.dsp for r in report.layers]
    if any(dsp):
        ax2 = ax.twinx()
        ax2.plot(pos, dsp, "o", color="tab:red", label="DSP")
        ax2.set_ylabel("DSPs")
    ax.set_title(f"{report.lut:.0f} LUTs, {report.dsp} DSPs ({report.strategy})")
    fig.tight_layout()
    _save(fig, path)
    panels = 1
    plt.close(fig)
    return panels


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _write_html(files: ReportFiles, model: Any, report: Any, graph: Any, verification: str) -> None:
    """Write ``files.html``: the summary, the estimate, the plots, the tensor formats and ``verification``."""
    from .summary import bit_summary

    summary = bit_summary(model)
    body = [
        f"<h1>{html.escape(model.name)}</h1>",
        (f"<p>{summary.n_weights} weights, mean {summary.mean_weight_bits:.2f} bits, "
         f"{summary.pruned_fraction:.1%} pruned; estimate: <b>{report.lut:.0f} LUTs, {report.dsp} DSPs</b>, "
         f"{report.ebops:.0f} EBOPs ({html.escape(report.strategy)}, {html.escape(report.part)})</p>"),
        "<h2>Resources</h2>", f"<pre>{html.escape(str(report))}</pre>", _img(files.plots["resources"]),
        "<h2>Bit-widths</h2>", f"<pre>{html.escape(str(summary))}</pre>",
        _img(files.plots["weight_bits_hist"]), _img(files.plots["weight_bits_map"]),
        "<h2>Tensor formats</h2>", f"<pre>{html.escape(str(graph))}</pre>",
        verification,
    ]
    write_file(files.html, (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(model.name)}: hgq_fpga report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
        "pre{background:#f6f6f6;padding:8px;overflow-x:auto}</style></head><body>"
        + "\n".join(body) + "</body></html>\n"
    ).encode(), overwrite=True)


def write_report(
    model: Any,
    out_dir: str | Path,
    *,
    data: Any = None,
    overwrite: bool = False,
    strategy: str = "Latency",
    part: str = "xcvu13p-flga2577-2-e",
    progress: bool = False,
) -> ReportFiles:
    """Write the report of a calibrated model into ``out_dir``.

    Args:
        data: inputs for a verification (Keras = emulator = C simulation, with
            a g++ compile); skipped when None.
        overwrite: replace an existing ``out_dir``'s report files (the folder
            is refused otherwise).
        progress: show the elapsed time of the g++ compile.
    """
    import matplotlib

    matplotlib.use("Agg")
    from .frontend.keras import build_ir
    from .resources import estimate

    out = Path(out_dir)
    if os.path.lexists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace the report")
    if out.is_symlink():
        raise FileExistsError(f"{out} is a link; the report is written only into a real folder")
    out.mkdir(parents=True, exist_ok=overwrite)  # without overwrite, a folder created meanwhile is refused
    graph = build_ir(model)
    report = estimate(model, graph=graph, strategy=strategy, part=part)
    bits = _weight_bits(model)
    files = ReportFiles(out / "report.html")
    for name, fn, arg in (("weight_bits_hist", _histograms, bits), ("weight_bits_map", _heatmaps, bits),
                          ("resources", _resources, report)):
        path = out / f"{name}.png"
        files.panels[name] = fn(arg, path)
        files.plots[name] = path
    verification = ""
    if data is not None:
        from .backends.hls4ml import verify

        result = verify(model, data, progress=progress)
        verification = f"<h2>Verification</h2><pre>{html.escape(str(result))}</pre>"
    _write_html(files, model, report, graph, verification)
    return files
