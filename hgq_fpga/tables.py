"""HTML tables and DataFrames of hgq_fpga's result objects.

One description of the columns of each result (:class:`Column` lists) serves
three outputs: the tables of ``report.html``, the ``_repr_html_`` that notebooks
show, and ``to_pandas()``. Every cell is escaped with :func:`html.escape`
(layer names are user text); numbers are right-aligned (an inline style, so a
notebook viewer that drops ``<style>`` still aligns them).

This module imports neither Keras nor matplotlib: the objects are read by
their attributes.

Example:
    >>> text = html_table([Column("layer", "layer"), Column("lut", "LUT", ".0f")],
    ...                   [{"layer": "a<b", "lut": 3.0}], total={"layer": "total", "lut": 3.0})
    >>> '<td style="padding:2px 8px">a&lt;b</td>' in text, text.count("<tr>")
    (True, 3)
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BADGE_COLOURS", "Column", "FORMAT_COLUMNS", "RESOURCE_COLUMNS", "SUMMARY_COLUMNS", "VERIFY_COLUMNS",
    "badge", "format_rows", "html_table", "key_value_table", "resource_rows", "resource_table",
    "summary_rows", "summary_table", "to_dataframe", "verify_columns", "verify_rows", "verify_table",
]

_NUM = "text-align:right;font-variant-numeric:tabular-nums"
_CELL = "padding:2px 8px"

#: badge colours: white text on these has a contrast above 4.5:1 (WCAG AA)
BADGE_COLOURS = {"ok": "#116329", "bad": "#a8201a", "none": "#545454"}


@dataclass(frozen=True)
class Column:
    """One column: the row key, the header text, and a format spec for numbers ('' for text)."""

    key: str
    title: str
    fmt: str = ""

    @property
    def numeric(self) -> bool:
        """Whether the column holds numbers (right-aligned)."""
        return bool(self.fmt)

    def cell(self, value: Any) -> str:
        """The value as escaped cell text ('–' for None)."""
        if value is None:
            return "\u2013"
        if self.fmt and isinstance(value, (int, float)):
            return html.escape(format(value, self.fmt))
        return html.escape(str(value))


def _row(columns: Sequence[Column], row: Mapping[str, Any], tag: str = "td") -> str:
    cells = []
    for c in columns:
        style = f"{_CELL};{_NUM}" if c.numeric else _CELL
        cells.append(f'<{tag} style="{style}">{c.cell(row.get(c.key))}</{tag}>')
    return "<tr>" + "".join(cells) + "</tr>"


def html_table(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]], *,
               total: Mapping[str, Any] | None = None, caption: str | None = None,
               css_class: str = "data") -> str:
    """An HTML ``<table>`` (in a ``<div>`` that scrolls it sideways when wide): ``<thead>`` of
    titles, a ``<tbody>`` row per row, ``total`` in ``<tfoot>``.

    Args:
        columns: the columns, in order.
        rows: one mapping per row, keyed by :attr:`Column.key` (missing keys show '–').
        total: the total row, or None.
        caption: text above the table (escaped).
        css_class: the table's ``class`` attribute.
    """
    head = "".join(
        f'<th scope="col" style="{_CELL};{_NUM if c.numeric else "text-align:left"}">{html.escape(c.title)}</th>'
        for c in columns)
    parts = [f'<div class="table-wrap" style="overflow-x:auto"><table class="{html.escape(css_class)}" '
             'style="border-collapse:collapse">']
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append(f"<thead><tr>{head}</tr></thead><tbody>")
    parts.extend(_row(columns, r) for r in rows)
    parts.append("</tbody>")
    if total is not None:
        parts.append(f'<tfoot class="total" style="font-weight:bold">{_row(columns, total)}</tfoot>')
    parts.append("</table></div>")  # a wide table scrolls in its box, the page keeps its width
    return "".join(parts)


def key_value_table(items: Sequence[tuple[str, Any]], *, css_class: str = "kv") -> str:
    """A two-column table of ``(name, value)`` pairs, names as row headers (both escaped)."""
    rows = "".join(
        f'<tr><th scope="row" style="{_CELL};text-align:left">{html.escape(k)}</th>'
        f'<td style="{_CELL}">{html.escape(str(v))}</td></tr>' for k, v in items)
    return f'<table class="{html.escape(css_class)}" style="border-collapse:collapse"><tbody>{rows}</tbody></table>'


def badge(ok: bool | None) -> str:
    """The verification verdict: BIT-EXACT (green), MISMATCH (red) or not verified (grey).

    The words carry the verdict; the colour only repeats it.
    """
    if ok is None:
        kind, text = "none", "not verified (pass data= or --data to verify)"
    else:
        kind, text = ("ok", "\u2714 BIT-EXACT") if ok else ("bad", "\u2718 MISMATCH")
    return (f'<span class="badge badge-{kind}" role="status" style="display:inline-block;padding:3px 10px;'
            f'border-radius:4px;color:#fff;background:{BADGE_COLOURS[kind]};font-weight:bold">'
            f"{html.escape(text)}</span>")


def to_dataframe(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> Any:
    """A ``pandas.DataFrame`` of ``rows`` with the columns' keys as its column names.

    Raises:
        ImportError: pandas is not installed.
    """
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("to_pandas needs pandas: pip install pandas") from e
    return pd.DataFrame([{c.key: r.get(c.key) for c in columns} for r in rows], columns=[c.key for c in columns])


# -- the result objects ------------------------------------------------------------------------

RESOURCE_COLUMNS = (Column("layer", "layer"), Column("ops", "ops"), Column("lut", "LUT", ".0f"),
                    Column("dsp", "DSP", "d"), Column("carry", "CARRY", "d"), Column("ebops", "EBOPs", ".0f"))


def resource_rows(report: Any) -> list[dict[str, Any]]:
    """One row per layer of a :class:`~hgq_fpga.resources.ResourceReport`."""
    return [{"layer": r.layer, "ops": ", ".join(r.ops), "lut": float(r.lut), "dsp": int(r.dsp),
             "carry": int(r.carry), "ebops": float(r.ebops)} for r in report.layers]


def resource_table(report: Any) -> str:
    """The per-layer estimate with its total row."""
    total = {"layer": "total", "ops": "", "lut": report.lut, "dsp": report.dsp, "carry": report.carry,
             "ebops": report.ebops}
    return html_table(RESOURCE_COLUMNS, resource_rows(report), total=total,
                      caption=f"Resource estimate ({report.strategy}, {report.part})")


SUMMARY_COLUMNS = (Column("layer", "layer"), Column("n_weights", "weights", "d"),
                   Column("mean_weight_bits", "mean weight bits", ".2f"),
                   Column("pruned_fraction", "pruned", ".1%"),
                   Column("mean_activation_bits", "mean activation bits", ".2f"))


def summary_rows(summary: Any) -> list[dict[str, Any]]:
    """One row per layer of a :class:`~hgq_fpga.summary.BitSummary`."""
    return [dict(r) for r in summary.layers]


def summary_table(summary: Any) -> str:
    """The bit-width summary with its total row."""
    total = {"layer": "total", "n_weights": summary.n_weights, "mean_weight_bits": summary.mean_weight_bits,
             "pruned_fraction": summary.pruned_fraction, "mean_activation_bits": summary.mean_activation_bits}
    return html_table(SUMMARY_COLUMNS, summary_rows(summary), total=total,
                      caption="Weight and activation bits per layer")


VERIFY_COLUMNS = (Column("name", "output"), Column("size", "values", "d"),
                  Column("keras_vs_emulator", "Keras \u2260 emulator", "d"),
                  Column("csim_vs_emulator", "C sim \u2260 emulator", "d"),
                  Column("first_mismatch", "first mismatch"))


def verify_columns(result: Any) -> tuple[Column, ...]:
    """:data:`VERIFY_COLUMNS`, with the RTL simulation's column for an RTL result."""
    if getattr(result, "backend", "hls4ml") != "rtl":
        return VERIFY_COLUMNS
    return tuple(Column("rtl_vs_emulator", "RTL sim \u2260 emulator", "d") if c.key == "csim_vs_emulator" else c
                 for c in VERIFY_COLUMNS)


