"""The workflows over a written run folder: profile, diagnose, predict, report, serve, decide.

Plain functions that ``hbm.app.cli`` calls and prints the results of; they read and write files
through ``hbm.results.io`` and print nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from hbm.app.checks import (
    check_at_least,
    check_out_file,
    check_probability,
    check_seed,
    check_writable,
)
from hbm.data.diary import MissingPolicy, load_diary
from hbm.defaults import CI_PROB, DAYS_NEEDED_USERS
from hbm.errors import HBMError, RunError
from hbm.results import io

if TYPE_CHECKING:
    import xarray as xr

    from hbm.app.service import ServiceData
    from hbm.evaluation.decide import Decision


def load_fit(path: str | Path) -> xr.DataTree:
    """A saved fit, as ArviZ reads it: with ``log_likelihood`` and ``posterior_predictive``.

    Parameters
    ----------
    path
        A run folder (its manifest verified first) or a fit.nc file.

    Returns
    -------
    xarray.DataTree
        Posterior, sample stats, ``constant_data``, ``observed_data`` and the two groups that
        fit.nc does not store, computed from it (``hbm.inference.predictive.with_predictive``):
        ``az.loo(hbm.load_fit(run))`` works as on a tree PyMC returned.
    """
    from hbm.inference.predictive import with_predictive

    p = Path(path)
    fit_file = io.check_run_dir(p) / io.FIT_FILE if p.is_dir() else p
    return with_predictive(io.load_fit(fit_file))


def find_profile(run_dir: str | Path, user_id: str) -> dict[str, Any]:
    """One user's trigger profile from a run folder; an ``HBMError`` listing some ids if absent."""
    d = io.check_run_dir(run_dir)
    profiles = io.read_json(d / io.PROFILES_FILE)
    for p in profiles:
        if p["user_id"] == user_id:
            return dict(p)
    ids = [p["user_id"] for p in profiles]
    raise HBMError(
        f"user '{user_id}' is not in {d / io.PROFILES_FILE} ({len(ids)} users, e.g. "
        f"{', '.join(ids[:5])})"
    )


def load_service_data(run_dir: str | Path) -> ServiceData:
    """Read and check a run folder for ``hbm serve`` (``hbm.app.service.ServiceData``)."""
    from hbm.app import service

    files = service.identify(run_dir)  # before reading: a change while reading shows on /health
    run = io.read_run(run_dir)
    pooling = run.run_info.get("pooling", "partial")
    draws = None
    if pooling != "none":
        names = ("mu", "tau") if pooling == "partial" else ("mu",)
        draws = io.load_fit(run.path / io.FIT_FILE, posterior_vars=names)
    return service.prepare(run, draws, files)


@dataclass(frozen=True)
class WrittenReport:
    """A written report (``write_run_report``): its page, its size, how many figures, seconds."""

    path: Path
    size: int
    figures: int
    seconds: float


