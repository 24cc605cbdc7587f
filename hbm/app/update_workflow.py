"""``hbm update RUN DIARY --out NEW_RUN``: new days and new users without refitting the cohort.

The users of DIARY get their posterior from RUN's population draws and their own rows
(``hbm.inference.update``); every other user and the population stay RUN's. NEW_RUN is a run
folder like the one ``hbm fit`` writes (fit.nc, tables, profiles, diagnostics, run.json,
config.toml), staged and swapped in whole, plus ``update_users.csv`` (each updated user's method
and diagnostics); run.json's ``update`` entry records what it was updated from and whether a
refit is due.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from hbm.app.checks import check_range, check_seed
from hbm.app.config import FitConfig, document, read_config, resolve
from hbm.app.workflows import now
from hbm.data.diary import Diary, MissingPolicy, load_diary
from hbm.data.exposures import exposures
from hbm.errors import ArgumentError
from hbm.inference.config import SamplerConfig
from hbm.inference.refit_rule import RefitAdvice, refit_advice
from hbm.inference.update import (
    MAX_PROPOSALS,
    METHOD,
    PROPOSALS,
    Updated,
    check_new_days,
    update_fit,
)
from hbm.results import io
from hbm.results.io import RunFolder
from hbm.results.json_values import json_ready
from hbm.results.tables import build_exports

if TYPE_CHECKING:
    import xarray as xr

    from hbm.data.exposures import Design
    from hbm.data.priors import Priors
    from hbm.inference.fitting import FitResult

UPDATE_USERS_FILE = "update_users.csv"


@dataclass(frozen=True)
class UpdateRun:
    """An update written into its run folder (``update_and_export``)."""

    out: Path
    users: pd.DataFrame
    refit: RefitAdvice
    run_info: dict[str, Any]


def _run_config(run_dir: Path) -> FitConfig:
    """The fit's resolved configuration (its config.toml), for the diary and export settings."""
    path = run_dir / io.CONFIG_FILE
    return resolve(read_config(path)) if path.exists() else FitConfig()