def verify_rows(result: Any) -> list[dict[str, Any]]:
    """One row per output of a :class:`~hgq_fpga.backends.hls4ml.VerifyResult`."""
    return [{c.key: o.get(c.key) for c in verify_columns(result)} for o in result.outputs]


def verify_table(result: Any) -> str:
    """The verdict badge and the mismatch counts per output, with their total row."""
    rows = verify_rows(result)
    total = {"name": "total", "size": sum(int(r["size"] or 0) for r in rows),
             "keras_vs_emulator": sum(int(r["keras_vs_emulator"] or 0) for r in rows),
             result.firmware_key: sum(int(r[result.firmware_key] or 0) for r in rows), "first_mismatch": ""}
    times = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    caption = f"Verified {result.n_samples} samples; project: {result.project_dir or '(temporary)'}"
    caption += f"; {times}" if times else ""
    return f"<div>{badge(result.ok)}</div>" + html_table(verify_columns(result), rows, total=total, caption=caption)


FORMAT_COLUMNS = (Column("node", "node"), Column("op", "op"), Column("tensor", "tensor"),
                  Column("shape", "shape"), Column("f", "f (scale)", "d"), Column("max_bits", "max bits", "d"),
                  Column("mean_bits", "mean bits", ".2f"), Column("signed", "signed elements", "d"))


def format_rows(graph: Any) -> list[dict[str, Any]]:
    """One row per tensor an IR operation writes (:func:`hgq_fpga.build_ir`'s graph)."""
    rows = []
    for node in graph.nodes:
        for out in node.outputs:
            t = graph.tensors[out]
            row = {"node": node.name, "op": node.op, "tensor": out, "shape": str(tuple(t.shape)), "f": int(t.f)}
            if t.is_fixed:
                fmt = t.format()
                row.update(max_bits=t.bits(), mean_bits=float(fmt.bits.mean()) if fmt.bits.size else 0.0,
                           signed=int((fmt.k > 0).sum()))
            else:
                row.update(max_bits="float", mean_bits="float", signed=None)
            rows.append(row)
    return rows