def write_run_report(
    run_dir: str | Path,
    days_users: int = DAYS_NEEDED_USERS,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> WrittenReport:
    """Build a run folder's report (with "days needed" for partial pooling) and write it.

    ``progress`` is called with each figure's name as it is drawn.
    """
    from hbm.results.days_needed import days_needed
    from hbm.results.report import build_report

    check_at_least(days_users, 1, "--days-users")
    check_seed(seed)
    t0 = time.perf_counter()
    run = io.read_run(run_dir)
    check_writable(run.path, "report: run folder")
    tree = load_fit(run.path / io.FIT_FILE)  # the calibration figures read its predictive draws
    days = None
    if run.run_info.get("pooling", "partial") == "partial":
        days = days_needed(tree, n_users=days_users, seed=seed)
    listed = [run.optional(name) for name in (io.COMPARISON_FILE, io.PER_USER_METRICS_FILE)]
    comparison, per_user = (io.read_optional_csv(p) if p else None for p in listed)
    report = build_report(run, tree, days, comparison, per_user, progress=progress)
    path = io.write_report(run.path, report.html, report.figures)
    size = len(report.html.encode("utf-8"))
    return WrittenReport(path, size, len(report.figures), time.perf_counter() - t0)


def decide_folder(folder: str | Path) -> Decision:
    """The go / no-go of an ``hbm compare`` folder (its ``hbm/`` run) or of a run folder.

    Only a comparison made with the run's own fit counts: a compare folder's manifest must
    record the run id its ``hbm/`` holds (``io.verify_comparison``), and a run folder's
    ``comparison.csv`` must be listed in its manifest; anything else is a ``RunError``.
    """
    from hbm.evaluation.decide import decide

    d = Path(folder)
    if (d / "hbm").is_dir():
        run = io.read_run(d / "hbm")
        path = io.verify_comparison(d, run)
    else:
        run = io.read_run(d)
        path = run.optional(io.COMPARISON_FILE)
        if path is None and (d / io.COMPARISON_FILE).exists():
            raise RunError(
                f"{d / io.COMPARISON_FILE}: not part of this run (not in its "
                f"{io.MANIFEST_FILE}): it was made for another fit; run `hbm compare` again"
            )
    comparison = io.read_optional_csv(path) if path is not None else None
    return decide(run.population, run.users, comparison)


@dataclass(frozen=True)
class RunDiagnostics:
    """A run folder's diagnostics (``read_diagnostics``).

    Attributes
    ----------
    diagnostics
        ``diagnostics.json``.
    table
        ArviZ's diagnostics summary of the population variables.
    tree
        The fit.
    """

    diagnostics: dict[str, Any]
    table: pd.DataFrame
    tree: xr.DataTree


def read_diagnostics(run_dir: str | Path) -> RunDiagnostics:
    """Read a run folder's diagnostics and summarize its population variables with ArviZ."""
    import arviz as az

    d = io.check_run_dir(run_dir)
    diagnostics = io.read_json(d / io.DIAGNOSTICS_FILE)
    tree = io.load_fit(d / io.FIT_FILE)
    names = [n for n in ("a0", "sigma_a", "mu", "tau") if n in tree["posterior"].data_vars]
    table = az.summary(tree, var_names=names, kind="diagnostics", round_to="none")
    return RunDiagnostics(diagnostics, table, tree)


def write_diagnostic_figures(run_dir: str | Path, tree: xr.DataTree) -> list[Path]:
    """Add the rank, energy and forest figures to ``run_dir/figures/`` (``io.update_run``)."""
    from hbm.results.plots import DIAGNOSTIC_FIGURES
    from hbm.results.report_figures import has_chains_to_compare

    names = [
        Path("figures") / fname
        for fname in DIAGNOSTIC_FIGURES
        if fname != "rank.png" or has_chains_to_compare(tree)  # one chain: nothing to compare
    ]
    with io.update_run(run_dir, "hbm diagnose") as stage:
        for name in names:
            pc = DIAGNOSTIC_FIGURES[name.name](tree)
            with io.atomic_path(stage / name) as tmp:
                pc.savefig(tmp, format="png", dpi=90)
    return [Path(run_dir) / name for name in names]


def predict_days(
    run_dir: str | Path,
    diary_path: str | Path,
    out: str | Path,
    column_map: Mapping[str, str] | None = None,
    missing: MissingPolicy = "error",
    ci_prob: float = CI_PROB,
    seed: int = 0,
) -> pd.DataFrame:
    """Risk for each day of a diary from a run's fit (unseen users from the population); written
    to ``out`` as CSV, dates as YYYY-MM-DD, and returned."""
    from hbm.results.prediction import fit_priors, predict

    check_probability(ci_prob)
    check_seed(seed)
    d = io.check_run_dir(run_dir)
    check_out_file(out, (diary_path,), (d,))
    tree = io.load_fit(d / io.FIT_FILE)
    priors = fit_priors(tree)
    diary = load_diary(diary_path, priors, column_map=column_map, missing=missing)
    table = predict(tree, diary, ci_prob=ci_prob, seed=seed)
    table["date"] = table["date"].dt.strftime("%Y-%m-%d")
    io.write_csv(out, table)
    return table
