"""The learning rate's anneal over a budgeted run's last epochs (``Schedule.anneal``)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from hgq_fpga.constraints import ResourceBudget
from hgq_fpga.constraints.budget import BACKENDS
from hgq_fpga.constraints.schedule import Anneal, Schedule
from hgq_fpga.datasets import digits
from hgq_fpga.layers import QDense

pytestmark = pytest.mark.skipif(keras.backend.backend() not in BACKENDS,
                                reason=f"ResourceBudget trains on {', '.join(BACKENDS)}")

EPOCHS = 5
RATE = 3e-3


@pytest.fixture(scope="module")
def data():
    d = digits(seed=0)
    return d.x_train[:256], d.y_train[:256]


def mlp(optimizer: keras.optimizers.Optimizer | None = None) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), QDense(16, activation="relu"), QDense(10)])
    model.compile(optimizer or keras.optimizers.Adam(RATE),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def rate(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def train(data, schedule, *extra: keras.callbacks.Callback, optimizer=None):
    """``EPOCHS`` epochs under a budget at half the starting cost; the rate at each epoch's first batch."""
    x, y = data
    model = mlp(optimizer)
    seen: list[float] = []
    probe = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: seen.append(rate(model)) if batch == 0 else None)
    kwargs = {} if schedule == "default" else {"schedule": schedule}
    cb = ResourceBudget(lut=3000, calibration_data=x, verbose=0, sensitivities=False, **kwargs)
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[cb, *extra, probe])
    return model, cb, seen


def test_the_default_anneals_the_last_fifth_of_the_epochs_by_a_half_cosine_and_puts_the_rate_back(data):
    model, cb, seen = train(data, "default")
    assert cb.schedule == Schedule(0.0, 0.0, 0.2) and cb.schedule.annealed(EPOCHS) == 1
    # one epoch annealed: the middle of a half cosine, half the rate
    assert seen == pytest.approx([RATE] * 4 + [RATE / 2], rel=1e-6)
    assert rate(model) == pytest.approx(RATE, rel=1e-7) and cb.result.feasible


def test_the_anneal_trains_exactly_as_keras_own_scheduler_with_the_same_rates(data):
    """The rate the callback sets is the one the training step uses: the same run with the anneal off
    and Keras's ``LearningRateScheduler`` setting the same rates ends with the same weights, bit for
    bit; without either, the weights differ."""
    n = Schedule(0.0, 0.0, 0.4).annealed(EPOCHS)
    annealed, _, seen = train(data, Schedule(0.0, 0.0, 0.4))
    rates = [RATE * Anneal.factor(e, EPOCHS, n) for e in range(EPOCHS)]
    assert n == 2 and seen == pytest.approx(rates, rel=1e-6)
    assert rates[3] == pytest.approx(RATE * (1 + math.cos(math.pi / 4)) / 2)
    keras_way, _, _ = train(data, Schedule(0.0, 0.0, 0.0),
                            keras.callbacks.LearningRateScheduler(lambda epoch, lr: rates[epoch]))
    plain, _, flat = train(data, Schedule(0.0, 0.0, 0.0))
    assert flat == pytest.approx([RATE] * EPOCHS)
    for a, b, c in zip(annealed.get_weights(), keras_way.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(annealed.get_weights(), plain.get_weights()))


class Lower(keras.callbacks.Callback):
    """Lowers the rate to a tenth at epoch 1, as ``ReduceLROnPlateau`` would."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            self.model.optimizer.learning_rate.assign(RATE / 10)


def test_a_rate_lowered_before_the_anneal_is_the_one_annealed_and_stays_lowered(data):
    model, _, seen = train(data, "default", Lower())
    assert seen == pytest.approx([RATE] + [RATE / 10] * 3 + [RATE / 20], rel=1e-6)
    assert rate(model) == pytest.approx(RATE / 10, rel=1e-6)  # not the rate fit started with


def test_none_and_a_users_own_learning_rate_schedule_are_left_alone(data):
    _, cb, seen = train(data, None)
    assert not cb.anneal.active and seen == pytest.approx([RATE] * EPOCHS)
    decay = keras.optimizers.schedules.ExponentialDecay(RATE, decay_steps=8, decay_rate=0.5)
    model, cb, seen = train(data, "default", optimizer=keras.optimizers.Adam(decay))
    assert not cb.anneal.active and cb.result.feasible
    steps = 256 // 32
    assert seen == pytest.approx([RATE * 0.5 ** e for e in range(EPOCHS)], rel=1e-5)  # the user's decay alone
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == EPOCHS * steps


def test_the_start_line_names_the_annealed_epochs(data, capsys):
    x, y = data
    model = mlp()
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0,
              callbacks=[ResourceBudget(lut=3000, calibration_data=x, verbose=1, schedule=(0.0, 0.0, 0.4),
                                        sensitivities=False)])
    first = capsys.readouterr().out.splitlines()[0]
    assert "The learning rate anneals over the last 2 epochs (half cosine)." in first


@pytest.mark.parametrize(("schedule", "match"), [
    ((0.0, 0.0, 1.0), r"anneal is a fraction of the epochs in \[0, 1\). Received: anneal=1.0"),
    ((0.1, 0.2, 0.3, 0.4), r"or \(warmup, finetune, anneal\) triple"),
])
def test_a_bad_anneal_is_named(schedule, match, data):
    with pytest.raises(ValueError, match=match):
        ResourceBudget(lut=100, calibration_data=data[0], schedule=schedule)
