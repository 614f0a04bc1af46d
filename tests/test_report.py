"""The model report: plots, HTML tables, verdict, provenance, utilization, escaping, a real
browser's rendering; and the notebook forms (repr, _repr_html_, to_pandas) of the result objects."""

from __future__ import annotations

import hashlib
import html
import importlib.util
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import keras
import numpy as np
import pytest

import hgq_fpga
from hgq_fpga.backends.hls4ml import VerifyResult
from hgq_fpga.datasets import digits
from hgq_fpga.layers import QDense
from hgq_fpga.report import write_report
from hgq_fpga.resources import VendorReport, device
from hgq_fpga.resources.parts import known_devices

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_mlp.py"
LAYERS = ["dense_0", "dense_1", "dense_2", "logits"]
HOSTILE = "<script>alert(1)<script> $x$ & y"


def _example():
    spec = importlib.util.spec_from_file_location("digits_mlp_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


@pytest.fixture(scope="module")
def mlp():
    model, _ = _example().train(epochs=2)
    return model


@pytest.fixture(scope="module")
def mlp_report(mlp, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    return write_report(mlp, out)


class _Tables(HTMLParser):
    """Every ``<table>``: caption, header cells, and the cell texts of its body and foot rows;
    plus the tags seen and the ``alt`` of every image."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.tags: set[str] = set()
        self.alts: list[str | None] = []
        self._part = self._cell = None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.alts.append(dict(attrs).get("alt"))
        elif tag == "table":
            self.tables.append({"caption": "", "head": [], "body": [], "foot": []})
        elif tag in ("thead", "tbody", "tfoot"):
            self._part = tag[1:]
        elif tag == "caption":
            self._cell = "caption"
        elif tag == "tr" and self._part in ("body", "foot"):
            self.tables[-1][self._part].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            t = self.tables[-1]
            (t["head"] if self._part == "head" else t[self._part][-1]).append(self._cell.strip())
            self._cell = None
        elif tag == "caption":
            self._cell = None
        elif tag in ("thead", "tbody", "tfoot"):
            self._part = None

    def handle_data(self, data):
        if self._cell == "caption":
            self.tables[-1]["caption"] += data
        elif self._cell is not None:
            self._cell += data


def _parse(text: str) -> _Tables:
    p = _Tables()
    p.feed(text)
    return p


def _table(parsed: _Tables, caption: str) -> dict:
    found = [t for t in parsed.tables if t["caption"].startswith(caption)]
    assert len(found) == 1, [t["caption"] for t in parsed.tables]
    return found[0]


def test_digits_mlp_report(mlp, mlp_report, tmp_path):
    files = mlp_report
    n_layers = len(LAYERS)
    assert files.panels == {"weight_bits_hist": n_layers, "weight_bits_map": n_layers,
                            "activation_bits": n_layers, "resources": 1}  # one input quantizer per QDense
    for path in files.plots.values():
        assert path.exists() and path.stat().st_size > 5000
    text = files.html.read_text()
    assert text.count("data:image/png;base64,") == 4
    for name in LAYERS:
        assert name in text
    write_report(mlp, tmp_path / "report")
    with pytest.raises(FileExistsError, match="exists"):
        write_report(mlp, tmp_path / "report")


def test_report_tables_are_html_tables(mlp, mlp_report):
    text = mlp_report.html.read_text()
    parsed = _parse(text)
    assert "pre" not in parsed.tags and "<pre" not in text
    assert '<html lang="en">' in text
    assert len(parsed.alts) == 4 and all(parsed.alts)
    for caption in ("Resource estimate", "Weight and activation bits"):
        t = _table(parsed, caption)
        assert [row[0] for row in t["body"]] == LAYERS  # one row per layer ...
        assert [row[0] for row in t["foot"]] == ["total"]  # ... and the total
    resources = _table(parsed, "Resource estimate")
    assert resources["head"] == ["layer", "ops", "LUT", "DSP", "CARRY", "EBOPs"]
    report = hgq_fpga.estimate(mlp)
    assert resources["foot"][0][2] == f"{report.lut:.0f}" and resources["foot"][0][5] == f"{report.ebops:.0f}"
    assert 'style="padding:2px 8px;text-align:right' in text  # numbers right-aligned
    graph = hgq_fpga.build_ir(mlp)
    formats = _table(parsed, "Tensors of the fixed-point IR")
    assert [row[2] for row in formats["body"]] == [o for n in graph.nodes for o in n.outputs]
    assert formats["body"][0][5] == "float"  # the network's float input


def test_report_without_data_says_not_verified(mlp_report):
    text = mlp_report.html.read_text()
    assert "not verified (pass data= or --data to verify)" in text
    assert "badge-none" in text and "BIT-EXACT" not in text and mlp_report.verification is None
    assert "read it from the vendor report after <code>hgq-fpga synth</code>" in text


def test_report_shows_layer_sensitivities_and_how_to_read_them(mlp, mlp_report, tmp_path):
    from hgq_fpga.constraints import layer_sensitivities
    from hgq_fpga.datasets import digits

    assert "Not measured: pass <code>data=</code>" in mlp_report.html.read_text()
    sens = layer_sensitivities(mlp, digits().x_train[:300])
    files = write_report(mlp, tmp_path / "r", sensitivities=sens)
    table = _table(_parse(files.html.read_text()), "Layer sensitivities")
    assert [row[0] for row in table["body"]] == [r.layer for r in sens.rows] == list(LAYERS)
    assert table["head"][1:] == ["LUT saved", "predictions changed", "output change", "changed per 1k LUT saved"]
    assert "where a tighter budget should take its LUTs" in files.html.read_text()


def test_report_says_what_the_estimate_counts(mlp_report):
    import html

    from hgq_fpga.resources.estimate import COUNTS

    text = mlp_report.html.read_text()
    assert f"The estimate counts {html.escape(COUNTS['Latency'])}." in text


def test_report_provenance(mlp, tmp_path):
    keras_file = tmp_path / "model.keras"
    mlp.save(keras_file)
    text = write_report(mlp, tmp_path / "r", model_path=keras_file).html.read_text()
    assert hashlib.sha256(keras_file.read_bytes()).hexdigest() in text
    assert html.escape(str(keras_file.resolve())) in text
    for key in ("generated (UTC)", "hls4ml", "Keras backend", keras.backend.backend(), hgq_fpga.__version__):
        assert key in text


def test_report_utilization_is_the_parts_share(mlp, mlp_report):
    report = hgq_fpga.estimate(mlp)
    expected = device("xcvu13p-flga2577-2-e").utilization(lut=report.lut, dsp=report.dsp)
    assert mlp_report.utilization == expected
    util = _table(_parse(mlp_report.html.read_text()), "Utilization of xcvu13p")
    rows = {row[0]: row for row in util["body"]}
    assert rows["LUT"][1:] == [f"{report.lut:.0f}", f"{expected['lut']:.3g}", "1728000"]
    assert rows["DSP"][1:] == [str(report.dsp), f"{expected['dsp']:.3g}", "12288"]


def test_report_unknown_part_and_vendor_figures(mlp, tmp_path):
    files = write_report(mlp, tmp_path / "unknown", part="xc9zz999-unknown")
    text = files.html.read_text()
    assert files.utilization == {}
    assert "not in the device table" in text and known_devices() in text
    vendor = VendorReport(lut=5000, ff=7000, dsp=3, bram=4, latency_cycles=12, source="vivado_synth.rpt")
    files = write_report(mlp, tmp_path / "vendor", vendor_report=vendor)
    parsed = _parse(files.html.read_text())
    rows = {row[0]: row for row in _table(parsed, "Utilization of xcvu13p")["body"]}
    dev = device("xcvu13p")
    assert rows["FF"][3:5] == ["7000", f"{dev.utilization(ff=7000)['ff']:.3g}"]
    assert rows["BRAM (36 Kb)"][3:5] == ["2", f"{dev.utilization(bram36=2)['bram36']:.3g}"]  # 4 x 18 Kb
    assert "12 clock cycles" in files.html.read_text()


def test_hostile_layer_name_is_escaped(tmp_path):
    model = keras.Sequential([keras.Input((4,)), QDense(3, name=HOSTILE)], name="m&<u>")
    hgq_fpga.calibrate(model, np.random.default_rng(0).normal(size=(64, 4)))
    files = write_report(model, tmp_path / "r")
    text = files.html.read_text()
    assert "<script" not in text and "<u>" not in text
    assert html.escape(HOSTILE) in text and "m&amp;&lt;u&gt;" in text
    assert [row[0] for row in _table(_parse(text), "Resource estimate")["body"]] == [HOSTILE]


def _browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        pytest.fail("no Chromium found (chromium, chromium-browser or google-chrome): `make tools` installs it")
    return found


def test_report_renders_in_chromium(mlp_report, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1280,4000", mlp_report.html.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (4000, 1280)
    not_white = np.any(pixels < 0.98, axis=-1)
    assert not_white.mean() > 0.05
    colours = np.unique((pixels[not_white] * 15).round().astype(int), axis=0)
    assert len(colours) > 20  # text, table stripes, plots, badge: not a blank or one-colour page


def _contrast(background: str) -> float:
    """WCAG contrast ratio of white text on ``background`` (#rrggbb)."""
    c = np.array([int(background[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return 1.05 / (float(c @ [0.2126, 0.7152, 0.0722]) + 0.05)


def test_badges_are_readable():
    from hgq_fpga.tables import BADGE_COLOURS, badge

    assert all(_contrast(colour) >= 4.5 for colour in BADGE_COLOURS.values())
    assert "BIT-EXACT" in badge(True) and "MISMATCH" in badge(False) and "not verified" in badge(None)


def _small_model():
    model = keras.Sequential([keras.Input((4,)), QDense(3, name="d0"), QDense(2, name="d1")], name="small")
    hgq_fpga.calibrate(model, np.random.default_rng(1).normal(size=(64, 4)))
    return model


def test_resource_report_in_a_notebook():
    report = hgq_fpga.estimate(_small_model())
    r = repr(report)
    assert "\n" not in r and r.startswith(f"ResourceReport(lut={report.lut:.0f}, dsp={report.dsp}, ")
    assert r.endswith(f"layers=2, strategy='Latency', part='{report.part}')")
    t = _table(_parse(report._repr_html_()), "Resource estimate")
    assert [row[0] for row in t["body"]] == ["d0", "d1"] and t["foot"][0][0] == "total"
    df = report.to_pandas()
    assert list(df.columns) == ["layer", "ops", "lut", "dsp", "carry", "ebops"]
    assert list(df.layer) == ["d0", "d1"] and df.lut.sum() == pytest.approx(report.lut)
    assert "Resource estimate" in str(report)  # __str__ unchanged


def test_verify_result_in_a_notebook():
    outputs = [{"name": "y<0>", "size": 10, "keras_vs_emulator": 0, "csim_vs_emulator": 2,
                "first_mismatch": {"index": (0, 1), "emulator": 0.5, "keras": 0.5, "csim": 0.25}},
               {"name": "z", "size": 4, "keras_vs_emulator": 0, "csim_vs_emulator": 0, "first_mismatch": None}]
    result = VerifyResult(n_samples=5, outputs=outputs, seconds={"convert": 1.0})
    assert repr(result) == "VerifyResult(n_samples=5, ok=False, mismatches=2, outputs=2)"
    text = result._repr_html_()
    assert "MISMATCH" in text and "y&lt;0&gt;" in text
    t = _table(_parse(text), "Verified 5 samples")
    assert [row[0] for row in t["body"]] == ["y<0>", "z"] and t["foot"][0][:4] == ["total", "14", "0", "2"]
    df = result.to_pandas()
    assert list(df.name) == ["y<0>", "z"] and list(df.csim_vs_emulator) == [2, 0]
    exact = VerifyResult(n_samples=5, outputs=[dict(outputs[1])])
    assert "BIT-EXACT" in exact._repr_html_() and "verified 5 samples: BIT-EXACT" in str(exact)


def test_to_pandas_without_pandas_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match="to_pandas needs pandas: pip install pandas"):
        VerifyResult(n_samples=1).to_pandas()


@pytest.mark.slow
def test_report_with_verification(tmp_path):
    model, _ = _example().train(epochs=1)
    files = write_report(model, tmp_path / "r", data=digits().x_test[:100])
    text = files.html.read_text()
    assert "BIT-EXACT" in text and "badge-ok" in text and "not verified" not in text
    assert files.verification.ok
    t = _table(_parse(text), "Verified 100 samples")
    assert [row[0] for row in t["body"]] == ["logits"] and t["foot"][0][2:4] == ["0", "0"]
