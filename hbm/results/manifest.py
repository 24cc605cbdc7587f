"""A folder's manifest: every file's size and sha256, the run id, the data hash, the schema.

``seal`` writes ``manifest.json`` last, once a folder is complete; ``verify`` checks a folder
against it and refuses one whose files disagree, naming the file; ``read_manifest`` reads it.
``hbm.results.run_folder`` stages, seals and swaps whole folders with these.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hbm.errors import RunError, StorageError

MANIFEST_FILE = "manifest.json"
#: Version of the manifest's layout; a reader refuses another one.
MANIFEST_SCHEMA = 1
#: The file that names a folder's run id and data hash, by kind of folder.
INFO_FILES = {"run": "run.json", "comparison": "compare.json"}
_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.EIO: "input/output error",
}


def storage_error(path: str | Path, exc: BaseException, action: str = "write") -> StorageError:
    """A ``StorageError`` naming ``path`` and why it cannot be written (or read)."""
    reason = _REASONS.get(getattr(exc, "errno", None) or -1, "")
    detail = getattr(exc, "strerror", None) or str(exc)
    text = f"{reason} ({detail})" if reason else detail
    return StorageError(f"{path}: cannot {action}: {text}")


@dataclass(frozen=True)
class Entry:
    """One file of a manifest: its size, sha256 and the command that wrote it."""

    size: int
    sha256: str
    written_by: str


@dataclass(frozen=True)
class Manifest:
    """A folder's ``manifest.json`` (``read_manifest``, ``seal``).

    Attributes
    ----------
    kind
        ``"run"`` (``hbm fit``, the ``hbm/`` of ``hbm compare``) or ``"comparison"``.
    run_id, data_sha256
        From the folder's ``run.json`` (``compare.json``); ``""`` when it records none.
    files
        Every file by its path in the folder (``/``-separated), ``manifest.json`` aside.
    runs
        Sub-folders that are runs of their own (a comparison's ``hbm/``), with their run id.
    """

    kind: str
    run_id: str
    data_sha256: str
    files: Mapping[str, Entry]
    runs: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    schema: int = MANIFEST_SCHEMA

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "kind": self.kind,
            "run_id": self.run_id,
            "data_sha256": self.data_sha256,
            "created": self.created,
            "runs": dict(self.runs),
            "files": {n: vars(e) for n, e in sorted(self.files.items())},
        }


def new_run_id() -> str:
    """A fresh run id: UTC time to the second and 8 random hex digits."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _listing(folder: Path) -> list[str]:
    """The files a manifest lists: regular files, hidden (temporary) names and nested runs aside."""
    out = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not (here / d / MANIFEST_FILE).exists()
        )
        for name in sorted(files):
            path = here / name
            top_manifest = here == folder and name == MANIFEST_FILE
            if name.startswith(".") or path.is_symlink() or top_manifest:
                continue
            out.append(path.relative_to(folder).as_posix())
    return out


def _info(folder: Path, kind: str) -> dict[str, Any]:
    path = folder / INFO_FILES[kind]
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read ({exc})") from None
    return info if isinstance(info, dict) else {}


def _ids(info: Mapping[str, Any]) -> tuple[str, str]:
    diary = info.get("diary")
    data = diary.get("data_sha256", "") if isinstance(diary, dict) else ""
    return str(info.get("run_id", "")), str(data)


def _fit_attrs(path: Path) -> dict[str, str]:
    """``run_id`` and ``data_sha256`` from a fit.nc's root attrs (``""`` when absent)."""
    import netCDF4

    try:
        with netCDF4.Dataset(path, "r") as ds:
            names = ds.ncattrs()
            keys = ("run_id", "data_sha256")
            return {k: str(ds.getncattr(k)) if k in names else "" for k in keys}
    except (OSError, RuntimeError) as exc:
        raise RunError(f"{path}: cannot read the fit's attrs ({exc})") from None


def _check_fit(folder: Path, manifest: Manifest) -> None:
    """fit.nc must be the fit of this run: its run id and data hash those of ``run.json``."""
    if manifest.kind != "run" or "fit.nc" not in manifest.files:
        return
    path = folder / "fit.nc"
    attrs = _fit_attrs(path)
    for key, expected in (("run_id", manifest.run_id), ("data_sha256", manifest.data_sha256)):
        if attrs[key] and attrs[key] != expected:
            raise RunError(
                f"{path}: records {key} {attrs[key]!r}, but {folder / 'run.json'} records "
                f"{expected!r}: the fit is from another run; refit into {folder}"
            )


def fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    """Flush a file's (or a folder's) data to the disk."""
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal(
    folder: str | Path,
    kind: str,
    written_by: str,
    base: Manifest | None = None,
    unlisted: Collection[str] = (),
) -> Manifest:
    """Write ``folder``'s manifest, last: every file's size and sha256, flushed to disk.

    A file that ``base`` (the manifest of the run being updated) lists with the same hash keeps
    its ``written_by``; any other is ``written_by``'s. ``unlisted`` files stay out of it.
    """
    d = Path(folder)
    run_id, data = _ids(_info(d, kind))
    files = {}
    try:
        for name in (n for n in _listing(d) if n not in unlisted):
            path = d / name
            digest = sha256_of(path)
            fsync_path(path)
            old = base.files.get(name) if base is not None else None
            by = old.written_by if old is not None and old.sha256 == digest else written_by
            files[name] = Entry(path.stat().st_size, digest, by)
        runs = {
            sub.name: read_manifest(sub).run_id
            for sub in sorted(d.iterdir())
            if sub.is_dir() and (sub / MANIFEST_FILE).exists()
        }
        created = datetime.now(UTC).isoformat(timespec="seconds")
        manifest = Manifest(kind, run_id, data, files, runs, created)
        _check_fit(d, manifest)
        tmp = d / f".{MANIFEST_FILE}.tmp"
        text = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n"
        tmp.write_text(text, encoding="utf-8")
        fsync_path(tmp)
        os.replace(tmp, d / MANIFEST_FILE)
        fsync_path(d)
    except OSError as exc:
        raise storage_error(d, exc) from None
    return manifest


def _legacy(d: Path) -> RunError:
    again = (
        f"hbm fit --config {d / 'config.toml'} --out {d}"
        if (d / "config.toml").exists()
        else f"hbm fit DIARY --out {d}"
    )
    return RunError(
        f"{d}: no {MANIFEST_FILE}, so its files cannot be verified (written by an hbm before "
        f"run folders had manifests, or by hand); refit it: `{again}`"
    )


def read_manifest(folder: str | Path) -> Manifest:
    """A folder's manifest; a ``RunError`` when it has none or one this version cannot read."""
    d = Path(folder)
    path = d / MANIFEST_FILE
    if not path.exists():
        raise _legacy(d)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("schema") != MANIFEST_SCHEMA:
            raise RunError(
                f"{path}: manifest schema {doc.get('schema')!r}; this hbm reads "
                f"{MANIFEST_SCHEMA}: refit into {d}"
            )
        files = {
            str(n): Entry(int(e["size"]), str(e["sha256"]), str(e["written_by"]))
            for n, e in doc["files"].items()
        }
        return Manifest(
            str(doc["kind"]),
            str(doc["run_id"]),
            str(doc["data_sha256"]),
            files,
            {str(k): str(v) for k, v in doc.get("runs", {}).items()},
            str(doc.get("created", "")),
        )
    except OSError as exc:
        raise storage_error(path, exc, "read") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RunError(f"{path}: not a valid manifest ({exc!r})") from None


def verify(folder: str | Path, kind: str = "run") -> Manifest:
    """Check a folder against its manifest; a ``RunError`` naming the first file that disagrees.

    Every listed file must exist with its size and sha256; ``run.json`` (``compare.json``) must
    record the manifest's run id and data hash, fit.nc the same, and each nested run the run id
    the manifest gives it. Files the manifest does not list are not part of the run and no
    reader uses them.
    """
    d = Path(folder)
    manifest = read_manifest(d)
    if manifest.kind != kind:
        hint = f"; its run is {d / 'hbm'}" if manifest.kind == "comparison" else ""
        raise RunError(f"{d}: a {manifest.kind} folder, not a {kind} folder{hint}")
    for name, entry in manifest.files.items():
        path = d / name
        try:
            size = path.stat().st_size
            same = size == entry.size and sha256_of(path) == entry.sha256
        except FileNotFoundError:
            raise RunError(f"{path}: listed in {d / MANIFEST_FILE} but missing") from None
        except OSError as exc:
            raise storage_error(path, exc, "read") from None
        if not same:
            how = (
                f"{size} bytes, the manifest says {entry.size}"
                if size != entry.size
                else "another sha256"
            )
            raise RunError(
                f"{path}: does not match {d / MANIFEST_FILE} ({how}): changed since "
                f"{entry.written_by} wrote it, or from another run"
            )
    if _ids(_info(d, kind)) != (manifest.run_id, manifest.data_sha256):
        raise RunError(f"{d / INFO_FILES[kind]}: run id or data hash differ from {MANIFEST_FILE}")
    for sub, run_id in manifest.runs.items():
        found = read_manifest(d / sub).run_id
        if found != run_id:
            raise RunError(
                f"{d / sub}: holds run {found!r}, but {d} was made with run {run_id!r} "
                f"(refitted since?); rerun the command that wrote {d}"
            )
    _check_fit(d, manifest)
    return manifest
