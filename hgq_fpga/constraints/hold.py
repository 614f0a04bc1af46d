"""A budgeted ``fit``'s hold on its model, and how an interrupted one lets go.

While :class:`~hgq_fpga.constraints.ResourceBudget` trains a model, the model carries
the budget's state: its cost hook on the layers (the hook's variables among the model's
state, and in the training step Keras traced and keeps), the bits' optimizer slots
zeroed and their task gradient off while they are frozen, and the learning rate
annealed. The callback takes all of it back in ``on_train_end``. But Keras calls no
callback when ``fit`` stops on an exception (Ctrl-C's ``KeyboardInterrupt``, an error
in another callback, in the data or in the step), so after one a later ``fit``
*without* the budget trained with the budget's last state: the cost term in its loss
(the budget no longer steering it), or, stopped in a fine-tune, bits that never moved
(their task gradient scaled by 0), and at the annealed rate.

:func:`hold` (from ``set_model`` on) therefore leaves a guard on the model until
:func:`release` (the callback let go normally): the model's ``make_train_function``,
which Keras calls unforced at the start of every ``fit`` and ``train_on_batch``, is
wrapped in the model's own ``__dict__`` (past Keras's attribute tracking: never saved,
never listed). Called unforced while a budget still holds the model, the wrapper first
runs that budget's ``let_go(warn=True)`` (the hook detached, the rate put back, the
steps traced anew; a warning says so), then Keras's own method. A ``ResourceBudget``
given the model (``set_model``) lets go of an earlier interrupted one first, silently:
the same budget fitting again after Ctrl-C is the usual case. The budget's own forced
calls (:meth:`ResourceBudget._switch_step`) pass through.

Example (what a user sees)::

    model.fit(x, y, epochs=30, callbacks=[budget])   # Ctrl-C in epoch 12
    model.fit(x, y, epochs=5)                          # UserWarning: ... stopped before its end ...
"""

from __future__ import annotations

import inspect
import os
import warnings
from typing import Any, Callable

import keras

__all__ = ["hold", "interrupted", "let_go_of", "release", "retrace", "warn_caller"]

#: the ``let_go`` of the budget that holds a model, in the model's ``__dict__``
HELD = "_hgq_fpga_budget_hold"
_GUARDED = "make_train_function"


def retrace(model: Any) -> None:
    """Make Keras trace its steps anew: a training step traced without the hook
    would not see it (TensorFlow), and on JAX the state the steps thread (and,
    under a distribution, its shardings) gains or loses the hook's variables."""
    model.train_function = model.test_function = model.predict_function = None


def hold(model: Any, let_go: Callable[[bool], None], passes: int = 0) -> None:
    """A budget's ``fit`` starts holding ``model``: until :func:`release`, the next unforced
    ``make_train_function`` (a later ``fit``, ``train_on_batch``) first calls ``let_go(True)``.

    ``passes``: unforced calls let through first. ``set_model`` holds with one, the call of the
    very ``fit`` that set it (Keras makes the training function between ``set_model`` and
    ``on_train_begin``), so that a ``fit`` failing in that window (an earlier callback's
    ``on_train_begin`` raising) leaves no hook behind either: the next ``fit`` lets go. (One
    failing before Keras makes the function, in a later callback's ``set_model``, leaves the
    pass unused: the hook, attached in its initial state, which adds no cost term and scales
    no gradient, goes at the ``fit`` after the next.)"""
    original = type(model).make_train_function
    left = int(passes)

    def make_train_function(force: bool = False) -> Any:
        nonlocal left
        if not force:
            if left > 0:
                left -= 1
            else:
                let_go_of(model, warn=True)
        return original(model, force=force)

    model.__dict__[HELD] = let_go
    model.__dict__[_GUARDED] = make_train_function


def release(model: Any) -> None:
    """The budget let go of ``model`` (its ``fit`` ended, or it failed and cleaned up): no guard."""
    model.__dict__.pop(HELD, None)
    model.__dict__.pop(_GUARDED, None)


def let_go_of(model: Any, warn: bool = False) -> bool:
    """If a budget still holds ``model`` (its ``fit`` stopped before ``on_train_end``), its
    ``let_go(warn)`` now; whether there was one."""
    let_go = model.__dict__.get(HELD)
    release(model)
    if let_go is None:
        return False
    let_go(warn)
    return True


def interrupted(name: str, lut: float | None, dsp: int | None, epoch: int, annealed: bool) -> str:
    """The warning of a budget that lets go of model ``name`` after its ``fit`` stopped in ``epoch`` (from 0)."""
    return (f"ResourceBudget: the last fit of model {name!r} under the budget (lut={lut}, dsp={dsp}) stopped "
            f"in epoch {epoch + 1} before its end (Keras runs no callback after an exception or Ctrl-C). Its "
            f"cost hook is now detached{' and the learning rate put back from its anneal' if annealed else ''}, "
            f"so this training runs without the budget. That fit made no budget.result and its model may be "
            f"over the budget: fit again with the ResourceBudget, or call "
            f"hgq_fpga.constraints.repair_to_budget(model, x, lut=...).")


#: the folders whose frames a warning skips: Keras's and this package's
_INTERNAL = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (keras,)) + (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,)


def warn_caller(message: str) -> None:
    """``warnings.warn(message)`` (a ``UserWarning``) attributed to the first caller outside Keras and
    hgq_fpga: the user's ``fit`` or ``train_on_batch`` line, not Keras's wrapper of it."""
    stack = inspect.stack(context=0)
    level = next((i + 1 for i, frame in enumerate(stack[1:], start=1)
                  if not os.path.abspath(frame.filename).startswith(_INTERNAL)), 2)
    warnings.warn(message, UserWarning, stacklevel=level)
