"""SIGINT and SIGTERM as ``hbm.errors.Interrupted``, so that a command stops where it is.

The ``hbm`` command runs each command inside ``interruptible``: a signal raises ``Interrupted``
in the main thread at once (nutpie's sampler, waiting in Rust, checks for signals every few
milliseconds; a compile in a child process is killed with it), the run folder being written is
removed (``hbm.results.run_folder``), and the command exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from hbm.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def interruptible(then_ignore: bool = False) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise ``Interrupted``; afterwards the handlers before
    it return, or with ``then_ignore`` (the ``hbm`` process itself, whose command is done) the
    signals are ignored while Python shuts down. Outside the main thread (where Python delivers
    no signal) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        if then_ignore:
            ignore_further()
        else:
            for s, handler in previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def ignore_further() -> None:
    """Ignore SIGINT and SIGTERM from now on (while the stop of a command is being reported)."""
    if threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
