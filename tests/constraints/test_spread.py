"""The bits phase starts with the fractional bits off whole numbers (spread_whole_bits), so that a
step under half a bit moves the cost (the plateau of bits all on one rounding boundary)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import hgq_fpga
from hgq_fpga.constraints import ResourceBudget
from hgq_fpga.constraints.budget import BACKENDS
from hgq_fpga.constraints.schedule import Schedule, SoftCost
from hgq_fpga.constraints.step import _GOLDEN, SPREAD, spread_whole_bits
from hgq_fpga.datasets import digits
from hgq_fpga.layers import QDense

pytestmark = pytest.mark.skipif(keras.backend.backend() not in BACKENDS,
                                reason=f"ResourceBudget trains on {', '.join(BACKENDS)}")


def _mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), QDense(24, activation="relu"), QDense(10)])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _fs(model: keras.Model) -> list[np.ndarray]:
    return [np.array(ops.convert_to_numpy(layer.bits_pack.f)) for layer in model.layers]


def test_spread_keeps_every_bit_and_makes_a_small_shift_count():
    """Bits at 6 fractional bits (the start): lowering every ``f`` by 0.2 changes no bit and no
    cost; spread, the outputs and the cost are the same bit for bit, and the same shift lowers
    the bits of about (0.2 - 0.01) / 0.98 of the elements, and the cost with them."""
    x = digits(seed=0).x_train[:256]
    model = _mlp()
    hgq_fpga.calibrate(model, x)
    soft = SoftCost(model)
    out, cost, cost_shifted = model.predict(x, verbose=0), soft.luts(0.0).sum(), soft.luts(0.2).sum()
    assert cost_shifted == cost  # the plateau
    before = _fs(model)
    assert all(np.array_equal(f, np.round(f)) for f in before)

    packs = [layer.bits_pack for layer in model.layers]
    assert spread_whole_bits(packs) == sum(f.size for f in before)
    after = _fs(model)
    for f0, f1 in zip(before, after):
        assert np.array_equal(np.round(f1), f0) and np.all(np.abs(f1 - f0) < SPREAD / 2 + 1e-6)
        lowered = np.mean(np.round(f1 - np.float32(0.2)) < f0)
        assert abs(lowered - (0.2 - 0.01) / 0.98) < 0.02
    np.testing.assert_array_equal(model.predict(x, verbose=0), out)
    assert soft.luts(0.0).sum() == cost and soft.luts(0.2).sum() < cost
    assert spread_whole_bits(packs) == 0  # nothing left on a whole number


def test_a_budgeted_training_spreads_the_bits_after_the_warm_up():
    """The step rule (the default) spreads the bits when the warm-up ends, and then each step
    lands where it aims: the cost read after it is below the one it stepped from, and not far
    under the target (0.9). Without the spread, on this model and seed, a half-bit step from
    1.20 of the budget changed nothing and the next one fell to 0.58 (every bit crossed its
    rounding boundary at once)."""
    d = digits(seed=0)
    model = _mlp()
    x, y = d.x_train[:600], d.y_train[:600]
    model.fit(x, y, epochs=3, verbose=0)
    hgq_fpga.calibrate(model, x)
    full = hgq_fpga.estimate(model).lut
    model = _mlp()
    size = sum(f.size for f in _fs(model))
    reads: list[tuple[float, bool]] = []
    cb = ResourceBudget(lut=0.2 * full, calibration_data=x, verbose=0, schedule=Schedule(0.25, 0.0),
                        sensitivities=False)

    class Spy(keras.callbacks.Callback):  # (after the budget's on_train_begin, which builds its steering)
        def on_train_begin(self, logs=None):
            rule = cb.steering._rule

            def spy(c, dsp_over, last=False):
                steps = cb.steering.step.steps
                out = rule(c, dsp_over, last)
                reads.append((c, cb.steering.step.steps > steps))
                return out

            cb.steering._rule = spy

    model.fit(x, y, epochs=4, verbose=0, callbacks=[cb, Spy()])
    landed = [(c, after) for (c, stepped), (after, _) in zip(reads, reads[1:]) if stepped]
    assert len(landed) >= 3 and all(0.85 < after < c for c, after in landed), landed
    assert cb.result.feasible and cb.steering.spread >= size


def test_bits_held_at_a_bound_are_not_counted_again():
    """An ``f`` at a whole-number bound of its clip keeps it where the offset points outside:
    such elements are neither assigned nor counted, in this call or the next."""
    model = _mlp()
    pack = model.layers[0].bits_pack
    high = float(np.max(pack.f.constraint.high))
    f = np.array(ops.convert_to_numpy(pack.f))
    f[:20] = np.float32(high)
    pack.f.assign(f)
    offsets = SPREAD * (np.mod(np.arange(f.size) * _GOLDEN, 1.0) - 0.5)
    held = int(np.sum(offsets[:20] > 0))
    assert 0 < held < 20 and float(high) == round(high)
    assert spread_whole_bits([pack]) == f.size - held
    after = np.array(ops.convert_to_numpy(pack.f))
    assert np.all(after[:20][offsets[:20] > 0] == np.float32(high))
    assert spread_whole_bits([pack]) == 0
