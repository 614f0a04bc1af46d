"""ResourceBudget with Keras's ``steps_per_execution``: the rule counts training steps, not calls."""

from __future__ import annotations

import keras
import pytest

import hgq_fpga
from hgq_fpga.constraints import ResourceBudget
from hgq_fpga.constraints.budget import BACKENDS
from hgq_fpga.constraints.executions import Executions
from hgq_fpga.datasets import digits
from hgq_fpga.layers import QDense
from hgq_fpga.resources import estimate

#: PyTorch's trainer refuses steps_per_execution > 1 (Keras: "must be 1 with the PyTorch backend")
several = pytest.mark.skipif(keras.backend.backend() not in BACKENDS or keras.backend.backend() == "torch",
                             reason="steps_per_execution > 1 runs on TensorFlow and JAX")
SAMPLES, BATCH, PER_CALL = 600, 16, 4
STEPS = -(-SAMPLES // BATCH)  # 38 steps an epoch: nine calls of 4 and a last one of 2


def test_the_calls_steps_come_from_keras_step_indices():
    calls = Executions()
    assert [calls.begin(b) for b in (0, 4, 8)] == [None, 4, 4]
    assert calls.open and calls.close(per_epoch=10) == 2  # the epoch's last call: steps 8 and 9
    assert not calls.open
    calls.begin(0)
    assert calls.close(per_epoch=None, per_execution=4) == 4  # (an epoch of unknown length)
    calls.begin(12)
    assert calls.close(per_epoch=10) == 1  # (never less than one step)


@pytest.fixture(scope="module")
def data():
    d = digits(seed=0)
    return d.x_train[:SAMPLES], d.y_train[:SAMPLES]


def mlp(per_call: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), QDense(24, activation="relu"), QDense(10)])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=per_call)
    return model


@pytest.fixture(scope="module")
def full(data) -> float:
    x, y = data
    model = mlp(1)
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0)
    hgq_fpga.calibrate(model, x)
    return estimate(model).lut


class Reads(keras.callbacks.Callback):
    """After the budget in the list: records each of its rule's reads of the cost, with the steps counted
    so far, the cost ``c`` it steered on and the same cost read outside the training step right then."""

    def __init__(self, budget: ResourceBudget) -> None:
        super().__init__()
        self.budget, self.reads = budget, []

    def on_train_begin(self, logs=None):
        steering = self.budget.steering
        rule = steering._rule

        def spy(c, dsp_over, last=False):
            now = float(steering.soft.luts(0.0).sum()) * steering.scale
            self.reads.append((steering._count, c, now))
            rule(c, dsp_over, last)

        steering._rule = spy


@several
def test_the_step_rule_reads_by_steps_at_the_calls_and_holds_the_budget(data, full):
    x, y = data
    cb = ResourceBudget(lut=0.3 * full, calibration_data=x, verbose=0, schedule=None, sensitivities=False)
    reads = Reads(cb)
    mlp(PER_CALL).fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[cb, reads])
    counts = [n for n, _, _ in reads.reads]
    # every step of both epochs counted (the calls: 10 an epoch), and the reads at the calls' ends
    assert cb.steering._count == 2 * STEPS
    assert set(counts) <= {e * STEPS + k for e in range(2) for k in [*range(PER_CALL, STEPS, PER_CALL), STEPS]}
    # reads RECORD_EVERY (4) steps apart near the budget: at every call, as many as calls with one step each
    assert len(counts) >= 2 * (STEPS // PER_CALL) - 4
    assert cb.result.feasible and cb.result.report.lut <= 0.3 * full


@several
@pytest.mark.parametrize("method", ["constraint", "primal_dual"])
def test_the_cost_recorded_in_a_calls_steps_is_their_mean_not_their_sum(method, data, full):
    """The gradient rules record the cost in the training step; a call of 4 steps sums 4 of them."""
    x, y = data
    cb = ResourceBudget(lut=2.0 * full, calibration_data=x, verbose=0, schedule=None, method=method,
                        sensitivities=False)
    reads = Reads(cb)
    mlp(PER_CALL).fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[cb, reads])
    assert len(reads.reads) >= 2
    for _, c, now in reads.reads:  # (the recorded steps' weights a few steps before the read's)
        assert 0.8 < c / now < 1.25, (c, now)
