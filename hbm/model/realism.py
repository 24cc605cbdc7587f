"""What makes a simulated diary break the model the way real diaries do (issue 21, item 3).

Each part is optional and off by default (``hbm.model.simulation.SimulationConfig``):

* **Clustered attacks.** Outcomes are drawn day by day, ``logit P(onset[u,t]) = eta[u,t] +
  c[u] * state[u,t-1]`` on a day at risk, with ``state`` 1 on an attack day (an onset or a
  continuation), 0 otherwise and before the first day (``attack_sequence``).
* **Multi-day attacks.** After an onset on day ``t`` the attack goes on for ``L - 1`` more days,
  ``L = 1 + Poisson(attack_days - 1)`` (mean ``attack_days``); those days are continuation days
  (``migraine`` 0, ``migraine_continues`` 1), not at risk of an onset, and attack days for the next
  day's state. An attack running past the last day is cut there.
* **Premonitory symptoms.** A feature with no causal weight whose raw value rises before attacks,
  after the outcomes are drawn (``premonitory_days_mask``, ``raise_values``).
* **Missing days.** Holidays and abandonment remove whole days after the outcomes are drawn on every
  calendar day (``missing_day_mask``).
* ``solve_a0``: the population intercept that puts the expected onset rate at a target.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import optimize, special

from hbm.data.diary import CONTINUES_COLUMN
from hbm.data.exposures import Design
from hbm.data.priors import CLUSTERING_KEY, Priors
from hbm.errors import HBMError

#: Mean length (days) of a holiday: a run of unlogged days, ``Geometric(1 / 7)`` long.
HOLIDAY_MEAN_DAYS = 7.0
#: The simulation kinds whose raw values are not a user's own (weather is shared by the users of
#: a location; the menstrual columns follow the cycle): never premonitory.
NOT_OWN_KINDS = ("location", "menstrual")


class Settings(Protocol):
    """The realism settings of ``hbm.model.simulation.SimulationConfig``."""

    @property
    def seed(self) -> int: ...
    @property
    def attack_rate(self) -> float: ...
    @property
    def clustering(self) -> float: ...
    @property
    def clustering_spread(self) -> float: ...
    @property
    def heterogeneity(self) -> float | None: ...
    @property
    def attack_days(self) -> float: ...
    @property
    def premonitory_share(self) -> float: ...
    @property
    def premonitory_shift(self) -> float: ...
    @property
    def premonitory_days(self) -> int: ...
    @property
    def missing_days(self) -> float: ...
    @property
    def missing_values(self) -> float: ...


def attack_sequence(
    eta: np.ndarray, u01: np.ndarray, coef: np.ndarray, extra_days: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Onsets and continuation days (users x days, int8), drawn day by day.

    On a day at risk, onset if ``u01[u,t] < expit(eta[u,t] + coef[u] * state[u,t-1])``;
    ``extra_days[u,t]`` continuation days follow an onset on day ``t`` (``None``: none).
    """
    n, d = eta.shape
    onset = np.zeros((n, d), dtype=np.int8)
    continues = np.zeros((n, d), dtype=np.int8)
    left = np.zeros(n, dtype=np.int64)
    for t in range(d):
        boost = coef * np.maximum(onset[:, t - 1], continues[:, t - 1]) if t > 0 else 0.0
        going = left > 0
        continues[going, t] = 1
        left[going] -= 1
        new = ~going & (u01[:, t] < special.expit(eta[:, t] + boost))
        onset[:, t] = new
        if extra_days is not None:
            left[new] = extra_days[new, t]
    return onset, continues


def no_intercept(cfg: Settings) -> HBMError:
    """Settings whose effects are too large for any intercept to give the attack rate."""
    return HBMError(
        f"invalid simulation settings: no population intercept in [-15, 15] gives an attack "
        f"rate of {cfg.attack_rate} with clustering {cfg.clustering} (spread "
        f"{cfg.clustering_spread}) and heterogeneity {cfg.heterogeneity}; choose smaller effects"
    )


def solve_intercept(gap: Any, cfg: Settings) -> float:
    """The population intercept in [-15, 15] where ``gap`` is 0 (``no_intercept`` if none)."""
    try:
        return float(optimize.brentq(gap, -15.0, 15.0))
    except ValueError:  # brentq: no sign change (or NaN) over the bracket
        raise no_intercept(cfg) from None


