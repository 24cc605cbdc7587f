"""Read-only HTTP API over an exported run (``hbm serve``).

Everything is read once at start-up (``prepare``) and served from memory: no request names a file,
so none can reach the filesystem. User ids in paths must match ``USER_ID_PATTERN`` (URL-safe
characters; a malformed id is a 422); an id the run does not hold is a 404 with a JSON body,
unless ``?cold_start=true`` asks for the population-predictive profile of an unseen user, which is
then marked ``cold_start: true``.

``/health`` compares, on each request, the stat identity (device, inode, size, modification time)
of the files read at start-up (``WATCHED``) with the one taken then: ``ok`` while all agree,
``changed`` once one was rewritten or replaced, ``missing`` once one (or the folder) is gone; the
last two answer 503, and the other routes go on serving what was read at start-up.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Annotated, Any

import xarray as xr
from fastapi import FastAPI, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field

from hbm import __version__
from hbm.app.service_http import harden
from hbm.defaults import USER_ID_PATTERN  # the diary's id rule: whatever fits can be served
from hbm.errors import RunError
from hbm.results import io
from hbm.results.io import RunFolder
from hbm.results.prediction import fit_priors
from hbm.results.tables import cold_start_profile

MAX_PAGE = 500
#: The files of a run folder that ``hbm serve`` reads at start-up; ``/health`` watches them.
WATCHED = (
    io.FIT_FILE,
    io.RUN_FILE,
    io.DIAGNOSTICS_FILE,
    io.PROFILES_FILE,
    io.USERS_FILE,
    io.POPULATION_FILE,
    io.WEIGHTS_CSV,
)
#: A file's stat identity: device, inode, size in bytes, modification time in nanoseconds.
Identity = tuple[int, int, int, int]


class Health(BaseModel):
    status: str = Field(description="ok, changed or missing (the last two with HTTP 503)")
    version: str
    run: str
    users: int
    reliable: bool
    refit: dict[str, Any] | None = Field(
        None,
        description="for a run written by hbm update: whether a refit is due, the rule and the "
        "figures behind it (run.json's update.refit); null for a fitted run",
    )
    detail: str | None = Field(None, description="which files changed or are missing")


class UserSummary(BaseModel):
    user_id: str
    days_logged: int
    attacks: int | None = None
    personalization_confidence: float
    n_triggers: int | None = None


class UsersPage(BaseModel):
    total: int
    offset: int
    limit: int
    users: list[UserSummary]


class Trigger(BaseModel):
    feature: str
    name: str
    category: str
    group: str
    weight: float
    weight_ci: list[float] = Field(min_length=2, max_length=2)
    odds_ratio: float
    odds_ratio_ci: list[float] = Field(min_length=2, max_length=2)
    p_positive: float
    p_call: float | None = Field(
        None, description="posterior probability of the likelier direction beyond the ROPE"
    )
    class_: str = Field(alias="class", serialization_alias="class")
    interval_class: str | None = Field(
        None, description="the earlier rule's class (interval outside the ROPE), for comparison"
    )


class Profile(BaseModel):
    user_id: str
    trigger_weights: dict[str, float]
    top_triggers: list[Trigger]
    clustering: Trigger | None = Field(
        None, description="the attack-clustering term (attack_yesterday); null without one"
    )
    personalization_confidence: float
    reliable: bool
    reliability_reasons: list[str]
    ci_prob: float
    ci_kind: str
    cold_start: bool


class Population(BaseModel):
    reliable: bool
    reliability_reasons: list[str]
    ci_prob: float
    ci_kind: str
    features: list[dict[str, str | float | bool | None]]


class NextDayRisk(BaseModel):
    user_id: str
    attack_today: bool
    risk_mean: float
    risk_ci: list[float] = Field(min_length=2, max_length=2)
    ci_prob: float
    ci_kind: str
    assumes: str
    reliable: bool
    reliability_reasons: list[str]


class ErrorBody(BaseModel):
    detail: str


@dataclass(frozen=True)
class ServiceData:
    """What the service serves, prepared once from a run folder."""

    name: str
    profiles: dict[str, dict[str, Any]]
    users: list[dict[str, Any]]
    population: dict[str, Any]
    reliable: bool
    cold_start: dict[str, Any] | None
    folder: FilePath | None = None
    #: ``run.json``'s ``update.refit`` of a run written by ``hbm update`` (``None``: a fit)
    refit: dict[str, Any] | None = None
    files: dict[str, Identity] = field(default_factory=dict)


def identify(folder: str | FilePath) -> dict[str, Identity]:
    """The stat identity of each ``WATCHED`` file present in ``folder`` (absent ones left out)."""
    out = {}
    for name in WATCHED:
        try:
            st = os.stat(FilePath(folder) / name)
        except OSError:
            continue
        out[name] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def folder_state(folder: FilePath, files: dict[str, Identity]) -> tuple[str, list[str]]:
    """``("ok", [])``, or ``("missing", names)`` / ``("changed", names)`` of the files in
    ``files`` that are gone / whose identity differs now (missing wins when both occur)."""
    now = identify(folder)
    missing = [name for name in files if name not in now]
    if missing:
        return "missing", missing
    changed = [name for name, ident in files.items() if now[name] != ident]
    return ("changed", changed) if changed else ("ok", [])


def _clean(value: Any) -> Any:
    """JSON-safe scalars: NaN (a column this pooling lacks) becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def prepare(
    run: RunFolder,
    population_draws: xr.DataTree | None,
    files: dict[str, Identity] | None = None,
) -> ServiceData:
    """Check a run folder for serving and index its exports.

    Parameters
    ----------
    run
        ``hbm.results.io.read_run`` of the folder.
    population_draws
        The fit's ``mu`` and ``tau`` draws (``hbm.results.io.load_fit(..., posterior_vars=...)``)
        for
        cold-start profiles; ``None`` when the run has no population (``pooling="none"``).
    files
        ``identify(run.path)`` taken before the folder was read, for ``/health``; ``None``
        takes it now.

    Raises
    ------
    RunError
        A user id that no URL could address, naming the id and the pattern.
    """
    bad = [u for u in run.users["user_id"] if not _matches(str(u))]
    if bad:
        raise RunError(
            f"{run.path}: user ids {bad[:5]} cannot be served: ids must match {USER_ID_PATTERN}"
        )
    reasons = [str(r) for r in run.diagnostics.get("reasons", [])]
    reliable = bool(run.diagnostics.get("reliable", False))
    profiles = {
        str(p["user_id"]): {**p, "cold_start": False, "reliability_reasons": reasons}
        for p in run.profiles
    }
    users = [
        {
            "user_id": str(r["user_id"]),
            "days_logged": int(r["days_logged"]),
            "attacks": int(r["attacks"]) if "attacks" in r else None,
            "personalization_confidence": float(r["confidence"]),
            "n_triggers": int(r["n_triggers"]) if "n_triggers" in r else None,
            **{str(k): _clean(v) for k, v in r.items() if str(k).startswith("risk_after_")},
        }
        for r in run.users.to_dict("records")
    ]
    ci_prob = float(run.population["ci_prob"].iloc[0])
    ci_kind = str(run.population["ci_kind"].iloc[0])
    population = {
        "reliable": reliable,
        "reliability_reasons": reasons,
        "ci_prob": ci_prob,
        "ci_kind": ci_kind,
        "features": [
            {str(k): _clean(v) for k, v in row.items()} for row in run.population.to_dict("records")
        ],
    }
    cold = None
    if population_draws is not None:
        cold = cold_start_profile(
            population_draws,
            fit_priors(population_draws),
            reliable,
            tuple(reasons),
            ci_prob,
            ci_kind,
        )
    folder = run.path.absolute()
    files = identify(folder) if files is None else files
    update = run.run_info.get("update")
    refit = update.get("refit") if isinstance(update, dict) else None
    return ServiceData(
        run.path.name, profiles, users, population, reliable, cold, folder, refit=refit, files=files
    )


