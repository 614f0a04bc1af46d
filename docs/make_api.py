"""Write docs/api.md, the API reference, from the docstrings of the public modules.

Run:  python docs/make_api.py            (rewrites docs/api.md)
      python docs/make_api.py --check    (exit 1 if docs/api.md is out of date; run by the tests)

Every name in a public module's ``__all__`` gets its signature and its
docstring, verbatim (Markdown-friendly: the docstrings use Markdown and
reStructuredText roles that read well as text).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

MODULES = [
    "hgq_fpga",
    "hgq_fpga.fixed",
    "hgq_fpga.quantizers",
    "hgq_fpga.layers",
    "hgq_fpga.calibration",
    "hgq_fpga.summary",
    "hgq_fpga.datasets",
    "hgq_fpga.ir",
    "hgq_fpga.ir.ops",
    "hgq_fpga.frontend",
    "hgq_fpga.emulator",
    "hgq_fpga.resources",
    "hgq_fpga.backends.hls4ml",
    "hgq_fpga.backends.hls4ml.limits",
    "hgq_fpga.backends.rtl",
    "hgq_fpga.constraints",
    "hgq_fpga.models",
    "hgq_fpga.sweeps",
    "hgq_fpga.sweeps.runners",
    "hgq_fpga.sweeps.folder",
    "hgq_fpga.qkeras_import",
    "hgq_fpga.report",
    "hgq_fpga.tables",
    "hgq_fpga.resources.parts",
    "hgq_fpga.diagnosis",
    "hgq_fpga.optional",
    "hgq_fpga.startup",
    "hgq_fpga.cli",
]
OUT = Path(__file__).with_name("api.md")


def _signature(obj: object) -> str:
    """The signature, with module defaults written by name (their repr holds a machine's path)."""
    try:
        text = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return re.sub(r"<module '([\w.]+)' from '[^']*'>", r"\1", text)


def _entry(module: str, name: str, obj: object) -> list[str]:
    kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "constant"
    head = f"### `{module}.{name}{_signature(obj) if kind != 'constant' else ''}`"
    if kind == "constant":
        text = f"`{name} = {obj!r}`" if isinstance(obj, (int, float, str, tuple)) else ""
        return [head, "", text, ""]
    doc = inspect.getdoc(obj) or "(no docstring)"
    lines = [head, "", f"*{kind}*", "", doc, ""]
    if inspect.isclass(obj):
        for attr, member in sorted(vars(obj).items()):
            if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                continue
            target = member.fget if isinstance(member, property) else member
            sig = "" if isinstance(member, property) else _signature(member)
            summary = (inspect.getdoc(target) or "").split("\n\n")[0].replace("\n", " ")
            lines.append(f"- `{attr}{sig}`: {summary}")
        lines.append("")
    return lines


def render() -> str:
    """The whole reference as Markdown."""
    lines = ["# API reference", "",
             "Generated from the docstrings by `python docs/make_api.py`; do not edit by hand.", ""]
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", (inspect.getdoc(module) or "").strip(), ""]
        names = getattr(module, "__all__", [])
        for name in names:
            if module_name == "hgq_fpga" and name != "__version__":
                continue  # the top level re-exports; documented where they live
            if name == "__version__":
                continue
            lines += _entry(module_name, name, getattr(module, name))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that docs/api.md is up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT} is out of date: run python docs/make_api.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