def solve_a0(
    za: np.ndarray, eta_w: np.ndarray, coef: np.ndarray, rate: float, attack_days: float
) -> float:
    """``a0`` whose mean-field onset rate per day at risk, over the cohort, is ``rate``.

    Per user, ``f0``/``f1`` are the mean onset probabilities over the days after an attack-free
    day and after an attack day (``eta_w`` users x days, ``coef`` per user). The previous day of a
    day at risk is an attack day with the user's onset probability ``q`` (the last day of each of
    their attacks), whatever the attacks' length; treating it as independent of the day's own
    exposures, ``q = (1 - q) f0 + q f1``, so ``q = f0 / (1 + f0 - f1)``. Attacks of mean length
    ``attack_days`` leave a user ``1 / (1 + q (attack_days - 1))`` of their days at risk, which
    weighs their ``q`` in the cohort's rate. The approximation ignores that attack days come in
    runs with the exposures that caused them; the realised rate is recorded in the truth.
    """

    def gap(a0: float) -> float:
        base = a0 + za[:, None] + eta_w
        f0 = special.expit(base).mean(axis=1)
        f1 = special.expit(base + coef[:, None]).mean(axis=1)
        q = f0 / (1.0 + f0 - f1)
        at_risk = 1.0 / (1.0 + q * (attack_days - 1.0))
        return float(np.sum(q * at_risk) / np.sum(at_risk) - rate)

    return float(optimize.brentq(gap, -15.0, 15.0))


