"""A budgeted ``fit`` that stops before its end (Ctrl-C, an error elsewhere): Keras runs no
``on_train_end``, and the next training of the model lets go of the budget's state
(:mod:`hgq_fpga.constraints.hold`)."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from hgq_fpga.constraints import ResourceBudget
from hgq_fpga.constraints.budget import BACKENDS
from hgq_fpga.constraints.hold import HELD
from hgq_fpga.constraints.hook import hook_variables, hooked_layers
from hgq_fpga.datasets import digits
from hgq_fpga.layers import QDense

pytestmark = pytest.mark.skipif(keras.backend.backend() not in BACKENDS,
                                reason=f"ResourceBudget trains on {', '.join(BACKENDS)}")

EPOCHS = 3
#: the last epoch fine-tunes with the bits frozen (task gradient on the bits scaled by 0), annealed
FINE_TUNE = (0.0, 0.34, 0.34)
RATE = 3e-3


@pytest.fixture(scope="module")
def data():
    d = digits(seed=0)
    return d.x_train[:256], d.y_train[:256]


def mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), QDense(16, activation="relu"), QDense(10)], name="digits_mlp")
    model.compile(keras.optimizers.Adam(RATE), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class Stop(keras.callbacks.Callback):
    """Raises ``error`` at the third batch of epoch ``at`` (from 0), as Ctrl-C would."""

    def __init__(self, at: int, error: type[BaseException] = KeyboardInterrupt) -> None:
        super().__init__()
        self.at, self.error, self.epoch = at, error, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 2 and self.epoch == self.at:
            raise self.error("stopped")


def interrupted(data, at: int, error: type[BaseException] = KeyboardInterrupt, **kwargs):
    """A model whose budgeted fit (``EPOCHS`` epochs, half its starting cost) stopped in epoch ``at``."""
    x, y = data
    model = mlp()
    budget = ResourceBudget(lut=3000, calibration_data=x, verbose=0, sensitivities=False, **kwargs)
    with pytest.raises(error):
        model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[budget, Stop(at, error)])
    return model, budget


def bits(model: keras.Model) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(layer.bits_pack.f)) for layer in hooked_layers(model)]


def rate(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def test_a_fit_after_one_stopped_in_the_fine_tune_trains_the_bits_without_the_budget(data):
    x, y = data
    model, budget = interrupted(data, at=EPOCHS - 1, schedule=FINE_TUNE)
    assert rate(model) == pytest.approx(RATE / 2, rel=1e-6)  # what Ctrl-C leaves: no callback ran
    assert all(layer.cost_hook is budget.hook for layer in hooked_layers(model))
    frozen = bits(model)
    with pytest.warns(UserWarning, match=r"fit of model 'digits_mlp' under the budget \(lut=3000.0, dsp=None\) "
                                         r"stopped in epoch 3 .*learning rate put back") as caught:
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    ours = [w.filename for w in caught if issubclass(w.category, UserWarning) and "ResourceBudget" in str(w.message)]
    assert ours == [__file__]  # attributed to the user's line, not to Keras's
    assert all(layer.cost_hook is None for layer in hooked_layers(model)) and not hook_variables(model)
    assert HELD not in model.__dict__ and "make_train_function" not in model.__dict__
    assert rate(model) == pytest.approx(RATE, rel=1e-7)
    moved = [np.count_nonzero(a != b) for a, b in zip(frozen, bits(model))]
    assert all(n > 0 for n in moved), moved  # the bits learn again (they stayed put while the hook held them)
    with warnings.catch_warnings():  # let go once: the next fit is an ordinary one
        warnings.simplefilter("error", UserWarning)
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)


def test_a_step_after_a_fit_stopped_over_the_budget_has_no_cost_term_in_its_loss(data):
    x, y = data
    model, budget = interrupted(data, at=0, error=RuntimeError, method="constraint", schedule=None)
    assert float(keras.ops.convert_to_numpy(budget.hook.weight)) == 1.0  # stopped with the cost term on
    twin = mlp()  # never budgeted, the same weights (bits and ranges included)
    twin.set_weights(model.get_weights())
    with pytest.warns(UserWarning, match="stopped in epoch 1 "):
        loss = model.train_on_batch(x[:32], y[:32])  # (train_on_batch lets go as fit does)
    # the loss of the step (before its update) is the task loss alone, as the twin's
    assert loss == pytest.approx(twin.train_on_batch(x[:32], y[:32]), rel=1e-6)
    assert all(layer.cost_hook is None for layer in hooked_layers(model)) and not hook_variables(model)


def test_a_budget_fitting_the_model_again_lets_go_of_the_interrupted_one_silently(data):
    x, y = data
    model, budget = interrupted(data, at=EPOCHS - 1, schedule=FINE_TUNE)
    seen: list[float] = []
    probe = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(rate(model)))
    other = ResourceBudget(lut=3000, calibration_data=x, verbose=0, sensitivities=False, schedule=FINE_TUNE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[other, probe])
    # a new budget: the old one's annealed rate put back before its own anneal starts from it
    assert seen == pytest.approx([RATE] * (EPOCHS - 1) + [RATE / 2], rel=1e-6) and rate(model) == pytest.approx(RATE)
    assert other.result.feasible and budget.result is None
    assert all(layer.cost_hook is None for layer in hooked_layers(model)) and HELD not in model.__dict__


class Refuses(keras.callbacks.Callback):
    """A callback whose ``on_train_begin`` raises: the budget's ``set_model`` ran, its ``on_train_begin`` never will."""

    def on_train_begin(self, logs=None):
        raise RuntimeError("refused")


def test_a_fit_failing_before_the_budget_starts_leaves_no_hook_for_the_next_one(data):
    x, y = data
    twin = mlp()  # never budgeted: the same failed fit and plain fit, the same random draws
    with pytest.raises(RuntimeError, match="refused"):
        twin.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[Refuses()])
    twin.fit(x, y, epochs=1, batch_size=32, verbose=0)
    model = mlp()
    budget = ResourceBudget(lut=3000, calibration_data=x, verbose=0, sensitivities=False)
    with pytest.raises(RuntimeError, match="refused"):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[Refuses(), budget])
    assert hook_variables(model) and budget.steering is None  # attached in set_model; on_train_begin never ran
    with warnings.catch_warnings():  # nothing trained under the budget: nothing to warn about
        warnings.simplefilter("error", UserWarning)
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert all(layer.cost_hook is None for layer in hooked_layers(model)) and not hook_variables(model)
    assert HELD not in model.__dict__ and "make_train_function" not in model.__dict__
    for a, b in zip(model.get_weights(), twin.get_weights()):  # trained as the twin
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
