"""What every quantized layer shares: its quantizers, the activation check,
serialization of quantizer options, and the optional EBOPs penalty.

EBOPs ("effective bit operations", HGQ) of a layer are
``sum over multiplications of bits(input) * bits(weight)``; here they are a
differentiable size measure used as a loss term ``ebops_penalty * ebops``
when ``ebops_penalty > 0``. The LUT/DSP estimator lives in
:mod:`hgq_fpga.resources`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from .. import quantizers as qz
from ..compat import ops64 as ops
from ..quantizers.packing import pack_bits

__all__ = ["EXACT_DTYPES", "SUPPORTED_ACTIVATIONS", "QuantizedLayerMixin", "build_once", "check_activation",
           "check_dtype"]

#: Activations that are exact on fixed-point values (no lookup table needed).
SUPPORTED_ACTIVATIONS = ("linear", "relu")
#: The compute dtypes a quantized layer accepts: float32 (up to 24 significant bits) and float64 (the
#: float64 twin, :mod:`hgq_fpga.emulator.keras64`); the bit tricks of :mod:`hgq_fpga.quantizers.base`
#: know both. float64 is exact on every backend (the layers' ops keep it where Keras would narrow it:
#: :mod:`hgq_fpga.compat.ops64`); on JAX it needs ``jax_enable_x64`` (refused without it).
EXACT_DTYPES = ("float32", "float64")


def check_dtype(layer: Any) -> None:
    """Refuse a quantized layer whose dtype policy computes in a half float (``mixed_float16``,
    ``mixed_bfloat16``, ``float16``, ``bfloat16``: 11 and 8 significant bits, too few for the fixed-point
    numbers, and the quantizers' ops failed deep inside the first call with a dtype mismatch).

    Also refuse float64 on JAX without ``jax_enable_x64`` (JAX would compute it in float32).

    Raises:
        ValueError: naming the layer, its policy and what to pass instead.
    """
    policy = layer.dtype_policy
    compute = keras.backend.standardize_dtype(policy.compute_dtype)
    if compute == "float64" and keras.backend.backend() == "jax" and not _jax_x64():
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r}: dtype float64 on JAX needs JAX's 64-bit types, which are "
            "off by default (its float64 arrays are then float32, and the layer's values inexact). Set "
            "JAX_ENABLE_X64=1 before starting Python, or call jax.config.update('jax_enable_x64', True) before "
            "building the model; or build the layer in float32."
        )
    if compute not in EXACT_DTYPES:
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r}: quantized layers compute in float32, where their "
            f"fixed-point values are exact; its dtype policy is {policy.name!r} ({compute}). "
            "Pass dtype='float32' to the quantized layers (the model's other layers may stay in mixed "
            "precision), or keep the global policy: keras.mixed_precision.set_global_policy('float32')."
        )


def _jax_x64() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


def check_activation(owner: str, activation: Any) -> Callable[[Any], Any]:
    """Return the Keras activation function, or raise if firmware cannot do it.

    Raises:
        ValueError: naming the activation received and the supported ones.
    """
    fn = keras.activations.get(activation)
    name = getattr(fn, "__name__", repr(fn))
    if name not in SUPPORTED_ACTIVATIONS:
        raise ValueError(
            f"{owner}: activation {name!r} is not supported: only "
            f"{', '.join(SUPPORTED_ACTIVATIONS)} are exact in fixed point. "
            "Use a linear layer followed by a supported QActivation."
        )
    return fn


class QuantizedLayerMixin:
    """Mixin placed before the Keras base class: ``QDense(QuantizedLayerMixin, Dense)``.

    Subclasses set quantizer sub-layers in ``__init__`` or ``build`` and
    implement :meth:`ebops`.
    """

    _quantizer_keys: tuple[str, ...] = ("input_quantizer",)
    #: config keys that the plain Keras layer does not have
    quantization_config_keys: tuple[str, ...] = (
        "input_quantizer", "kernel_quantizer", "bias_quantizer", "ebops_penalty",
    )

    def _init_quantized(self, ebops_penalty: float) -> None:
        if not ebops_penalty >= 0.0:
            raise ValueError(
                f"{type(self).__name__}: ebops_penalty must be >= 0. Received: ebops_penalty={ebops_penalty}"
            )
        check_dtype(self)
        self.ebops_penalty = float(ebops_penalty)
        #: weight of the differentiable LUT estimate in the loss; a training-time
        #: setting (not saved), see :func:`hgq_fpga.resources.set_lut_penalty`
        self.lut_penalty = 0.0

    @property
    def quantizers(self) -> list[qz.BitQuantizerBase]:
        """Every quantizer sub-layer of this layer (input ones first)."""
        found: list[qz.BitQuantizerBase] = []
        for key in self._quantizer_keys:
            obj = getattr(self, key, None)
            items = obj if isinstance(obj, (list, tuple)) else [obj]
            found.extend(q for q in items if isinstance(q, qz.BitQuantizerBase))
        return found

    @property
    def input_quantizers(self) -> list[qz.ActivationQuantizer]:
        """The activation quantizers that quantize this layer's inputs."""
        return [q for q in self.quantizers if isinstance(q, qz.ActivationQuantizer)]

    def _pack_bits(self) -> None:
        """After the quantizers are built: one trainable ``f`` variable for all of them."""
        self.bits_pack = pack_bits(self, self.quantizers)  # type: ignore[arg-type]

    def _bit_values(self) -> dict[int, Any]:
        """Every packed quantizer's ``f`` tensor, read once per call: ``{id(q): f}``.

        Quantizers missing from the dict read their own variable. With a budget
        attached (:class:`hgq_fpga.constraints.ResourceBudget`), the task loss's
        gradient on ``f`` is scaled by the budget's ``task_share`` (0 while the
        constraint is violated: the bits then follow only the cost gradient).
        """
        pack = getattr(self, "bits_pack", None)
        if pack is None:
            return {}
        hook = self.cost_hook
        return pack.values(None if hook is None else ops.cast(hook.task_share, pack.f.dtype))

    @property
    def cost_hook(self) -> Any:
        """The budget's :class:`~hgq_fpga.constraints.hook.CostHook` while a budget trains this layer, else None."""
        return self.__dict__.get("_cost_hook")

    def set_cost_hook(self, hook: Any) -> None:
        """Attach (or, with None, detach) a budget's cost hook.

        Kept outside Keras's attribute tracking on purpose: the hook's variables
        belong to the training run, not to the layer, and are never saved.
        """
        if hook is None:
            self.__dict__.pop("_cost_hook", None)
        else:
            self.__dict__["_cost_hook"] = hook

    @property
    def variables(self) -> list[Any]:
        """Keras's ``variables``, plus those of an attached cost hook that the training
        step reads (:attr:`~hgq_fpga.constraints.hook.CostHook.step_variables`) while a budget trains.

        So they are state of the model (``non_trainable_variables``),
        which Keras's JAX trainer threads through its stateless training step;
        they are not in ``weights`` and are never saved.
        """
        found = list(super().variables)  # type: ignore[misc]
        hook = self.cost_hook
        if hook is not None:
            seen = {id(v) for v in found}
            found.extend(v for v in hook.step_variables if id(v) not in seen)
        return found

    @property
    def quantizer_variables(self) -> list[Any]:
        """Variables that belong to quantization (bits, ranges), not to the Keras layer."""
        found = [v for q in self.quantizers for v in q.weights]
        pack = getattr(self, "bits_pack", None)
        return found + (list(pack.weights) if pack is not None else [])

    def ebops(self) -> Any:
        """Differentiable EBOPs of this layer (0 for layers without multiplications)."""
        return self._ebops(self._bit_values())

    def _ebops(self, fs: dict[int, Any], qkernel: Any = None, *, exact: bool = True) -> Any:
        """EBOPs from already read bits ``fs``; ``exact=False`` inside losses."""
        return ops.convert_to_tensor(0.0)

    def lut_estimate(self) -> Any:
        """Differentiable LUTs of this layer's adder trees (0 for layers without
        weights); the exact figure is :func:`hgq_fpga.estimate`'s."""
        return self.luts_for(self._bit_values())

    def luts_for(self, fs: dict[int, Any], qkernel: Any = None, value_only: bool = False) -> Any:
        """Differentiable LUTs for given fractional bits ``fs`` (``{id(quantizer): f}``; others read their own);
        ``value_only``: the number alone, without the surrogate gradient (reads outside training)."""
        return ops.convert_to_tensor(0.0)

    def _add_cost(self, training: bool | None, fs: dict[int, Any], qkernel: Any = None) -> None:
        """Add ``ebops_penalty * ebops`` and ``lut_penalty * luts`` (differentiable
        estimates) to the loss when training."""
        if not training:
            return
        hook = self.cost_hook
        if hook is not None and hook.in_step:
            pack = getattr(self, "bits_pack", None)  # (its values: the cost's own, ungated gradient)
            luts = hook.luts(lambda: ops.cast(self.luts_for(pack.values() if pack is not None else fs, qkernel),
                                              "float32"))
            if luts is not None:  # (None: not computed in this step, on an eager backend)
                hook.record(luts)
                self.add_loss(hook.loss(luts))  # type: ignore[attr-defined]
        if self.ebops_penalty > 0.0:  # exact bits: the loss counts what estimate().ebops reports
            cost = self._ebops(fs, qkernel, exact=True)
            self.add_loss(self.ebops_penalty * cost)  # type: ignore[attr-defined]
        if self.lut_penalty > 0.0:
            self.add_loss(self.lut_penalty * self.luts_for(fs, qkernel))  # type: ignore[attr-defined]

    def _quantized_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"ebops_penalty": self.ebops_penalty}
        for key in self._quantizer_keys:
            obj = getattr(self, key, None)
            if isinstance(obj, qz.BitQuantizerBase):
                config[key] = keras.saving.serialize_keras_object(obj)
        return config


def input_bits(
    quantizer: qz.ActivationQuantizer,
    input_shape: tuple[int, ...],
    f: Any | None = None,
    *,
    exact: bool = True,
) -> Any:
    """Bits of every input element, shape ``(1,) + input_shape[1:]``."""
    shape = (1,) + tuple(int(d) for d in input_shape[1:])
    bits = quantizer.bits(f, exact=exact)
    return bits if tuple(bits.shape) == shape else ops.broadcast_to(bits, shape)


def build_once(quantizer: qz.BitQuantizerBase, shape: tuple[int | None, ...]) -> None:
    """Build ``quantizer`` for ``shape``; its trainable ``f`` is left for packing."""
    if not quantizer.built:
        quantizer.defer_bits = quantizer.trainable_bits
        quantizer.build(shape)
