"""The training-time link between a budget callback and the quantized layers.

A :class:`CostHook` is attached to every layer with weights (never saved with
the model). In each training step the layer

* adds ``weight * scale * luts`` to the loss, where ``luts`` is its
  differentiable LUT estimate (:mod:`hgq_fpga.quantizers.cost`) and ``scale``
  is ``rho / budget`` (``rho`` calibrates the differentiable form to the exact
  estimate);
* scales the task loss's gradient on its bits by ``task_share``;
* adds ``luts`` to ``acc``, which the callback reads after each batch.

The three are variables, so the callback changes them between steps without
retracing the training function.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from ..compat.keras import all_layers

__all__ = ["CostHook", "attach", "detach", "hooked_layers"]


class CostHook:
    """Variables shared by the hooked layers (see the module docstring)."""

    def __init__(self, scale: float) -> None:
        self.weight = keras.Variable(0.0, trainable=False, dtype="float32", name="budget_weight")
        self.task_share = keras.Variable(1.0, trainable=False, dtype="float32", name="budget_task_share")
        self.scale = keras.Variable(float(scale), trainable=False, dtype="float32", name="budget_scale")
        self.acc = keras.Variable(0.0, trainable=False, dtype="float32", name="budget_acc")

    def record(self, luts: Any) -> None:
        """Accumulate a layer's differentiable LUTs for the current step."""
        self.acc.assign_add(ops.cast(ops.stop_gradient(luts), "float32"))

    def loss(self, luts: Any) -> Any:
        """The layer's cost term: ``weight * scale * luts``."""
        return ops.cast(self.weight * self.scale, luts.dtype) * luts

    def take(self) -> float:
        """The accumulated LUTs of the last step (reset to 0)."""
        value = float(ops.convert_to_numpy(self.acc))
        self.acc.assign(0.0)
        return value


def hooked_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers of ``model`` that have a differentiable LUT estimate (dense, convolution)."""
    from ..layers.weighted import WeightedLayerMixin

    return [layer for layer in all_layers(model) if isinstance(layer, WeightedLayerMixin)]


def attach(model: keras.Model, hook: CostHook) -> None:
    """Attach ``hook`` to every hooked layer (plain attribute: not tracked, not saved)."""
    for layer in hooked_layers(model):
        layer.set_cost_hook(hook)


def detach(model: keras.Model) -> None:
    """Remove the budget's hook from every hooked layer (after training, or when it fails)."""
    for layer in hooked_layers(model):
        layer.set_cost_hook(None)