def combined_sha256(*parts: str) -> str:
    """The data hash of an updated run: its fit's data hash and the added diary's, chained."""
    return hashlib.sha256("+".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class UpdateOptions:
    """``hbm update``'s settings: the users' seed, proposals per draw, and how to read DIARY
    (``None``: as the fit read its diary, from RUN's config.toml)."""

    seed: int = 0
    proposals: int = PROPOSALS
    missing: MissingPolicy | None = None
    column_map: Mapping[str, str] | None = None


def _check_paths(run: RunFolder, diary_path: str | Path, out: Path) -> None:
    """NEW_RUN is written whole: never RUN itself nor a folder inside it, nor over DIARY."""
    where = Path(os.path.realpath(out))
    if run.path.resolve() in where.parents:
        raise ArgumentError(
            f"--out {out} lies inside the run folder {run.path}; write the updated run beside it"
        )
    io.check_out(out, inputs=[diary_path, run.path])


def update_and_export(
    run_dir: str | Path,
    diary_path: str | Path,
    out: str | Path,
    options: UpdateOptions = UpdateOptions(),
    command: str = "hbm update",
) -> UpdateRun:
    """Update RUN's users with DIARY's days and write NEW_RUN ``out`` (module docstring).

    Raises
    ------
    RunError
        When RUN is not a verified run folder of a partial-pooling fit.
    DiaryError
        On a bad diary, or a known user's day on or before the fit's last day for them.
    ArgumentError
        On a seed or proposals out of range, or ``out`` at RUN, inside it or holding DIARY.
    """
    from hbm.results.prediction import continued_from_fit, fit_exposure_means, fit_priors

    started, t0 = now(), time.perf_counter()
    check_seed(options.seed)
    check_range(options.proposals, 1, MAX_PROPOSALS, "--proposals")
    run = io.read_run(run_dir)
    out = Path(out)
    _check_paths(run, diary_path, out)
    config = _run_config(run.path)
    tree = io.load_fit(run.path / io.FIT_FILE)
    priors = fit_priors(tree)
    diary = load_diary(
        diary_path,
        priors,
        column_map=options.column_map if options.column_map is not None else config.columns,
        missing=options.missing or config.missing,
        min_days=1,
    )
    check_new_days(tree, diary.data)
    design = exposures(diary, priors, exposure_means=fit_exposure_means(tree))
    design = continued_from_fit(tree, design, diary)
    t_load = time.perf_counter() - t0
    updated = update_fit(tree, design, options.seed, options.proposals, config.progress)
    previous = run.run_info.get("update")
    advice = refit_advice(tree, updated, previous.get("refit") if previous else None)
    data_sha = combined_sha256(str(tree.attrs.get("data_sha256", "")), diary.sha256)
    new_tree = updated.tree
    new_tree.attrs["data_sha256"] = data_sha
    result = _as_fit(tree, new_tree, updated.design, priors, run.run_info, advice)
    exports = build_exports(
        result, run.run_info["ci_prob"], run.run_info["ci_kind"], config.min_days, config.fdr_level
    )
    info = _run_info(run.run_info, command, started, data_sha, diary, updated, advice, options)
    info["reliable"] = result.diagnostics.reliable
    info["reliability_reasons"] = list(result.diagnostics.reasons)
    info["timings"] = {"load_validate_s": t_load, "update_s": time.perf_counter() - t0 - t_load}
    with io.staged_run(out, "run", command, inputs=[diary_path, run.path]) as stage:
        io.write_run(stage, new_tree, exports, info)
        io.write_csv(stage / UPDATE_USERS_FILE, updated.users)
        io.write_toml(stage / io.CONFIG_FILE, document(config), UPDATED_CONFIG_COMMENT)
        info["timings"]["total_s"] = time.perf_counter() - t0
        info["finished"] = now()
        io.write_json(stage / io.RUN_FILE, info)
    return UpdateRun(out, updated.users, advice, info)


#: config.toml of an updated run: the configuration of the fit whose population it keeps.
UPDATED_CONFIG_COMMENT = (
    "The configuration of the fit whose population this updated run keeps (run.json: "
    "update.from_run).\nRefitting with it (hbm fit --config THIS_FILE) refits that fit's diary "
    "only: give the whole diary (fitted and added days) as DIARY."
)


def _as_fit(
    tree: xr.DataTree,
    new_tree: xr.DataTree,
    design: Design,
    priors: Priors,
    run_info: dict[str, Any],
    advice: RefitAdvice,
) -> FitResult:
    """The updated tree as a fit, for the exports: its diagnostics computed anew (the updated
    users' draws included), a user whose update failed its check making it unreliable."""
    from hbm.inference.diagnostics import diagnose
    from hbm.inference.fitting import FitResult
    from hbm.model.build import Centring

    diagnostics = diagnose(new_tree)
    flagged = [f"user {u}: update's Pareto k-hat above the limit" for u in advice.flagged_users]
    if flagged:
        diagnostics = replace(diagnostics, reliable=False, reasons=(*diagnostics.reasons, *flagged))
    data = tree["constant_data"].to_dataset()
    return FitResult(
        tree=new_tree,
        design=design,
        priors=priors,
        diagnostics=diagnostics,
        config=SamplerConfig(**run_info["sampler"]),
        pooling="partial",
        centring=Centring(
            data["centring_z"].values, data["centring_za"].values, str(tree.attrs["centring_rule"])
        ),
        timings={},
    )


def _run_info(
    base: dict[str, Any],
    command: str,
    started: str,
    data_sha: str,
    diary: Diary,
    updated: Updated,
    advice: RefitAdvice,
    options: UpdateOptions,
) -> dict[str, Any]:
    """RUN's run.json with this update's command, combined data and ``update`` entry."""
    users = updated.users
    info = {k: v for k, v in base.items() if k not in ("run_id", "finished", "trigger_calls")}
    info["command"] = command
    info["started"] = started
    fitted = base.get("diary", {})
    design = updated.design
    info["diary"] = {
        "file": f"{fitted.get('file', '')} + {diary.source}",
        "users": len(design.users),
        "rows": design.n_obs,
        "attack_rate": float(design.y.mean()) if design.n_obs else float("nan"),
        "data_sha256": data_sha,
    }
    info["update"] = json_ready(
        {
            "from_run": base.get("run_id"),
            "from_data_sha256": fitted.get("data_sha256"),
            "diary_source": diary.source,
            "diary_sha256": diary.sha256,
            "seed": options.seed,
            "method": METHOD,
            "proposals": options.proposals,
            "users_updated": len(users),
            "max_khat": float(users["khat"].max()) if len(users) else None,
            "refit": advice.to_dict(),
        }
    )
    return info
