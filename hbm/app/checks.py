"""Checks of a command's arguments and output paths, made before anything is read or sampled.

A value out of range or an output path that cannot be used (a file where a folder is meant, a
folder inside a file, a path that is one of the command's inputs) is an ``ArgumentError`` (exit
2); a place hbm may not write in is a ``StorageError`` (exit 4). Both name the flag and the path,
so that a fit of minutes never ends on a mistake its arguments already showed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from hbm.app.config import FitConfig
from hbm.data.files import DIARY_SUFFIXES
from hbm.errors import ArgumentError, StorageError
from hbm.results import io

#: Seeds are handed to numpy and the samplers, which take unsigned 32-bit integers.
MAX_SEED = 2**32 - 1
#: The diary kinds ``hbm simulate`` writes (it writes no compressed CSV).
SIMULATE_SUFFIXES = tuple(s for s in DIARY_SUFFIXES if s != ".csv.gz")

Inputs = Iterable[str | Path | None]


def check_probability(value: float, flag: str = "--ci-prob") -> None:
    """``value`` strictly between 0 and 1 (a NaN is not)."""
    if not 0.0 < value < 1.0:
        raise ArgumentError(f"{flag} must be a probability strictly between 0 and 1, got {value}")


def check_seed(value: int, flag: str = "--seed") -> None:
    if not 0 <= value <= MAX_SEED:
        raise ArgumentError(f"{flag} must be an integer from 0 to {MAX_SEED}, got {value}")


def check_at_least(value: int, least: int, flag: str) -> None:
    if value < least:
        raise ArgumentError(f"{flag} must be at least {least}, got {value}")


def check_range(value: int, least: int, most: int, flag: str) -> None:
    if not least <= value <= most:
        raise ArgumentError(f"{flag} must be from {least} to {most}, got {value}")


def _existing_ancestor(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _same(a: Path, b: Path) -> bool:
    """The same file or folder (links followed); by resolved path when either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (links followed)."""
    return path.resolve().is_relative_to(folder.resolve())


def check_writable(folder: Path, flag: str, shown: Path | None = None) -> None:
    """A ``StorageError`` unless a file can be created in ``folder`` (tried, then removed).

    Permission bits do not say it for root or a read-only file system, so a file is made.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=".hbm-probe-", dir=folder)
    except OSError as exc:
        where = shown if shown is not None else folder
        raise StorageError(
            f"{flag} {where}: cannot write in {folder} ({exc.strerror or exc})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _check_parent(out: Path, flag: str) -> Path:
    """The nearest existing folder above ``out``, checked to be a folder hbm can write in."""
    above = _existing_ancestor(out.parent)
    if not above.is_dir():
        raise ArgumentError(f"{flag} {out}: {above} is a file, so nothing can be made inside it")
    check_writable(above, flag, out)
    return above


def check_out_folder(out: str | Path, inputs: Inputs = (), flag: str = "--out") -> None:
    """An output folder: not a file, not inside a file, holding no input, writable (it and the
    folder it is made in: a run folder is built beside its target and moved into place).

    Raises
    ------
    ArgumentError
        ``out`` is a file, lies inside a file, or is or holds one of ``inputs``.
    StorageError
        No file can be created where the folder is or is to be.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"{flag} {out}: is a file; give a folder (it is made if absent)")
    for source in inputs:
        if source is not None and Path(source).exists() and _inside(Path(source), out):
            raise ArgumentError(
                f"{flag} {out}: holds the input {source}, which writing there would overwrite or "
                "remove; give another folder"
            )
    _check_parent(out, flag)
    if out.is_dir():
        check_writable(out, flag)


def check_out_file(
    out: str | Path, inputs: Inputs = (), folders: Inputs = (), flag: str = "--out"
) -> None:
    """An output file: not a folder, not inside a file, not one of ``inputs``, not a file of the
    input ``folders`` (a run folder), in a folder hbm can write in.

    Raises
    ------
    ArgumentError, StorageError
        As ``check_out_folder``.
    """
    out = Path(out)
    if out.is_dir():
        raise ArgumentError(f"{flag} {out}: is a folder; give a file name")
    for source in inputs:
        if source is not None and Path(source).exists() and _same(out, Path(source)):
            raise ArgumentError(
                f"{flag} {out}: is the input {source}, which writing would overwrite; give "
                "another file name"
            )
    for folder in folders:
        if folder is not None and out.exists() and _inside(out, Path(folder)):
            raise ArgumentError(
                f"{flag} {out}: is a file of the run folder {folder}, an input; give a file "
                "outside it"
            )
    _check_parent(out, flag)


def check_simulated_diary(out: str | Path, priors: str | Path | None) -> None:
    """``hbm simulate --out``: a diary name ``hbm validate`` reads, and its truth file beside it,
    neither of them the priors file."""
    out = Path(out)
    name = out.name.lower()
    if not any(name.endswith(s) and len(name) > len(s) for s in SIMULATE_SUFFIXES):
        raise ArgumentError(
            f"--out {out}: a simulated diary is written as {', '.join(SIMULATE_SUFFIXES)}, the "
            "names hbm reads back; give one of those"
        )
    check_out_file(out, (priors,))
    check_out_file(io.truth_path(out), (priors,), flag="--out (its truth file)")


def check_fit(
    config: FitConfig, out: str | Path | None = None, config_file: str | Path | None = None
) -> None:
    """A fit's settings (flags and ``--config`` file alike) and its output folder.

    Raises
    ------
    ArgumentError, StorageError
        As ``check_out_folder``, or a setting out of range.
    FitError
        A sampler setting out of range (``SamplerConfig.check``).
    """
    check_probability(config.ci_prob)
    check_probability(config.fdr_level, "--fdr-level")
    check_seed(config.seed)
    check_at_least(config.min_days, 0, "--min-days")
    config.sampler().check()
    if out is not None:
        truth = io.truth_path(config.diary) if config.diary else None
        check_out_folder(out, (config.diary, config.priors, config_file, truth))
