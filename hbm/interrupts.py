"""SIGINT and SIGTERM as ``hbm.errors.Interrupted``, so that a command stops where it is.

The ``hbm`` command runs each command inside ``interruptible``: a signal raises ``Interrupted``
in the main thread at once (nutpie's sampler, waiting in Rust, checks for signals every few
milliseconds; a compile in a child process is killed with it), the run folder being written is
removed (``hbm.results.run_folder``), and the command exits 130 (SIGINT) or 143 (SIGTERM).

Python runs a signal handler between any two bytecodes, so its exception can land where it is
lost: in a weakref callback or ``__del__`` (dropped, and printed as "Exception ignored" unless
``interruptible``'s unraisable hook keeps it quiet), in Python code that Rust called and
unwraps (a panic), or turned into another exception (numba's dispatcher makes it a
``SystemError``; ``interruptible`` raises ``Interrupted`` for any exception that ends its block
after a signal). Hence two more tools: every signal is also
recorded, and ``check`` raises it again at the next checkpoint (each phase of a fit, before a
run folder is swapped in, at the end of the command); ``held_signals`` defers the signals over
a step that must not be cut (a foreign call that may call back into Python, a folder swap).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from hbm.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Signals received inside ``interruptible`` (the first one counts); ``check`` raises it again.
_received: list[int] = []


def _raise(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def _quiet_unraisable(previous: Any) -> Any:
    """An unraisable hook that, once a signal came, drops what it is given (the signal's own
    exception, recorded and raised again by ``check``, or an error it caused where it landed);
    before that it hands everything to ``previous``. A stopped command says one line, not a
    traceback from the ``__del__`` where the signal happened to land."""

    def hook(unraisable: Any) -> None:
        if not _received:
            previous(unraisable)

    return hook


def raise_on_signals() -> None:
    """From now on SIGINT and SIGTERM raise ``Interrupted`` (main thread): the ``hbm`` command
    calls it first, so a signal while its modules load is one line too (and one whose exception
    was lost then is raised by ``interruptible``'s first check)."""
    if _main_thread():
        sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
        for s in SIGNALS:
            signal.signal(s, _raise)


def check() -> None:
    """Raise ``Interrupted`` if a signal came inside ``interruptible``, even one whose exception
    was lost where it landed. Cheap; call it at every checkpoint."""
    if _received:
        raise Interrupted(_received[0])


def _restore(previous: dict[signal.Signals, Any]) -> None:
    for s, handler in previous.items():  # None: set outside Python, which SIG_DFL restores
        signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def interruptible(then_ignore: bool = False) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise ``Interrupted``; afterwards the handlers before
    it return, or with ``then_ignore`` (the ``hbm`` process itself, whose command is done) the
    signals are ignored while Python shuts down. A signal whose exception was lost inside the
    block is raised at its end. Outside the main thread (where Python delivers no signal) it
    changes nothing."""
    if not _main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_unraisable(previous_hook)
    try:
        yield
        check()
    except Exception as exc:
        # a signal's exception can come back as another one: numba's dispatcher turns it into
        # a SystemError, other libraries wrap it; after a signal, the command was interrupted
        if _received and not isinstance(exc, Interrupted):
            raise Interrupted(_received[0]) from exc
        raise
    finally:
        if not then_ignore:  # the hbm process keeps it while it shuts down
            sys.unraisablehook = previous_hook
        if then_ignore:
            ignore_further()
        else:
            _restore(previous)
            _received.clear()


def ignore_further() -> None:
    """Ignore SIGINT and SIGTERM from now on (while the stop of a command is being reported)."""
    if _main_thread():
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)


@contextmanager
def held_signals() -> Iterator[None]:
    """Defer SIGINT and SIGTERM (main thread) until the block is done, then deliver them.

    For the steps that must not stop half-way: swapping a folder in, removing a staged one,
    starting or cancelling nutpie's sampler (Rust code that calls back into Python).
    """
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda n, _f: caught.append(n)) for s in SIGNALS}
    try:
        yield
    finally:
        _restore(previous)
        if caught:
            first = signal.Signals(caught[0])
            handler = previous[first]
            if callable(handler):
                handler(first, None)
            elif handler != signal.SIG_IGN:
                signal.raise_signal(first)