def _matches(user_id: str) -> bool:
    return re.fullmatch(USER_ID_PATTERN, user_id) is not None


UserId = Annotated[
    str, Path(pattern=USER_ID_PATTERN, description="a user id of the run (URL-safe characters)")
]
ColdStart = Annotated[
    bool,
    Query(description="for an id the run does not hold, return the population-predictive profile"),
]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Health, "description": "the run folder changed or is missing"}
}


def health_body(data: ServiceData, response: Response) -> dict[str, Any]:
    """``/health``: the run's summary and the folder's state; 503 unless it is ``ok``."""
    body: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "run": data.name,
        "users": len(data.users),
        "reliable": data.reliable,
        "refit": data.refit,
    }
    if data.folder is None:
        return body
    state, names = folder_state(data.folder, data.files)
    if state != "ok":
        response.status_code = 503
        verb = "changed in"
        if state == "missing":
            verb = "are missing from" if len(names) > 1 else "is missing from"
        body["status"] = state
        body["detail"] = (
            f"{', '.join(names)} {verb} run folder '{data.name}' since start-up; "
            "this service still serves what it read then: restart hbm serve"
        )
    return body


def next_day_body(
    data: ServiceData, user: dict[str, Any] | None, user_id: str, attack_today: bool
) -> dict[str, Any]:
    """``/users/{id}/next_day_risk``: the users table's risk after an attack (free) day."""
    if user is None:
        raise HTTPException(404, f"user '{user_id}' is not in run '{data.name}'")
    name = "after_attack_day" if attack_today else "after_attack_free_day"
    if f"risk_{name}_mean" not in user:
        raise HTTPException(
            404, f"run '{data.name}' has no clustering term: tomorrow's risk does not use today"
        )
    return {
        "user_id": user_id,
        "attack_today": attack_today,
        "risk_mean": user[f"risk_{name}_mean"],
        "risk_ci": [user[f"risk_{name}_lb"], user[f"risk_{name}_ub"]],
        "ci_prob": data.population["ci_prob"],
        "ci_kind": "eti",
        "assumes": "every other exposure at the cohort's mean (hbm predict uses the diary's)",
        "reliable": data.reliable,
        "reliability_reasons": list(data.population["reliability_reasons"]),
    }


