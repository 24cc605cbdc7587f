"""Exception hierarchy: every message names the file, the place in it and what was expected."""

from __future__ import annotations

import signal


class HBMError(Exception):
    """Base class of every error hbm raises on bad input or a failed step."""


class PriorsError(HBMError):
    """A priors file is missing, unreadable or violates the priors schema."""


class DiaryError(HBMError):
    """A diary file is missing, unreadable or violates the diary format."""


class FitError(HBMError):
    """A model cannot be built or fitted with the given configuration."""


class RunError(HBMError):
    """A run folder is missing a file or holds files that do not agree."""


class ConfigError(HBMError):
    """A run configuration file is missing, unreadable or holds an unknown key or a wrong type."""


class ArgumentError(HBMError):
    """A command's argument is out of range, or an output path is unusable or names an input."""


class StorageError(HBMError):
    """A file or run folder cannot be written or read back (disk full, permissions, I/O)."""


class PortInUseError(HBMError):
    """``hbm serve`` cannot listen on the address it was given."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped a command (raised by the ``hbm`` command's signal handler).

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` swallows it;
    not a ``KeyboardInterrupt``, which nutpie and PyMC catch to return a partial trace.
    ``detail`` says what the stop left behind (e.g. that a run folder is unchanged).
    """

    def __init__(self, signum: int, detail: str = "") -> None:
        super().__init__(signum, detail)
        self.signum = signum
        self.detail = detail

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM (128 + the signal's number)."""
        return EXIT_SIGINT if self.signum == signal.SIGINT else EXIT_SIGTERM

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name if self.signum in _SIGNUMS else str(self.signum)
        return f"interrupted by {name}" + (f"; {self.detail}" if self.detail else "")


#: Exit codes of the ``hbm`` command, each distinct (README, "Exit codes").
EXIT_OK = 0
EXIT_INPUT = 2  # bad input: diary, priors, configuration, arguments, run folder
EXIT_UNRELIABLE = 3  # hbm fit --strict on a fit that failed the gate
EXIT_STORAGE = 4  # a file or folder could not be written or read (StorageError)
EXIT_PORT = 5  # hbm serve: the port is in use (PortInUseError)
EXIT_SIGINT = 130  # interrupted (Ctrl-C), 128 + SIGINT
EXIT_SIGTERM = 143  # terminated, 128 + SIGTERM


_SIGNUMS = frozenset(int(s) for s in signal.Signals)


def exit_code(exc: HBMError) -> int:
    """The exit code of the ``hbm`` command for an error."""
    if isinstance(exc, StorageError):
        return EXIT_STORAGE
    if isinstance(exc, PortInUseError):
        return EXIT_PORT
    return EXIT_INPUT
