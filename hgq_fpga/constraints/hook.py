"""The training-time link between a budget callback and the quantized layers.

A :class:`CostHook` is attached to every layer with weights (never saved with
the model). In each training step the layer

* adds ``weight * scale * luts`` to the loss, where ``luts`` is its
  differentiable LUT estimate (:mod:`hgq_fpga.quantizers.cost`) and ``scale``
  is ``rho / budget`` (``rho`` calibrates the differentiable form to the exact
  estimate);
* scales the task loss's gradient on its bits by ``task_share``;
* adds ``luts`` to ``acc``, which the callback reads after the batch.

With ``method="step"`` and a LUT budget alone, the budget reads the cost
outside the training step (:class:`~hgq_fpga.constraints.softcost.SoftCost`,
after the batches it reads) and needs the cost in the step only for its
gradient, in the batches over the budget that a step cannot bring down
(after a step undone). The step is then traced without the cost (``in_step``
False, a Python flag read when the step is traced: even a conditional that is
never taken made a fine-tune epoch of the digits MLP 15% longer on TensorFlow)
and, the first time the gradient is needed, traced again with it; the
callback switches between the two.

The layer computes ``luts`` only in steps where ``active`` is 1 (a
conditional in the traced step on TensorFlow and JAX, Python's on torch; 0 is
recorded otherwise): with the other rules the callback
switches it on for one batch in :data:`RECORD_EVERY` while the bits learn
(reading ``acc`` after it), and for every batch while the cost gradient is on,
so that the other steps cost what an unbudgeted step costs.

The five are variables, so the callback changes them between steps without
retracing the training function. While attached, those the traced step reads
(:attr:`CostHook.step_variables`: ``task_share`` alone while ``in_step`` is
False, all five with the cost in the step) are part of each hooked layer's
``variables`` (so of the model's ``non_trainable_variables``, the state that
Keras's JAX trainer threads through its stateless step) but not of its
``weights``: ``get_weights``, ``save`` and the converters never see them. Four
variables the step does not read, carried through it, made each JAX step of the
digits MLP about 5 us longer, and Keras's loop around it about 25 us more a batch
(BENCHMARKS.md; ``python benchmarks/batch_end.py --hooked`` times the hook alone). The list changes with
``in_step`` only after a state sync (the callback syncs before it switches
steps), so Keras rebuilds its state from the new list at the next batch.

Several devices: on TensorFlow the variables are created under the model's
``tf.distribute`` strategy; ``acc`` is a sync-on-read variable averaged over
the replicas (each replica adds the same model's LUTs: the mean is the
model's cost, not a sum over replicas). On JAX, under a
``keras.distribution`` (set before the model is built), they are replicated
like every variable of a data-parallel model.
"""

from __future__ import annotations

import contextlib
from typing import Any

import keras
from keras import ops

from ..compat.keras import all_layers

__all__ = ["RECORD_EVERY", "CostHook", "attach", "detach", "hook_variables", "hooked_layers", "model_state"]

#: while the bits learn, the cost is recorded in one training step out of this many (one call of the
#: training function: with ``steps_per_execution``, all its steps, and the mean is taken over them)
RECORD_EVERY = 4


def _variable_scope(model: keras.Model | None) -> Any:
    """Where the hook's variables must be created: the model's ``tf.distribute``
    strategy on TensorFlow (else assigning them in a replica fails); on JAX the
    current ``keras.distribution`` applies by itself."""
    strategy = getattr(model, "distribute_strategy", None) if keras.backend.backend() == "tensorflow" else None
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


class CostHook:
    """Variables shared by the hooked layers (see the module docstring)."""

    def __init__(self, scale: float, model: keras.Model | None = None) -> None:
        #: whether the layers put the cost into the training step (read when it is traced)
        self.in_step = True
        with _variable_scope(model):
            self.weight = keras.Variable(0.0, trainable=False, dtype="float32", name="budget_weight")
            self.task_share = keras.Variable(1.0, trainable=False, dtype="float32", name="budget_task_share")
            self.scale = keras.Variable(float(scale), trainable=False, dtype="float32", name="budget_scale")
            self.active = keras.Variable(1.0, trainable=False, dtype="float32", name="budget_active")
            # each replica sums its own copy; a read averages them
            self.acc = keras.Variable(0.0, trainable=False, dtype="float32", name="budget_acc",
                                      aggregation="mean", synchronization="on_read")

    @property
    def variables(self) -> list[Any]:
        """The hook's five variables."""
        return [self.weight, self.task_share, self.scale, self.acc, self.active]

    @property
    def step_variables(self) -> list[Any]:
        """The variables the training step reads: all five with the cost in the step
        (``in_step``), else ``task_share`` alone (the gradient scale on the bits)."""
        return self.variables if self.in_step else [self.task_share]

    def record(self, luts: Any) -> None:
        """Accumulate a layer's differentiable LUTs for the current step."""
        self.acc.assign_add(ops.cast(ops.stop_gradient(luts), "float32"))

    def luts(self, compute: Any) -> Any:
        """``compute()`` (a layer's differentiable LUTs) in a step where ``active`` is 1, else 0
        (on torch None: nothing to record or add).

        TensorFlow and JAX run only the branch taken (``tf.cond``, ``lax.cond``: the
        layers' custom gradients take their tensors as arguments, since one that closed
        over the step's tensors failed to trace inside ``lax.cond``); torch runs eagerly,
        so Python decides.
        """
        if keras.backend.backend() == "torch":
            return compute() if float(ops.convert_to_numpy(self.active)) > 0.5 else None
        return ops.cond(ops.greater(self.active, 0.5), compute, lambda: ops.convert_to_tensor(0.0, "float32"))

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


def hook_variables(model: keras.Model) -> list[Any]:
    """The variables of the hooks attached to ``model``'s layers (none when detached)."""
    found: dict[int, Any] = {}
    for layer in hooked_layers(model):
        if layer.cost_hook is not None:
            found.update((id(v), v) for v in layer.cost_hook.variables)
    return list(found.values())


def model_state(model: keras.Model) -> list[Any]:
    """``model.non_trainable_variables`` without an attached hook's."""
    hooks = {id(v) for v in hook_variables(model)}
    return [v for v in model.non_trainable_variables if id(v) not in hooks]


def attach(model: keras.Model, hook: CostHook) -> None:
    """Attach ``hook`` to every hooked layer (plain attribute: not tracked, not saved)."""
    for layer in hooked_layers(model):
        layer.set_cost_hook(hook)


def detach(model: keras.Model) -> None:
    """Remove the budget's hook from every hooked layer (after training, or when it fails)."""
    for layer in hooked_layers(model):
        layer.set_cost_hook(None)
