"""How many training steps each of the budget's rule calls covers (``steps_per_execution``).

With ``model.compile(steps_per_execution=n)`` (TensorFlow and JAX; PyTorch takes only 1),
Keras runs ``n`` training steps in one call of its compiled training function and calls the
callbacks' ``on_train_batch_begin`` once for them, with the index of their first step
(0, n, 2n, ... in each epoch; the epoch's last call may hold fewer). The rule of
:class:`~hgq_fpga.constraints.ResourceBudget` runs between those calls
(:meth:`~hgq_fpga.constraints.schedule.Steering.after_batch`), so it counts training
*steps*, not calls: its reads stay :data:`~hgq_fpga.constraints.hook.RECORD_EVERY` steps
apart near the budget (every call, where a call holds that many steps), and the mean of the
cost that the steps recorded divides the LUTs summed over all the recorded steps by their
number (counted in calls, a call of ``n`` recording steps read ``n`` times the cost, and the
cost-gradient rules steered on that).

Example:
    >>> calls = Executions()
    >>> calls.begin(0), calls.begin(8), calls.begin(16)   # steps_per_execution=8
    (None, 8, 8)
    >>> calls.close(per_epoch=20)                         # the epoch's last call: steps 16-19
    4
"""

from __future__ import annotations

__all__ = ["Executions"]


class Executions:
    """The training steps of the call whose rule has not run yet (see the module docstring)."""

    def __init__(self) -> None:
        #: a call of the training function has begun and its rule has not run
        self.open = False
        self.first = 0  # the index of its first step in the epoch

    def begin(self, batch: int) -> int | None:
        """A call begins at step ``batch`` (Keras's ``on_train_batch_begin``); returns the steps of
        the call before it whose rule is still to run, None if there is none."""
        steps = self.close(until=batch) if self.open else None
        self.open, self.first = True, int(batch)
        return steps

    def close(self, until: int | None = None, per_epoch: int | None = None, per_execution: int = 1) -> int:
        """The open call's steps (at least 1): up to step ``until`` (the next call's first), else up to the
        epoch's ``per_epoch`` steps where Keras knows them, else ``per_execution`` (the model's
        ``steps_per_execution``); no call is open after it."""
        self.open = False
        if until is None:
            until = per_epoch if per_epoch and per_epoch > self.first else self.first + per_execution
        return max(int(until) - self.first, 1)
