"""The differentiable cost of a budgeted model, read outside its training step.

:class:`SoftCost` evaluates every hooked layer's differentiable LUTs (the sum the
training rule of :class:`~hgq_fpga.constraints.ResourceBudget` compares with its
budget) as a compiled function of the variables' current values: ``tf.function``
with XLA on TensorFlow, ``jax.jit`` on JAX over the state Keras's trainer threads
(no state sync), eagerly on torch.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from ..compat.keras import jax_training_values
from .hook import hooked_layers

__all__ = ["SoftCost", "jax_compiled"]


class SoftCost:
    """Each hooked layer's differentiable LUTs with all its trainable bits lowered by ``shift``
    (:meth:`luts`), outside the training step. Compiled once with ``tf.function`` on
    TensorFlow, where the same ops run eagerly take about 20 ms a layer, and with ``jax.jit``
    on JAX (the variables' values passed in and read through a ``keras.StatelessScope``, so
    that the compiled function sees their current values: 0.9 ms against 41 ms eagerly for
    the two evaluations of the digits MLP's :meth:`BudgetStep.measure`, after a 0.7 s trace).

    A read needs the number only: the layers' value-only form
    (``luts_for(..., value_only=True)``: no surrogate-gradient terms, and a dense layer's
    sums elementwise instead of through two matrix products, whose operands XLA recomputed
    inside each) made a read of the 64-256-256-10 MLP 1.02 -> 0.68 ms on TensorFlow and
    0.89 -> 0.47 ms on JAX (isolated reads, best of 7 x 100; the same LUTs). A dense layer's
    read is one product a weight feeding both of its reductions
    (:func:`~hgq_fpga.quantizers.cost.dense_read_luts`: XLA had fused each of three reductions with
    its own copy of the quantization and digit count), and a read takes a kernel's
    digits and bits from its mantissas: ``python benchmarks/budget_reads.py`` (BENCHMARKS.md)
    measured 325-367 -> 155-205 us on JAX and 559-596 -> 370 us on TensorFlow for the
    64-256-256-10 MLP (best of 5 x 100, two runs alternating with the code before)."""

    def __init__(self, model: Any) -> None:
        self.layers = hooked_layers(model)
        self._model = model
        self._compiled: Callable[[Any], Any] | None = None
        self._shifts: dict[float, Any] = {}

    def _layer_luts(self, shift: Any) -> list[Any]:
        """Each layer's LUTs (traced) with its trainable bits lowered by ``shift``, each kernel's digits
        and bits from its mantissas at them (:meth:`~hgq_fpga.layers.weighted.WeightedLayerMixin.luts_for`;
        :meth:`~hgq_fpga.quantizers.WeightQuantizer.digits_and_bits`). A read of the bits as they are is
        the shift 0: the reads and the step's shifted evaluations are one compiled program (they were two,
        the shifted form quantizing each kernel anew: 0.6-0.8 s more to trace and compile on TensorFlow in
        every budgeted ``fit`` of the digits MLP, 0.4-0.5 s on JAX, for the same numbers)."""
        out = []
        for layer in self.layers:
            pack = getattr(layer, "bits_pack", None)
            fs = {} if pack is None else {k: v - ops.cast(shift, v.dtype) for k, v in pack.values().items()}
            out.append(ops.cast(layer.luts_for(fs, value_only=True), "float32"))
        return out

    def _form(self) -> Callable[[Any], Any]:
        """The per-layer LUTs as a compiled function of the shift (:meth:`_layer_luts`)."""

        def luts(shift: Any) -> Any:
            return ops.stack(self._layer_luts(shift))

        # (on TensorFlow the concrete function: calling the tf.function dispatched on its arguments
        # first, 0.17 of 0.8 ms a read of the 64-256-256-10 MLP)
        return self._compile(luts)

    def _compile(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``fn`` of one float32 scalar tensor, compiled for the backend (as :meth:`_form`)."""
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            return tf.function(fn, autograph=False, jit_compile=True).get_concrete_function(
                tf.TensorSpec((), tf.float32))
        if keras.backend.backend() == "jax":
            return jax_compiled(fn, [v for layer in self.layers for v in layer.variables], self._model)
        return fn

    def totals(self, shifts: np.ndarray) -> np.ndarray:
        """The model's differentiable LUTs (float64) with all its trainable bits lowered by each of
        ``shifts`` (a 1-D array): the compiled form once a shift, every call dispatched before any is
        waited for (on JAX they queue behind each other while Python goes on), the layers summed in
        float64. :class:`~hgq_fpga.constraints.step.BudgetStep` searches its step with it.

        Not one compiled loop over the shifts (``keras.ops.map``), as it was: that third program took
        1.7 s to trace and compile on TensorFlow and 0.6 s on JAX in every budgeted ``fit`` (the
        digits MLP; ``on_train_begin`` 3.1 s and 2.1 s in all), to save about 1 ms in each of the
        8-9 steps of a 20-epoch run (the digits MLP, eight shifts: 1.4 ms against 1.5-1.9 ms on
        TensorFlow, 0.5 ms against 0.6-0.8 ms on JAX, BENCHMARKS.md)."""
        started = [self._run(float(shift), keep=False) for shift in np.asarray(shifts, np.float32).reshape(-1)]
        return np.array([self.finish(s).sum() for s in started], np.float64)

    def prepare(self) -> None:
        """Compile the reads now (:meth:`_form`: the step's :meth:`totals` and its sigma evaluate the
        same program), before the training step is traced: compiled on
        first use instead, inside the first bits epoch, every later epoch of TensorFlow's digits MLP
        took longer (``python benchmarks/budget_training.py``, 20 epochs, a budget that compiled
        at the start and one that did not in the same lockstep, five repeats: budget/free
        1.12-1.24, median 1.16, against 1.20-1.25, median 1.23; each repeat lower). Why is not
        established: the compiled functions, unused, slow nothing when registered before the
        first step. Nothing to compile on torch."""
        if keras.backend.backend() == "torch":
            return
        self.finish(self.start(0.0))

    def luts(self, shift: float = 0.0) -> np.ndarray:
        """Per-layer differentiable LUTs (float64) with the bits lowered by ``shift``."""
        return self.finish(self.start(shift))

    def start(self, shift: float = 0.0) -> Any:
        """:meth:`luts`, as the backend's tensor, not waited for: on JAX the computation is
        dispatched and runs while Python goes on (:meth:`finish` waits for it)."""
        return self._run(float(shift), keep=True)

    def _run(self, shift: float, keep: bool) -> Any:
        """:meth:`start`; ``keep``: keep the shift's tensor for the next call with the same shift (the
        reads' 0 and the sigma's 1; not the search's shifts, a new set each step)."""
        arg = self._shifts.get(shift)
        if arg is None:  # (kept: on JAX a new array waited for the step in flight, 0.26 ms; not kept, JAX
            # takes the numpy scalar as it is)
            jax = keras.backend.backend() == "jax"
            arg = np.float32(shift) if jax and not keep else ops.convert_to_tensor(shift, "float32")
            if keep:
                self._shifts[shift] = arg
        if self._compiled is None:
            self._compiled = self._form()
        return self._compiled(arg)

    @staticmethod
    def finish(started: Any) -> np.ndarray:
        """The LUTs (float64) of a :meth:`start`."""
        return np.asarray(ops.convert_to_numpy(started), np.float64)


