"""Signals as ``Interrupted``: raised at once, raised again where the first exception was lost,
held over steps that must not be cut."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from hbm.errors import Interrupted
from hbm.interrupts import check, held_signals, interruptible


class _SignalsInDel:
    """An object whose ``__del__`` sends a signal: the handler's exception lands in ``__del__``,
    where Python prints "Exception ignored" and drops it (as in a weakref callback)."""

    def __init__(self, sig: int) -> None:
        self.sig = sig

    def __del__(self) -> None:
        os.kill(os.getpid(), self.sig)


def test_a_signal_raises_interrupted_with_its_exit_code():
    with pytest.raises(Interrupted) as info, interruptible():
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal did not stop the block")
    assert (info.value.signum, info.value.exit_code) == (signal.SIGTERM, 143)


def test_a_lost_exception_is_raised_again_by_check_and_at_the_end(monkeypatch, capfd):
    lost = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: lost.append(u.exc_type))
    reached_end = []
    with pytest.raises(Interrupted) as info, interruptible():
        doomed = _SignalsInDel(signal.SIGINT)
        del doomed
        # the handler's exception was dropped where it landed, quietly: not handed on to the
        # hook before the block, nor printed as "Exception ignored"
        assert lost == []
        with pytest.raises(Interrupted):
            check()
        reached_end.append(True)  # the block ends normally: interruptible raises it once more
    assert reached_end == [True]
    assert info.value.exit_code == 130
    assert capfd.readouterr().err == ""
    assert sys.unraisablehook is not None and lost == []


def test_other_unraisable_exceptions_still_reach_the_hook(monkeypatch):
    lost = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: lost.append(u.exc_type))
    before = sys.unraisablehook

    class _Fails:
        def __del__(self) -> None:
            raise ValueError("not a signal")

    with interruptible():
        doomed = _Fails()
        del doomed
    assert lost == [ValueError]
    assert sys.unraisablehook is before  # restored after the block


def test_check_is_quiet_without_a_signal_and_after_the_block():
    with interruptible():
        check()
    with pytest.raises(Interrupted), interruptible():
        os.kill(os.getpid(), signal.SIGINT)
    check()  # the signal belonged to the block before


def test_held_signals_deliver_to_the_handler_before_them():
    caught = []
    previous = signal.signal(signal.SIGINT, lambda n, _f: caught.append(n))
    try:
        with held_signals():
            os.kill(os.getpid(), signal.SIGINT)
            assert caught == []
        assert caught == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_held_signals_inside_interruptible_raise_after_the_step():
    steps = []
    with pytest.raises(Interrupted), interruptible():
        with held_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("finished")
        steps.append("after")
    assert steps == ["finished"]


def _wrapped_signal() -> None:
    """A library that catches the signal's exception and raises its own (numba's dispatcher)."""
    try:
        os.kill(os.getpid(), signal.SIGTERM)
    except Interrupted as exc:
        raise SystemError("returned a result with an exception set") from exc


def test_an_exception_that_wraps_a_signal_is_the_signal():
    with pytest.raises(Interrupted) as info, interruptible():
        _wrapped_signal()
    assert info.value.signum == signal.SIGTERM
    assert isinstance(info.value.__cause__, SystemError)


def test_an_error_without_a_signal_is_itself():
    with pytest.raises(SystemError), interruptible():
        raise SystemError("a real one")


def test_after_a_signal_no_unraisable_error_is_printed(monkeypatch, capfd):
    lost = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: lost.append(u.exc_type))

    class _FailsAfterTheSignal:
        def __del__(self) -> None:
            _wrapped_signal()

    with pytest.raises(Interrupted), interruptible():
        doomed = _FailsAfterTheSignal()
        del doomed
    assert lost == [] and capfd.readouterr().err == ""