def create_app(data: ServiceData) -> FastAPI:
    """The FastAPI application serving one prepared run (see the module doc for the routes)."""
    app = FastAPI(
        title="hbm trigger profiles",
        version=__version__,
        description=(
            f"Read-only trigger profiles of run '{data.name}'. Weights are log-odds per unit of "
            "exposure; intervals carry their probability and kind."
        ),
        docs_url=None,
        redoc_url=None,
    )
    harden(app)

    @app.get(
        "/health", response_model=Health, response_model_exclude_none=True, responses=UNAVAILABLE
    )
    def health(response: Response) -> dict[str, Any]:
        return health_body(data, response)

    @app.get("/users", response_model=UsersPage)
    def users(
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        return {
            "total": len(data.users),
            "offset": offset,
            "limit": limit,
            "users": data.users[offset : offset + limit],
        }

    def profile(user_id: str, cold_start: bool) -> dict[str, Any]:
        if user_id in data.profiles:
            return data.profiles[user_id]
        if not cold_start:
            raise HTTPException(
                404,
                f"user '{user_id}' is not in run '{data.name}'; "
                "add ?cold_start=true for a population-predictive profile",
            )
        if data.cold_start is None:
            raise HTTPException(404, f"run '{data.name}' has no population (pooling 'none')")
        return {**data.cold_start, "user_id": user_id}

    @app.get(
        "/users/{user_id}/trigger_profile",
        response_model=Profile,
        response_model_by_alias=True,
        responses=NOT_FOUND,
    )
    def trigger_profile(user_id: UserId, cold_start: ColdStart = False) -> dict[str, Any]:
        return profile(user_id, cold_start)

    @app.get(
        "/user/{user_id}/trigger_profile",
        response_model=Profile,
        response_model_by_alias=True,
        responses=NOT_FOUND,
        summary="Trigger Profile (the earlier design's path)",
    )
    def trigger_profile_legacy(user_id: UserId, cold_start: ColdStart = False) -> dict[str, Any]:
        return profile(user_id, cold_start)

    by_id = {u["user_id"]: u for u in data.users}

    @app.get(
        "/users/{user_id}/next_day_risk",
        response_model=NextDayRisk,
        responses=NOT_FOUND,
        summary="Tomorrow's attack risk given whether today was an attack day",
    )
    def next_day_risk(user_id: UserId, attack_today: bool) -> dict[str, Any]:
        return next_day_body(data, by_id.get(user_id), user_id, attack_today)

    @app.get("/population", response_model=Population)
    def population() -> dict[str, Any]:
        return data.population

    return app