def premonitory_keys(priors: Priors, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The premonitory features asked for, each checked; refused with what is allowed.

    Allowed: trigger features with a ``level`` exposure whose diary column no other feature reads
    and whose values are the user's own (not weather, not the menstrual cycle).
    """
    shared = {c for c in priors.columns if sum(f.column == c for f in priors.features) > 1}
    allowed = [
        f.key
        for f in priors.features
        if f.is_trigger
        and f.transform == "level"
        and f.column not in shared
        and (f.simulation or {}).get("kind") not in NOT_OWN_KINDS
    ]
    for key in keys:
        if key not in allowed:
            raise HBMError(
                f"invalid simulation settings: premonitory feature '{key}' cannot be raised "
                "before attacks; a premonitory feature is a trigger with a level exposure and a "
                "diary column of its own (not read by another feature, not weather, not the "
                f"menstrual cycle); allowed here: {', '.join(allowed) or 'none'}"
            )
    return tuple(dict.fromkeys(keys))


def feature_kinds(priors: Priors, premonitory: tuple[str, ...]) -> dict[str, str]:
    """Each feature's part in the simulation: clustering, premonitory or causal."""
    return {
        f.key: (
            "clustering"
            if f.role == "clustering"
            else "premonitory"
            if f.key in premonitory
            else "causal"
        )
        for f in priors.features
    }


def clustering_truth(
    priors: Priors, users: list[str], coef: np.ndarray, model: Design
) -> dict[str, Any]:
    """The per-user clustering coefficients and the state's centring mean (with the feature)."""
    if priors.clustering is None:
        return {}
    means = dict(zip(model.features, model.exposure_means.means, strict=True))
    return {
        "clustering_coefficients": dict(zip(users, coef.tolist(), strict=True)),
        "attack_state_mean": means[CLUSTERING_KEY],
    }


def premonitory_days_mask(onset: np.ndarray, lag: int, days: int) -> np.ndarray:
    """The raw days to raise (users x days) for a feature read ``lag`` days back.

    For an onset on day ``t0``: the raw days ``t0 - lag - days`` to ``t0 - lag``, so that the
    exposure the model reads on days ``t0 - days`` to ``t0`` (the onset day) is raised.
    """
    n, d = onset.shape
    on = onset.astype(bool)
    exposure_days = np.zeros((n, d), dtype=bool)
    for j in range(min(days, d - 1) + 1):
        exposure_days[:, : d - j] |= on[:, j:]  # exposure day s, onset on s + j
    raw = np.zeros((n, d), dtype=bool)
    if lag < d:
        raw[:, : d - lag] = exposure_days[:, lag:]  # raw day r is read on day r + lag
    return raw


def raise_values(
    x: np.ndarray,
    mask: np.ndarray,
    *,
    spec_kind: str,
    value_range: tuple[float, float],
    shift: float,
    decimals: int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Raw values raised on ``mask``: by ``shift`` of the range (clipped, rounded to ``decimals``);
    a binary column becomes 1 there with probability ``shift``."""
    lo, hi = value_range
    if spec_kind == "binary":
        return np.where(mask & (rng.random(x.shape) < shift), 1.0, x)
    raised = np.clip(x + shift * (hi - lo), lo, hi)
    if decimals is not None:
        raised = np.round(raised, decimals)
    return np.where(mask, raised, x)


def missing_day_mask(
    rng: np.random.Generator, n: int, d: int, share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which days are logged (users x days) and each user's first day of abandonment (``d``: none).

    Abandonment: ``round(share * n)`` users, drawn at random, stop logging for good from a day
    drawn uniformly in 1..d-1 (half of their days on average, so ``share / 2`` of all days).
    Holidays: runs of ``Geometric(1 / HOLIDAY_MEAN_DAYS)`` days at uniform start days before the
    user stops, added until ``round(share / 2 * d)`` of their days are unlogged (the last run cut
    to fit; at most all but one of the days before they stop). Together about ``share`` of all
    days; every user keeps at least one day.
    """
    abandon = rng.permutation(n) < round(share * n)
    stop = np.where(abandon, rng.integers(1, d, size=n), d)
    logged = np.arange(d)[None, :] < stop[:, None]
    budget = np.minimum(round(share / 2 * d), stop - 1)
    for u in range(n):
        need = int(budget[u])
        while need > 0:
            start = int(rng.integers(0, stop[u]))
            run = np.arange(start, min(start + int(rng.geometric(1 / HOLIDAY_MEAN_DAYS)), stop[u]))
            new = run[logged[u, run]][:need]
            logged[u, new] = False
            need -= len(new)
    return logged, stop


def holiday_runs(logged: np.ndarray, stop: np.ndarray) -> int:
    """Runs of unlogged days before each user's abandonment, counted over the cohort."""
    gap = ~logged & (np.arange(logged.shape[1])[None, :] < stop[:, None])
    starts = gap.copy()
    starts[:, 1:] &= ~gap[:, :-1]
    return int(starts.sum())


def attack_length(cfg: Settings, onset: np.ndarray, continues: np.ndarray) -> dict[str, Any]:
    """How long the simulated attacks were (over every calendar day)."""
    attacks = int(onset.sum())
    return {
        "distribution": "1 + Poisson(attack_days - 1), cut at the last day",
        "mean": cfg.attack_days,
        "attacks": attacks,
        "mean_realized": (attacks + int(continues.sum())) / attacks if attacks else None,
    }


def logged_table(
    priors: Priors,
    cfg: Settings,
    data: pd.DataFrame,
    onset: np.ndarray,
    continues: np.ndarray,
    premonitory: tuple[str, ...],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The diary as written: outcomes, premonitory rises, missing days and values."""
    n, d = onset.shape
    table = data.copy()
    table["migraine"] = onset.reshape(-1)
    if cfg.attack_days > 1.0:
        at = list(table.columns).index("migraine") + 1
        table.insert(at, CONTINUES_COLUMN, continues.reshape(-1))
    info: dict[str, Any] = {"premonitory": _premonitory(priors, cfg, table, onset, premonitory)}
    missing: dict[str, Any] = {"days_share": 0.0, "holiday_runs": 0, "abandoned": {}}
    if cfg.missing_days > 0:
        rng = np.random.default_rng([cfg.seed, 3])
        logged, stop = missing_day_mask(rng, n, d, cfg.missing_days)
        users = table["user_id"].to_numpy()[::d]
        dates = table["date"].to_numpy()[:d]
        missing["days_share"] = float(1.0 - logged.mean())
        missing["holiday_runs"] = holiday_runs(logged, stop)
        missing["abandoned"] = {
            str(users[u]): pd.Timestamp(dates[stop[u]]).strftime("%Y-%m-%d")
            for u in np.flatnonzero(stop < d)
        }
        table = table[logged.reshape(-1)].reset_index(drop=True)
    columns = list(priors.columns)
    hole = np.zeros((len(table), len(columns)), dtype=bool)
    if cfg.missing_values > 0:
        rng = np.random.default_rng([cfg.seed, 4])
        hole = rng.random(hole.shape) < cfg.missing_values
        table[columns] = table[columns].mask(hole)
    missing["values"] = int(hole.sum())
    missing["values_share"] = float(hole.mean()) if hole.size else 0.0
    info["missing"] = missing
    return table, info


def _premonitory(
    priors: Priors,
    cfg: Settings,
    table: pd.DataFrame,
    onset: np.ndarray,
    keys: tuple[str, ...],
) -> dict[str, Any]:
    """Raise the premonitory features' raw values before onsets, in ``table`` (every day)."""
    n, d = onset.shape
    rng = np.random.default_rng([cfg.seed, 2])
    who = np.zeros(n, dtype=bool)
    if keys:
        who = np.asarray(rng.random(n) < cfg.premonitory_share)
    changed = {}
    for key in keys:
        f = priors.feature(key)
        spec = f.simulation or {"kind": "continuous"}
        mask = premonitory_days_mask(onset, f.lag_days, cfg.premonitory_days) & who[:, None]
        x = table[f.column].to_numpy(dtype=float).reshape(n, d)
        raised = raise_values(
            x,
            mask,
            spec_kind=spec["kind"],
            value_range=f.range,
            shift=cfg.premonitory_shift,
            decimals=spec.get("decimals", 0 if spec["kind"] == "count" else None),
            rng=rng,
        )
        table[f.column] = raised.reshape(-1)
        changed[key] = int((raised != x).sum())
    users = table["user_id"].to_numpy()[::d]
    return {
        "features": list(keys),
        "users": {str(u): bool(h) for u, h in zip(users, who, strict=True)} if keys else {},
        "raw_days": (
            "for an onset on day t, the raw days t - lag - premonitory_days to t - lag of the "
            "users with symptoms, so the exposure read on days t - premonitory_days to t rises"
        ),
        "changed_values": changed,
    }
