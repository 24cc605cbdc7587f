"""The run folder as a whole: staged beside its target, sealed by a manifest, swapped in, verified.

A run folder is never written in place. ``staged(target)`` builds it as
``.<name>.partial-<pid>-<n>`` in the target's parent; ``seal`` then writes ``manifest.json``
last (every file's size and sha256, the run id, the data hash, the schema), and the folder is
swapped in by one rename
(``renameat2(RENAME_EXCHANGE)`` where the kernel has it; else the old folder is renamed aside
first). The previous run stays intact and valid until that instant and is deleted afterwards. On
a failure or an interrupt the staged folder is removed and the target is untouched. ``update``
adds files to a finished run the same way, its files hard-linked into the staged folder.
``hbm.results.manifest`` writes and verifies the manifest.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import shutil
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from hbm.errors import Interrupted, RunError, StorageError
from hbm.interrupts import check, held_signals
from hbm.results.manifest import (
    INFO_FILES,
    MANIFEST_FILE,
    Manifest,
    fsync_path,
    read_manifest,
    seal,
    storage_error,
    verify,
)

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); ``False`` where that is not available."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(stage: Path, target: Path) -> None:
    """Put ``stage`` at ``target``; the folder that was there is removed afterwards."""
    if not target.exists():
        os.rename(stage, target)
    elif _exchange(stage, target):
        shutil.rmtree(stage, ignore_errors=True)
    else:
        aside = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, aside)
        try:
            os.rename(stage, target)
        except OSError:
            os.rename(aside, target)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    with contextlib.suppress(OSError):  # swapped in: nothing after this may fail the write
        fsync_path(target.parent)


@contextlib.contextmanager
def _locked(parent: Path) -> Iterator[None]:
    """An exclusive lock on the parent folder while a run is swapped in (where flock exists)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_stale(target: Path) -> None:
    """Remove staged folders of ``target`` that killed processes (SIGKILL) left behind."""
    for kind in ("partial", "old"):
        for path in target.parent.glob(f".{target.name}.{kind}-*"):
            pid = path.name.rsplit(f".{kind}-", 1)[-1].split("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)


def check_replaceable(target: Path) -> None:
    """A ``RunError`` unless ``target`` is absent, empty, or a folder hbm wrote (replaced whole)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise RunError(f"{target}: exists and is not a folder; give --out a folder")
    names = {p.name for p in target.iterdir() if not p.name.startswith(".")}
    if names and not names & {MANIFEST_FILE, *INFO_FILES.values()}:
        shown = ", ".join(sorted(names)[:5])
        raise RunError(
            f"{target}: exists and is not a run folder (it holds {shown}); hbm replaces its "
            "--out folder whole: give a new or empty folder"
        )


_STAGES = itertools.count()


def _stage_for(target: Path, inputs: Sequence[str | Path]) -> Path:
    for given in inputs:
        path = Path(os.path.realpath(given))
        if path == target or target in path.parents:
            raise RunError(
                f"{given}: an input of this command lies in {target}, which is replaced whole; "
                "write the run to another folder"
            )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        check_replaceable(target)
        _clear_stale(target)
        stage = target.with_name(f".{target.name}.partial-{os.getpid()}-{next(_STAGES)}")
        stage.mkdir()
    except OSError as exc:
        raise storage_error(target, exc) from None
    return stage


def check_out(target: str | Path, inputs: Sequence[str | Path] = ()) -> None:
    """Check, before any work, that ``staged(target)`` can write: its staged folder is made and
    removed (a ``StorageError`` where the disk refuses), and ``target`` is replaceable."""
    _stage_for(_target(target), inputs).rmdir()


def _target(path: str | Path) -> Path:
    p = Path(os.path.abspath(path))
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def _abandon(stage: Path, target: Path, exc: BaseException) -> BaseException:
    """Remove the staged folder; what to raise instead of ``exc``."""
    with held_signals():
        shutil.rmtree(stage, ignore_errors=True)
    left = f"{target} was left as it was" if target.exists() else f"nothing was written to {target}"
    if isinstance(exc, Interrupted):
        return Interrupted(exc.signum, left)
    if isinstance(exc, StorageError | OSError):
        err = exc if isinstance(exc, StorageError) else storage_error(target, exc)
        return StorageError(f"{str(err).replace(str(stage), str(target))}; {left}")
    return exc


@contextlib.contextmanager
def staged(
    target: str | Path,
    kind: str = "run",
    written_by: str = "hbm",
    base: Manifest | None = None,
    inputs: Sequence[str | Path] = (),
    unlisted: Collection[str] = (),
) -> Iterator[Path]:
    """Yield an empty folder beside ``target``; on success seal it and swap it in.

    ``target`` must be absent, empty or a folder hbm wrote (``check_replaceable``), and hold
    none of ``inputs``. On an exception or an interrupt the staged folder is removed and
    ``target`` is untouched; a ``StorageError`` (or ``OSError``) names ``target`` and says so.
    With ``base`` (``update``), the swap happens only while ``target`` still holds that run;
    ``unlisted`` files (carried over by ``update``) stay out of the manifest.
    """
    tgt = _target(target)
    stage = _stage_for(tgt, inputs)
    try:
        yield stage
        check()  # a signal whose exception was lost on the way stops the run before its swap
        sealed = seal(stage, kind, written_by, base, unlisted)
    except BaseException as exc:
        raised = _abandon(stage, tgt, exc)
        if raised is exc:
            raise
        raise raised from None
    swapped = False
    try:
        with _locked(tgt.parent), held_signals():
            if base is not None and _manifest_or_none(tgt) != base:
                raise RunError(f"{tgt}: changed while {written_by} ran; run it again")
            _swap_in(stage, tgt)
            swapped = True
            _WRITTEN.add(tgt)
    except BaseException as exc:
        if not (swapped and isinstance(exc, Interrupted)):
            raised = _abandon(stage, tgt, exc)
            if raised is exc:
                raise
            raise raised from None
        # the signal came during the swap and was held until it was done
        done = f"{written_by}'s files" if base is not None else f"the new {kind} ({sealed.run_id})"
        raise Interrupted(exc.signum, f"{tgt} holds {done}") from None


#: The folders this process has swapped in (``written_here``).
_WRITTEN: set[Path] = set()


def written_here(folder: str | Path) -> bool:
    """Whether this process has swapped a folder in at ``folder`` (what an interrupt left)."""
    return _target(folder) in _WRITTEN


def _manifest_or_none(folder: Path) -> Manifest | None:
    try:
        return read_manifest(folder)
    except RunError:
        return None


@contextlib.contextmanager
def update(folder: str | Path, written_by: str, kind: str = "run") -> Iterator[Path]:
    """Yield a staged copy of a verified folder to add files to; swap it in on success.

    The copy hard-links the folder's files (a copy where links fail), leaving out those that
    ``written_by`` wrote before (a report's figures, replaced by the new report's); files the
    manifest does not list are carried over and stay unlisted. Write into it only through
    replacing writers (``hbm.results.io``): a linked file written in place would change the run
    being updated.
    """
    d = _target(folder)
    base = verify(d, kind)
    sources = [p for p in sorted(d.rglob("*")) if not _hidden(p.relative_to(d))]
    names = {p.relative_to(d).as_posix() for p in sources if not p.is_dir() or p.is_symlink()}
    unlisted = names - set(base.files) - {MANIFEST_FILE}
    with staged(d, kind, written_by, base, unlisted=unlisted) as stage:
        for src in sources:
            rel = src.relative_to(d)
            entry = base.files.get(rel.as_posix())
            if rel.as_posix() == MANIFEST_FILE or (entry and entry.written_by == written_by):
                continue
            dst = stage / rel
            if src.is_dir() and not src.is_symlink():
                dst.mkdir(exist_ok=True)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst, follow_symlinks=False)
            except OSError:
                shutil.copy2(src, dst, follow_symlinks=False)
        yield stage


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)