def jax_compiled(fn: Callable[[Any], Any], variables: list[Any], model: Any,
                 shape: tuple[int, ...] = (), *, only_read: bool = True) -> Callable[[Any], Any]:
    """``fn(x)`` (``x`` a float32 array of ``shape``), which reads some of ``variables``, compiled with
    ``jax.jit`` over their current values (:func:`~hgq_fpga.compat.keras.jax_training_values`).

    Only the variables ``fn`` reads are passed (found by tracing it once abstractly, 46 ms on the
    digits MLP): a jitted call's dispatch costs about 2.5 us an argument, and a read of the digits
    MLP passed 24 where it reads 16. ``only_read=False``: all of ``variables`` are passed, without that
    tracing (for a function called a few times, a repair's gradient once a round)."""
    import jax

    read: dict[int, Any] = {}

    class Recording(keras.StatelessScope):
        def get_current_value(self, variable: Any) -> Any:
            read[id(variable)] = variable
            return super().get_current_value(variable)

    def run(scope: type, listed: list[Any], values: list[Any], x: Any) -> Any:
        with scope(state_mapping=list(zip(listed, values))):
            return fn(x)

    used = list(variables)
    if only_read:
        jax.eval_shape(lambda values, x: run(Recording, variables, values, x), [v.value for v in variables],
                       jax.ShapeDtypeStruct(tuple(shape), "float32"))
        used = [v for v in variables if id(v) in read]
    compiled = jax.jit(lambda values, x: run(keras.StatelessScope, used, values, x))
    values = jax_training_values(model, used)
    return lambda x: compiled(values(), x)
