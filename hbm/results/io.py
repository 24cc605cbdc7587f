"""Files: atomic writers, fit save/load, simulated cohorts and the run folder's exports.

Every writer writes a temporary file in the target folder and renames it over the target, so a
reader never sees half a file and an interrupted run leaves the previous file intact; a write
the disk or its permissions refuse is a ``StorageError`` naming the file. A run folder is
written whole (``staged_run``, ``hbm.results.run_folder``) and every reader here verifies its
manifest first (``check_run_dir``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import tomli_w
import xarray as xr

from hbm.errors import ConfigError, RunError, StorageError
from hbm.interrupts import held_signals
from hbm.model.options import COMPUTED_GROUPS
from hbm.results import run_folder
from hbm.results.fit_storage import decode_exposures, encode_exposures
from hbm.results.manifest import (
    MANIFEST_FILE,
    Manifest,
    new_run_id,
    read_manifest,
    seal,
    storage_error,
    verify,
)

#: ``with staged_run(out, kind, written_by) as stage:`` write a run folder into ``stage``; it is
#: sealed by its manifest and swapped in at the end, or removed on failure (``run_folder.staged``).
staged_run = run_folder.staged
#: ``with update_run(run_dir, written_by) as stage:`` add files to a finished run, as a whole.
update_run = run_folder.update
#: ``seal_run(folder, kind, written_by)``: write a complete folder's manifest (a run nested in a
#: staged folder: the ``hbm/`` of ``hbm compare``).
seal_run = seal
#: ``check_out(out, inputs)``: before a long command, whether ``staged_run(out)`` can write.
check_out = run_folder.check_out
#: ``written_here(folder)``: whether this process swapped a folder in there.
written_here = run_folder.written_here

FIT_FILE = "fit.nc"
POPULATION_FILE = "population.csv"
WEIGHTS_CSV = "weights.csv"
WEIGHTS_PARQUET = "weights.parquet"
USERS_FILE = "users.csv"
PROFILES_FILE = "profiles.json"
DIAGNOSTICS_FILE = "diagnostics.json"
RUN_FILE = "run.json"
#: The resolved configuration of ``hbm fit`` (TOML; ``hbm fit --config RUN/config.toml`` reruns it).
#: Not in ``RUN_FILES``: a run folder of ``hbm compare`` or of an earlier version has none.
CONFIG_FILE = "config.toml"
RUN_FILES = (
    FIT_FILE,
    POPULATION_FILE,
    WEIGHTS_CSV,
    WEIGHTS_PARQUET,
    USERS_FILE,
    PROFILES_FILE,
    DIAGNOSTICS_FILE,
    RUN_FILE,
)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise storage_error(target, exc) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_path, target)
    except OSError as exc:
        raise storage_error(target, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write(target: str | Path, writer: Callable[[Path], object]) -> Path:
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def write_text(target: str | Path, text: str) -> Path:
    return _write(target, lambda p: p.write_text(text, encoding="utf-8"))


def write_bytes(target: str | Path, data: bytes) -> Path:
    return _write(target, lambda p: p.write_bytes(data))


def remove_tree(path: str | Path) -> None:
    """Remove a folder hbm wrote (a finished command's task store); absent is fine."""
    shutil.rmtree(path, ignore_errors=not Path(path).exists())


def write_json(target: str | Path, obj: Any) -> Path:
    return write_text(target, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_toml(target: str | Path, doc: dict[str, Any], comment: str = "") -> Path:
    """Write a TOML document (``tomli_w``), after ``comment`` as ``#`` lines."""
    head = "".join(f"# {line}".rstrip() + "\n" for line in comment.splitlines())
    return write_text(target, head + tomli_w.dumps(doc))


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file (``tomllib``); a ``ConfigError`` naming the file if it cannot."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None


def write_csv(target: str | Path, table: pd.DataFrame) -> Path:
    return _write(target, lambda p: table.to_csv(p, index=False, lineterminator="\n"))


def write_parquet(target: str | Path, table: pd.DataFrame) -> Path:
    return _write(target, lambda p: table.to_parquet(p, index=False))


def save_fit(tree: xr.DataTree, target: str | Path) -> Path:
    """Save a fit as netCDF (groups as netCDF groups; attrs survive the round trip), compressed.

    The groups computed from the fit when asked (``COMPUTED_GROUPS``: log-likelihood and
    posterior predictive, ``hbm.inference.predictive.with_predictive``) are left out.
    """
    attrs, stored = tree.attrs, {name: child.to_dataset() for name, child in tree.children.items()}
    if "constant_data" in stored:
        stored["constant_data"] = encode_exposures(stored["constant_data"], attrs)
    tree = xr.DataTree.from_dict(
        {f"/{name}": ds for name, ds in stored.items() if name not in COMPUTED_GROUPS}
    )
    tree.attrs.update(attrs)
    encoding = {
        f"/{name}": {
            var: {"zlib": True, "complevel": 4, "shuffle": True}
            for var in child.to_dataset().data_vars
        }
        for name, child in tree.children.items()
    }

    def write(p: Path) -> None:
        try:
            # a signal raised inside xarray's netCDF lock hangs its cleanup on that same lock:
            # the write finishes first, then the signal stops the command
            with held_signals():
                tree.to_netcdf(p, engine="netcdf4", encoding=encoding)
        except RuntimeError as exc:  # the netCDF library's errors name no cause ("HDF error")
            raise _netcdf_error(Path(target), p, exc) from None

    return _write(target, write)


#: Free space below which a failed netCDF write is reported as a full disk.
FULL_DISK_BYTES = 64 << 20


def _netcdf_error(target: Path, tmp: Path, exc: RuntimeError) -> StorageError:
    """A ``StorageError`` for a netCDF write; a full disk said so (netCDF reports "HDF error")."""
    try:
        free = shutil.disk_usage(tmp.parent).free
    except OSError:
        free = -1
    if 0 <= free < FULL_DISK_BYTES:
        return StorageError(
            f"{target}: cannot write: the disk is full ({free / 1e6:.1f} MB free; netCDF: {exc})"
        )
    return StorageError(f"{target}: cannot write the fit ({exc})")


def load_fit(path: str | Path, posterior_vars: tuple[str, ...] | None = None) -> xr.DataTree:
    """Load a saved fit into memory (the file is closed afterwards).

    With ``posterior_vars``, only those posterior variables (and the root attrs) are read: the
    population draws load without reading the large groups (log-likelihood, predictive draws).
    """
    p = Path(path)
    if not p.exists():
        raise RunError(f"{p}: fit file not found")
    try:
        with held_signals(), xr.open_datatree(p, engine="netcdf4") as tree:  # as save_fit
            if posterior_vars is None:
                loaded = tree.load()
                if "constant_data" in loaded.children:
                    data = decode_exposures(loaded["constant_data"].to_dataset())
                    loaded["constant_data"] = xr.DataTree(data)
                return loaded
            if "posterior" not in tree.children:
                raise RunError(f"{p}: the fit holds no posterior group")
            post = tree["posterior"].to_dataset()
            missing = [v for v in posterior_vars if v not in post]
            if missing:
                raise RunError(f"{p}: the posterior holds no {missing}")
            small = xr.DataTree.from_dict({"posterior": post[list(posterior_vars)].load()})
            small.attrs.update(tree.attrs)
            return small
    except (OSError, ValueError) as exc:
        raise RunError(f"{p}: cannot read fit ({exc})") from None


def read_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.exists():
        raise RunError(f"{p}: file not found")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunError(f"{p}: not valid JSON at line {exc.lineno}: {exc.msg}") from None


def check_run_dir(run_dir: str | Path) -> Path:
    """The run folder, if it holds every export and they match its manifest.

    Raises ``RunError`` naming what is missing, or the first file that disagrees with
    ``manifest.json`` (``run_folder.verify``); a folder without a manifest (an earlier hbm's)
    is refused with the command that refits it.
    """
    return _verified(run_dir)[0]


def _verified(run_dir: str | Path) -> tuple[Path, Manifest]:
    d = Path(run_dir)
    if not d.is_dir():
        raise RunError(f"{d}: run folder not found")
    missing = [f for f in RUN_FILES if not (d / f).exists()]
    if missing:
        if (d / MANIFEST_FILE).exists() and read_manifest(d).kind != "run":
            verify(d, "run")  # a comparison folder: says where its run is
        raise RunError(f"{d}: run folder lacks {missing}; was `hbm fit` run with --out {d}?")
    manifest = verify(d, "run")
    unlisted = [f for f in RUN_FILES if f not in manifest.files]
    if unlisted:
        raise RunError(f"{d / MANIFEST_FILE}: does not list {unlisted}; refit into {d}")
    return d, manifest


@dataclass(frozen=True)
class RunFolder:
    """The exports of a finished run, read back (``read_run``)."""

    path: Path
    population: pd.DataFrame
    weights: pd.DataFrame
    users: pd.DataFrame
    profiles: list[dict[str, Any]]
    diagnostics: dict[str, Any]
    run_info: dict[str, Any]
    manifest: Manifest | None = None

    def optional(self, name: str) -> Path | None:
        """The path of a file the run's manifest lists (``comparison.csv``), else ``None``.

        A file in the folder that the manifest does not list is not part of this run.
        """
        listed = self.manifest is not None and name in self.manifest.files
        return self.path / name if listed else None


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype={"user_id": str})
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read ({exc})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise RunError(f"{path}: lacks columns {missing}; expected an export of `hbm fit`")
    return table


def read_run(run_dir: str | Path) -> RunFolder:
    """Read a run folder's tables and JSON exports, checking that they agree with each other.

    Raises ``RunError`` naming the file and what is wrong: a missing export, a file that does
    not match the manifest, missing columns, or profiles and users tables that list different
    users.
    """
    d, manifest = _verified(run_dir)
    population = _read_csv(d / POPULATION_FILE, ("feature", "ci_prob", "ci_kind"))
    weights = _read_csv(d / WEIGHTS_CSV, ("user_id", "feature", "mean", "ci_lb", "ci_ub", "class"))
    users = _read_csv(d / USERS_FILE, ("user_id", "days_logged", "confidence", "reliable"))
    profiles = read_json(d / PROFILES_FILE)
    if not isinstance(profiles, list) or not all(
        isinstance(p, dict) and "user_id" in p for p in profiles
    ):
        raise RunError(f"{d / PROFILES_FILE}: expected a list of profiles with 'user_id'")
    ids = [str(p["user_id"]) for p in profiles]
    if ids != users["user_id"].tolist():
        extra = sorted(set(ids) ^ set(users["user_id"]))[:5]
        raise RunError(
            f"{d}: {PROFILES_FILE} and {USERS_FILE} list different users (e.g. {extra}); "
            "the folder mixes two runs"
        )
    diagnostics = read_json(d / DIAGNOSTICS_FILE)
    run_info = read_json(d / RUN_FILE)
    for name, obj in ((DIAGNOSTICS_FILE, diagnostics), (RUN_FILE, run_info)):
        if not isinstance(obj, dict):
            raise RunError(f"{d / name}: expected a JSON object")
    return RunFolder(d, population, weights, users, profiles, diagnostics, run_info, manifest)


def write_run(
    run_dir: str | Path, tree: xr.DataTree, exports: Any, run_info: dict[str, Any]
) -> Path:
    """Write a fit and its exports (``hbm.results.tables.Exports``) into a folder.

    ``run_dir`` is the folder of ``staged_run``, which seals and swaps it in. ``run_info`` gets a
    ``run_id`` (``new_run_id``) when it has none; fit.nc records it in its attrs.
    """
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    run_id = run_info.setdefault("run_id", new_run_id())
    run_info.setdefault("trigger_calls", exports.calls)
    saved = tree.copy(deep=False)
    saved.attrs["run_id"] = run_id
    save_fit(saved, d / FIT_FILE)
    write_csv(d / POPULATION_FILE, exports.population)
    write_csv(d / WEIGHTS_CSV, exports.weights)
    write_parquet(d / WEIGHTS_PARQUET, exports.weights)
    write_csv(d / USERS_FILE, exports.users)
    write_json(d / PROFILES_FILE, exports.profiles)
    write_json(d / DIAGNOSTICS_FILE, exports.diagnostics)
    write_json(d / RUN_FILE, run_info)
    return d


REPORT_FILE = "report.html"
COMPARISON_FILE = "comparison.csv"
PER_USER_METRICS_FILE = "per_user_metrics.csv"


def verify_comparison(folder: str | Path, run: RunFolder) -> Path | None:
    """The comparison table of an ``hbm compare`` folder, made with ``run`` (its ``hbm/``).

    The folder must match its manifest, which must record the run id ``hbm/`` holds now and the
    same data hash (a ``RunError`` otherwise: ``hbm/`` was refitted since the comparison).
    """
    d = Path(folder)
    top = verify(d, "comparison")
    sub = run.path.relative_to(d).as_posix() if run.path.is_relative_to(d) else run.path.name
    if sub not in top.runs or run.manifest is None:
        raise RunError(f"{d / MANIFEST_FILE}: records no run {sub}/; run `hbm compare` again")
    if top.data_sha256 != run.manifest.data_sha256:
        raise RunError(
            f"{run.path}: fitted to data {run.manifest.data_sha256[:12]}, but {d} compared "
            f"data {top.data_sha256[:12]}; run `hbm compare` again"
        )
    return d / COMPARISON_FILE if COMPARISON_FILE in top.files else run.optional(COMPARISON_FILE)


def read_optional_csv(path: str | Path) -> pd.DataFrame | None:
    """A table a folder may hold (``comparison.csv``); ``None`` when it is absent."""
    p = Path(path)
    return _read_csv(p, ()) if p.exists() else None


def write_report(run_dir: str | Path, page: str, figures: dict[str, bytes]) -> Path:
    """Add ``report.html`` and ``figures/<name>.png`` to a run folder (``update_run``).

    The files of an earlier report of the run are replaced; the manifest lists the new ones.
    """
    with update_run(run_dir, "hbm report") as stage:
        for name, png in figures.items():
            write_bytes(stage / "figures" / name, png)
        write_text(stage / REPORT_FILE, page)
    return Path(run_dir) / REPORT_FILE


def write_cohort(target: str | Path, diary_frame: pd.DataFrame, truth: dict[str, Any]) -> Path:
    """Write a simulated diary (CSV, dates as YYYY-MM-DD) and ``<stem>.truth.json`` beside it."""
    target = Path(target)
    frame = diary_frame.copy()
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")
    if target.suffix.lower() in (".parquet", ".pq"):
        write_parquet(target, frame)
    else:
        write_csv(target, frame)
    write_json(truth_path(target), truth)
    return target


def truth_path(diary_path: str | Path) -> Path:
    """``data/x.csv`` -> ``data/x.truth.json``."""
    p = Path(diary_path)
    return p.with_name(p.stem + ".truth.json")
