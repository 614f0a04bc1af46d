"""Private Keras names hgq_fpga needs (checked on Keras 3.10-3.15).

Keras 3 has no public way to (1) list a functional model's call nodes in
execution order with the tensors each consumed, (2) list every layer of a
model recursively, or (3) compute BatchNormalization's masked batch moments;
hls4ml's Keras 3 frontend uses the same attributes for (1). QKeras (qkeras-v3
1.2.1) keeps a pruned layer's mask in a private attribute (4).
"""

from __future__ import annotations

from typing import Any, Callable

import keras

__all__ = ["all_layers", "batch_moments", "call_nodes", "functional_of", "jax_training_values", "kept_on",
           "qkeras_pruning_mask"]


def functional_of(model: keras.Model) -> keras.Model:
    """The functional graph behind a model (a Sequential keeps it in ``_functional``)."""
    if isinstance(model, keras.Sequential):
        return model._functional
    return model


def call_nodes(model: keras.Model) -> list[tuple[Any, list[Any], list[Any]]]:
    """``(operation, input KerasTensors, output KerasTensors)`` of ``model``'s own
    graph, in execution order (``_nodes_by_depth``: only this model's nodes,
    whatever other models share a layer)."""
    functional = functional_of(model)
    order = []
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        for node in functional._nodes_by_depth[depth]:
            order.append((node.operation, list(node.arguments.keras_tensors), list(node.outputs)))
    return order


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of ``model``, nested ones included (``_flatten_layers``)."""
    return list(model._flatten_layers(include_self=False))


def batch_moments(layer: keras.layers.BatchNormalization, x: Any, mask: Any) -> tuple[Any, Any]:
    """Mean and variance of a batch as ``BatchNormalization`` computes them (``_moments``)."""
    return layer._moments(x, mask)


def qkeras_pruning_mask(layer: Any) -> Any:
    """The pruning mask of a QKeras layer (``_mask``), or None."""
    return getattr(layer, "_mask", None)


def jax_training_values(model: Any, variables: list[Any]) -> Callable[[], list[Any]]:
    """The current values of ``variables`` (of ``model``) on JAX, without a state sync.

    During ``fit`` Keras's JAX trainer threads the state through its steps and
    keeps the latest in ``model._jax_state`` (variables' own values are stale
    until ``jax_state_sync()``, which assigns every variable, the optimizer's
    included: most of what a read cost on the digits MLP). Read the values there
    while it is newer than the variables (not synced), else the variables'.

    Each variable's place in the state is found once per layout of the state (the
    lengths of its lists): a budget's hook changes ``non_trainable_variables``
    when it switches training steps (:attr:`~hgq_fpga.constraints.hook.CostHook.step_variables`)."""
    found: list[tuple[str, int] | None] = []  # each variable's place in the state
    layout: tuple[int, ...] | None = None  # the state's list lengths when ``found`` was made

    def values() -> list[Any]:
        nonlocal found, layout
        state = getattr(model, "_jax_state", None)
        if not state or getattr(model, "_jax_state_synced", True):
            return [v.value for v in variables]
        now = tuple(len(state.get(key) or ()) for key in ("trainable_variables", "non_trainable_variables"))
        if now != layout:
            where: dict[int, tuple[str, int]] = {}
            for key, listed in (("trainable_variables", model.trainable_variables),
                                ("non_trainable_variables", model.non_trainable_variables)):
                where.update((id(v), (key, i)) for i, v in enumerate(listed))
            found, layout = [where.get(id(v)) for v in variables], now
        return [v.value if at is None or state.get(at[0]) is None else state[at[0]][at[1]]
                for v, at in zip(variables, found)]

    return values


def kept_on(obj: Any, name: str, key: Any, make: Callable[[], Any]) -> Any:
    """``make()``, kept on the Keras layer or model ``obj`` while ``key`` stays the same (made
    again when it changes): in ``obj.__dict__``, past Keras's attribute tracking, so that it is
    never saved nor listed among ``obj``'s layers or variables. For compiled functions of a
    model's variables (``key``: the model and its variables' ids, say)."""
    held = obj.__dict__.get(name)
    if held is None or held[0] != key:
        held = obj.__dict__[name] = (key, make())
    return held[1]
