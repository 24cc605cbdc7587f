"""Independent pieces of work with an identity: what a study, SBC or comparison hands to a runner.

A ``Task`` is a key and a call. The key names the result (the file a finished task is stored in)
and is the only source of the task's seeds (``task_seed``), so a task gives the same result
whichever process, machine or order runs it. A runner (``run_serial`` here; Dask and the
resumable store in ``hbm.app.engine``) maps tasks to ``{key: result}``.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: A key is a file name: letters, digits, ``.``, ``_``, ``-`` and ``=`` (no path separators).
KEY_PATTERN = re.compile(r"[A-Za-z0-9._=-]+")


@dataclass(frozen=True)
class Task:
    """A call and its identity.

    Parameters
    ----------
    key
        Unique within a run; names the stored result (``KEY_PATTERN``).
    fn, args
        The call; ``fn`` must be importable by name in another process (a module-level
        function) and ``args`` picklable.
    """

    key: str
    fn: Callable[..., Any] = field(repr=False)
    args: tuple[Any, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not KEY_PATTERN.fullmatch(self.key):
            raise ValueError(f"task key {self.key!r} must match {KEY_PATTERN.pattern}")

    def run(self) -> Any:
        """Call ``fn(*args)``."""
        return self.fn(*self.args)


#: Runs tasks, returns every task's result by key (in any order of execution).
Runner = Callable[[Sequence[Task]], dict[str, Any]]


def run_serial(tasks: Sequence[Task]) -> dict[str, Any]:
    """Run every task in this process, one after another."""
    check_keys(tasks)
    return {task.key: task.run() for task in tasks}


def check_keys(tasks: Sequence[Task]) -> None:
    """Raise ``ValueError`` when two tasks share a key."""
    dup = sorted(key for key, n in Counter(t.key for t in tasks).items() if n > 1)
    if dup:
        raise ValueError(f"task keys must be unique; repeated: {', '.join(dup)}")


def task_seed(*identity: object) -> int:
    """A seed from a task's identity: CRC-32 of its parts joined by ``/`` (0 to 2**32 - 1)."""
    return zlib.crc32("/".join(str(part) for part in identity).encode())
