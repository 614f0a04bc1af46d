"""Access to the HLS templates in ``hls_templates/`` (shipped as
``hgq_fpga.hls_templates``), filled by named ``{{placeholders}}``.

Example:
    >>> "hls_templates" in read_template("README.md")
    True
    >>> render_text("int {{name}};", name="x")
    'int x;'
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

__all__ = ["template_dir", "list_templates", "read_template", "render_text", "render", "apply_patch"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def template_dir() -> Traversable:
    """The installed template directory."""
    return resources.files("hgq_fpga.hls_templates")


def list_templates() -> list[str]:
    """Names of the template files (no Python modules)."""
    return sorted(
        p.name for p in template_dir().iterdir() if p.is_file() and not p.name.endswith((".py", ".pyc"))
    )


def read_template(name: str) -> str:
    """The text of template ``name``.

    Raises:
        FileNotFoundError: naming the available templates.
    """
    path = template_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"no HLS template {name!r}; available: {', '.join(list_templates())}"
        )
    return path.read_text(encoding="utf-8")


def render_text(text: str, **values: str) -> str:
    """Fill ``{{name}}`` placeholders; every placeholder must be given and used.

    Raises:
        KeyError: for a placeholder without a value, or a value without a placeholder.
    """
    wanted = set(_PLACEHOLDER.findall(text))
    missing, unused = wanted - values.keys(), values.keys() - wanted
    if missing or unused:
        raise KeyError(f"template placeholders missing: {sorted(missing)}, unused values: {sorted(unused)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def render(name: str, **values: str) -> str:
    """Read template ``name`` and fill its placeholders (see :func:`render_text`)."""
    return render_text(read_template(name), **values)


def _rules(name: str) -> list[tuple[str, str, int]]:
    """``(old, new, count)`` rules of a patch template (``count`` -1: every occurrence)."""
    rules: list[tuple[str, str, int]] = []
    pending: tuple[str, int] | None = None
    for line in read_template(name).splitlines():
        key, _, value = line.partition(": ")
        value = value.replace("\\n", "\n")
        if key in ("replace", "once") and pending is None:
            pending = (value, -1 if key == "replace" else 1)
        elif key == "with" and pending is not None:
            rules.append((pending[0], value, pending[1]))
            pending = None
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"patch template {name!r}: unexpected line {line!r}")
    return rules


def apply_patch(name: str, text: str) -> str:
    """Apply the ``replace:``/``once:`` -> ``with:`` rules of patch template ``name`` to ``text``.

    Example:
        >>> "std::vector<double>" in apply_patch("exact_testbench.txt", "std::vector<float> in;")
        True
    """
    for old, new, count in _rules(name):
        text = text.replace(old, new, count)
    return text
