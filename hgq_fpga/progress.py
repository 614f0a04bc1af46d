"""An elapsed-time line on standard error while a step runs, for steps with no
natural count (an estimate of a large model, loading a framework).

Example::

    >>> with elapsed("estimate", enabled=False):   # enabled=True shows "estimate 00:03"
    ...     pass
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["elapsed"]


@contextlib.contextmanager
def elapsed(desc: str, *, enabled: bool = True, every: float = 0.5) -> Iterator[None]:
    """Show ``desc`` and the elapsed time (tqdm, refreshed every ``every`` seconds) until the block ends.

    The line is removed when the block ends; nothing is shown when not ``enabled``.
    """
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    stop = threading.Event()
    with tqdm(desc=desc, bar_format="{desc} {elapsed}", leave=False) as bar:
        def tick() -> None:
            while not stop.wait(every):
                bar.refresh()

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
