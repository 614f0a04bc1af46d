"""hls4ml configuration in hls4ml's own terms: strategy, reuse factor, per-layer settings.

hls4ml users configure a model as a whole (``HLSConfig: Model``) and layer
by layer (``HLSConfig: LayerName``, from ``config_from_keras_model(...,
granularity="name")``). hgq_fpga takes the same two levels, keyed by **the
user's layer names** (the generated code uses its own names, so the
settings are moved to those):

.. code-block:: yaml

    IOType: io_stream        # or io_parallel (the default)
    Model:
      Strategy: Latency
      ReuseFactor: 1
    LayerName:
      dense_1: {ReuseFactor: 4, Strategy: Resource}

A layer's settings reach the hls4ml layers that compute it (its dense or
convolution); quantizers and element-wise layers have no multiplier to
share. Unknown keys, unknown layer names and reuse factors hls4ml would
silently change (it picks the closest valid one) are errors that name them.

With reuse factor ``R`` a kernel of ``N`` multiplications uses ``ceil(N /
R)`` multipliers, each ``R`` times per inference: the initiation interval
and the latency grow by about ``R`` cycles. hgq_fpga's ``estimate()``
counts the fully parallel design (``R = 1``); the report says so.

Example:
    >>> parse_layer_config({"dense_1": {"ReuseFactor": 4}}, ["dense_1", "out"])
    {'dense_1': {'ReuseFactor': 4}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LAYER_KEYS", "HLS_STRATEGIES", "parse_layer_config", "read_config_file", "hls_layer_settings",
           "check_requested_reuse", "check_reuse_factors"]

#: the per-layer keys hgq_fpga passes to hls4ml
LAYER_KEYS = ("ReuseFactor", "Strategy")
#: strategies a layer may take (``distributed_arithmetic`` is model-wide)
HLS_STRATEGIES = ("Latency", "Resource")


def _reuse(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: ReuseFactor must be a whole number >= 1. Received: {value!r}")
    return value


def parse_layer_config(config: Any, layer_names: list[str]) -> dict[str, dict[str, Any]]:
    """Check a ``{layer name: {"ReuseFactor": n, "Strategy": s}}`` dict against the model's layers.

    Raises:
        ValueError: not a dict, an unknown layer name or key, or a bad value (all named).
    """
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValueError(f"layer_config must be a dict {{layer name: {{key: value}}}}. Received: {type(config).__name__}")
    unknown = sorted(str(n) for n in config if n not in layer_names)
    if unknown:
        raise ValueError(f"layer_config names layers the model does not have: {unknown}. Its layers: "
                         f"{sorted(set(layer_names))}")
    out: dict[str, dict[str, Any]] = {}
    for name, settings in config.items():
        if not isinstance(settings, dict):
            raise ValueError(f"layer_config[{name!r}] must be a dict of {list(LAYER_KEYS)}. Received: {settings!r}")
        bad = sorted(str(k) for k in settings if k not in LAYER_KEYS)
        if bad:
            raise ValueError(f"layer_config[{name!r}]: unknown keys {bad}; the keys are {list(LAYER_KEYS)} "
                             "(hls4ml's names)")
        if "ReuseFactor" in settings:
            _reuse(settings["ReuseFactor"], f"layer_config[{name!r}]")
        if "Strategy" in settings and settings["Strategy"] not in HLS_STRATEGIES:
            raise ValueError(f"layer_config[{name!r}]: Strategy must be one of {HLS_STRATEGIES}. "
                             f"Received: {settings['Strategy']!r}")
        out[name] = dict(settings)
    return out


def read_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model settings, per-layer settings)`` from a YAML or JSON file shaped like hls4ml's configuration.

    The model settings are ``Model``'s (``Strategy``, ``ReuseFactor``) and the top-level ``IOType``.

    Raises:
        ValueError: unreadable, or keys other than ``IOType``, ``Model`` and ``LayerName`` (named).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such configuration file (YAML or JSON with 'Model' and 'LayerName')")
    if p.stat().st_size > 2**20:
        raise ValueError(f"{p}: a configuration file of {p.stat().st_size} bytes; the limit is 1 MiB")
    text = p.read_text()
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # a parse error of either format
        raise ValueError(f"{p}: cannot parse ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping with 'Model' and/or 'LayerName'. Received: {type(data).__name__}")
    bad = sorted(str(k) for k in data if k not in ("IOType", "Model", "LayerName"))
    if bad:
        raise ValueError(f"{p}: unknown top-level keys {bad}; use 'IOType', 'Model' and 'LayerName' "
                         "(hls4ml's names)")
    model = data.get("Model") or {}
    if not isinstance(model, dict) or any(k not in LAYER_KEYS for k in model):
        raise ValueError(f"{p}: 'Model' takes {list(LAYER_KEYS)}. Received: {model!r}")
    if "IOType" in data:
        if data["IOType"] not in ("io_parallel", "io_stream"):
            raise ValueError(f"{p}: IOType must be io_parallel or io_stream. Received: {data['IOType']!r}")
        model = {**model, "IOType": data["IOType"]}
    return model, data.get("LayerName") or {}


def hls_layer_settings(layers: list[dict[str, Any]], origin: dict[str, str], nodes: dict[str, Any],
                       config: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """hls4ml's ``LayerName`` section: each user layer's settings on its dense/conv hls layers.

    The sums inside a table layer (a softmax's sum and broadcast, dense layers of ones) have no
    multiplier to share: they keep ReuseFactor 1 whatever the model's.
    """
    from ...ir import ops as ir

    tables = {n.layer for n in nodes.values() if isinstance(n, ir.Table)}
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        node = nodes.get(origin.get(layer["name"], ""))
        user = getattr(node, "layer", None)
        if layer["class_name"] not in ("Dense", "Conv1D", "Conv2D"):
            continue
        if user in tables:
            out[layer["name"]] = {"ReuseFactor": 1}
        elif user in config:
            out[layer["name"]] = dict(config[user])
    return out


def _kernel_shape(get: Any) -> tuple[int | None, int | None]:
    """``(n_in, n_out)`` of the matrix a dense or convolution layer multiplies by (hls4ml's count);
    ``get(attribute)`` reads the layer (an hls4ml layer's ``get_attr``, or a layer dict's ``get``)."""
    if get("n_filt") is not None and get("n_chan") is not None:
        taps = int(np.prod([get(a) or 1 for a in ("filt_height", "filt_width")]))
        return get("n_chan") * taps, get("n_filt")
    return get("n_in"), get("n_out")


def _refuse(user: str, rf: int, n_in: int | None, n_out: int | None, valid: list[int]) -> ValueError:
    return ValueError(
        f"layer {user!r}: ReuseFactor {rf} does not divide its {n_in}x{n_out} kernel the way hls4ml needs; "
        f"valid: {', '.join(map(str, valid[:24]))}{' ...' if len(valid) > 24 else ''}"
    )


def check_requested_reuse(backend: Any, layers: list[dict[str, Any]], requested: dict[str, int],
                          user: dict[str, str]) -> None:
    """Before hls4ml sees them: each reuse factor is one hls4ml accepts for its layer's kernel
    (hls4ml would print a warning under its own layer names and take the closest valid one)."""
    for d in layers:
        rf = requested.get(d["name"])
        if rf is None:
            continue
        n_in, n_out = _kernel_shape(d.get)
        valid = list(backend.get_valid_reuse_factors(n_in, n_out)) if n_in and n_out else []
        if valid and rf not in valid:
            raise _refuse(user.get(d["name"], d["name"]), rf, n_in, n_out, valid)


def check_reuse_factors(hls_model: Any, requested: dict[str, int], user: dict[str, str]) -> None:
    """After hls4ml's passes: refuse a reuse factor hls4ml replaced all the same."""
    for name, rf in requested.items():
        layer = hls_model.graph.get(name)
        if layer is None or layer.get_attr("reuse_factor") == rf:
            continue
        n_in, n_out = _kernel_shape(layer.get_attr)
        valid = hls_model.config.backend.get_valid_reuse_factors(n_in, n_out) if n_in and n_out else []
        raise _refuse(user.get(name, name), rf, n_in, n_out, list(valid))
