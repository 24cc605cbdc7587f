"""Realistic synthetic cohorts with known per-user truth.

Raw diary columns are generated from each priors variable's ``simulation`` block, so a user's own
priors file simulates its own features; a column without a block gets a generic autocorrelated
series over its range. Kinds:

* ``continuous``: AR(1) around a per-user mean (``mean``, ``sd``, ``user_sd``, ``autocorr``,
  ``weekend_shift``, ``decimals``): stress, sleep.
* ``count``: Poisson with a per-user log-normal rate and a weekend multiplier: alcohol, caffeine.
* ``binary``: per-user logit-normal probability whose cohort mean equals ``prevalence``
  (``weekend_prevalence`` on Saturdays and Sundays when given).
* ``menstrual``: 1 on the days of ``window`` relative to menses onset (day 0) for the share of
  users who cycle (cycle length ``cycle_length_mean`` +/- ``cycle_length_sd`` days), else 0; all
  menstrual columns of a user share one cycle.
* ``location``: an AR(1) series shared by all users of one location (weather).

Outcomes follow the model: ``logit p[u,t] = a[u] + sum_k w[u,k] x[u,t,k] + c[u] * state[u,t-1]``,
drawn day by day (``hbm.model.realism``), with ``x`` the centred exposures of
``hbm.data.exposures`` and ``state`` 1 on an attack day (an onset, or a continuation of a
multi-day attack). The population means are the priors' means; the between-user SDs are
``heterogeneity`` for every trigger or, without it, the priors' between-user SDs.

* With a clustering feature in the priors (``attack_yesterday``), ``c[u] ~ Normal(clustering,
  clustering_spread)`` is that feature's weight; without one, ``c[u] = clustering`` for everyone
  (a common boost, as before the feature existed; ``clustering_spread`` is not used).
* ``premonitory`` features have weight 0 for every user: outcomes never depend on them, but their
  raw values rise before attacks (``hbm.model.realism``), as premonitory symptoms do.
* ``attack_days``, ``missing_days`` and ``missing_values`` make attacks last several days, remove
  days in runs and single values; the outcomes are drawn on every calendar day first.

``a0`` is solved so the cohort's expected onset rate on a day at risk equals ``attack_rate``
(over the simulated exposures; with clustering, a mean-field approximation,
``hbm.model.realism.solve_a0``); the truth records the realised rate. Each option draws from its
own random stream (``default_rng([seed, i])``), so switching one on changes nothing the others
drew; with every option off and priors without a clustering block, a seed gives the cohort that
earlier versions gave.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

from hbm.data.diary import Diary, validate_frame
from hbm.data.exposures import Design, exposures
from hbm.data.priors import CLUSTERING_KEY, Priors, without_clustering
from hbm.errors import HBMError
from hbm.model.population import Population, new_users, standard_noise
from hbm.model.realism import (
    attack_length,
    attack_sequence,
    clustering_truth,
    feature_kinds,
    logged_table,
    no_intercept,
    premonitory_keys,
    solve_a0,
    solve_intercept,
)


@dataclass(frozen=True)
class SimulationConfig:
    """Settings of one synthetic cohort (defaults from the evidence in priors/EVIDENCE.md)."""

    n_users: int = 40
    n_days: int = 365
    heterogeneity: float | None = None
    seed: int = 0
    attack_rate: float = 0.15
    sigma_a: float = 1.2
    menstruating_share: float = 0.5
    cycle_length_mean: float = 28.0
    cycle_length_sd: float = 3.0
    n_locations: int = 4
    #: Log-odds added the day after an attack day: the population mean of the clustering
    #: feature's per-user weight, or a common boost when the priors have no clustering feature.
    clustering: float = 0.0
    #: Between-user SD of the per-user clustering weight (only with a clustering feature).
    clustering_spread: float = 0.0
    #: Mean attack length in days (>= 1): ``1 + Poisson(attack_days - 1)``.
    attack_days: float = 1.0
    #: Features whose raw values rise before attacks and that have no causal weight.
    premonitory: tuple[str, ...] = ()
    #: Share of users with premonitory symptoms (Schulte et al. 2015: 39%, hbm issue 21).
    premonitory_share: float = 0.39
    #: The rise, as a share of the column's range (a binary column: the chance it becomes 1).
    premonitory_shift: float = 0.3
    #: Days before an onset whose exposure rises, with the onset day itself.
    premonitory_days: int = 2
    #: Share of days not logged (holidays and abandonment, ``hbm.model.realism``).
    missing_days: float = 0.0
    #: Share of single raw exposure values left empty.
    missing_values: float = 0.0
    start_date: str = "2025-01-06"


@dataclass(frozen=True)
class Cohort:
    """A simulated diary and its truth on the model's scale.

    ``table`` is the diary as written (an empty value is NaN); ``diary`` is it validated, with
    empty values imputed as ``--missing impute`` does (the truth's scale).
    """

    diary: Diary
    truth: dict[str, Any]
    table: pd.DataFrame


_FINITE = ("heterogeneity", "attack_rate", "sigma_a", "clustering", "clustering_spread",
           "attack_days", "premonitory_share", "premonitory_shift")  # fmt: skip


def _check(cfg: SimulationConfig) -> None:
    problems = []
    for name in _FINITE:
        if (value := getattr(cfg, name)) is not None and not math.isfinite(value):
            problems.append(f"{name.replace('_', ' ')} must be a finite number, got {value}")
    if problems:  # alone: a NaN would fail every bound below too
        raise HBMError("invalid simulation settings: " + "; ".join(problems))
    if cfg.n_users < 1:
        problems.append(f"users must be >= 1, got {cfg.n_users}")
    if cfg.n_days < 2:
        problems.append(f"days must be >= 2, got {cfg.n_days}")
    if cfg.heterogeneity is not None and cfg.heterogeneity < 0:
        problems.append(f"heterogeneity must be >= 0, got {cfg.heterogeneity}")
    if not 0.0 < cfg.attack_rate < 1.0:
        problems.append(f"attack rate must be in (0, 1), got {cfg.attack_rate}")
    if cfg.sigma_a < 0:
        problems.append(f"sigma_a must be >= 0, got {cfg.sigma_a}")
    if not 0.0 <= cfg.menstruating_share <= 1.0:
        problems.append(f"menstruating share must be in [0, 1], got {cfg.menstruating_share}")
    if cfg.n_locations < 1:
        problems.append(f"locations must be >= 1, got {cfg.n_locations}")
    if cfg.clustering_spread < 0:
        problems.append(f"clustering spread must be >= 0, got {cfg.clustering_spread}")
    if not cfg.attack_days >= 1.0:
        problems.append(f"attack days must be >= 1, got {cfg.attack_days}")
    for name in ("premonitory_share", "premonitory_shift"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            problems.append(f"{name.replace('_', ' ')} must be in [0, 1], got {getattr(cfg, name)}")
    if cfg.premonitory_days < 0:
        problems.append(f"premonitory days must be >= 0, got {cfg.premonitory_days}")
    for name in ("missing_days", "missing_values"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            problems.append(f"{name.replace('_', ' ')} must be in [0, 1), got {getattr(cfg, name)}")
    if problems:
        raise HBMError("invalid simulation settings: " + "; ".join(problems))


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(40)
_GH_W = _GH_W / _GH_W.sum()


def _logit_location(prevalence: float, spread: float) -> float:
    """m such that E[invlogit(m + spread * Z)] = prevalence, Z standard normal."""

    def gap(m: float) -> float:
        return float(np.sum(_GH_W * special.expit(m + spread * _GH_X)) - prevalence)

    return float(optimize.brentq(gap, -30.0, 30.0))


def _ar1(rng: np.random.Generator, n_series: int, n_days: int, phi: float) -> np.ndarray:
    """Stationary unit-variance AR(1) series, one per row."""
    out = np.empty((n_series, n_days))
    out[:, 0] = rng.standard_normal(n_series)
    innovation = math.sqrt(1.0 - phi * phi)
    for t in range(1, n_days):
        out[:, t] = phi * out[:, t - 1] + innovation * rng.standard_normal(n_series)
    return out


def _cycle_offsets(
    rng: np.random.Generator, cfg: SimulationConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user and day: days since the last onset, days until the next, and who cycles."""
    n, d = cfg.n_users, cfg.n_days
    cycles = rng.random(n) < cfg.menstruating_share
    since = np.full((n, d), 10_000)
    until = np.full((n, d), 10_000)
    for u in range(n):
        if not cycles[u]:
            continue
        onsets = []
        day = -int(rng.integers(0, int(cfg.cycle_length_mean)))
        while day < d + 60:
            onsets.append(day)
            length = round(rng.normal(cfg.cycle_length_mean, cfg.cycle_length_sd))
            day += int(np.clip(length, 21, 40))
        on = np.array(onsets)
        t = np.arange(d)
        idx = np.searchsorted(on, t, side="right") - 1
        since[u] = t - on[idx]
        until[u] = on[idx + 1] - t
    return since, until, cycles


def _column(
    spec: Mapping[str, Any],
    rng: np.random.Generator,
    cfg: SimulationConfig,
    weekend: np.ndarray,
    location: np.ndarray,
    cycle: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng_range: tuple[float, float],
) -> np.ndarray:
    n, d = cfg.n_users, cfg.n_days
    lo, hi = rng_range
    kind = spec["kind"]
    if kind == "continuous":
        user_mean = spec.get("mean", (lo + hi) / 2) + spec.get(
            "user_sd", 0.0
        ) * rng.standard_normal((n, 1))
        noise = spec.get("sd", (hi - lo) / 6) * _ar1(rng, n, d, spec.get("autocorr", 0.5))
        x = user_mean + noise + spec.get("weekend_shift", 0.0) * weekend[None, :]
    elif kind == "count":
        s = spec.get("user_sd", 0.0)
        rate = spec.get("mean", 1.0) * np.exp(s * rng.standard_normal((n, 1)) - s * s / 2)
        rate = rate * np.where(weekend, spec.get("weekend_multiplier", 1.0), 1.0)[None, :]
        x = rng.poisson(rate).astype(float)
    elif kind == "binary":
        s = spec.get("user_sd", 0.0)
        z = rng.standard_normal((n, 1))
        p_week = special.expit(_logit_location(spec["prevalence"], s) + s * z)
        p_end = special.expit(
            _logit_location(spec.get("weekend_prevalence", spec["prevalence"]), s) + s * z
        )
        p = np.where(weekend[None, :], p_end, p_week)
        x = (rng.random((n, d)) < p).astype(float)
    elif kind == "menstrual":
        since, until, _ = cycle
        start, end = spec["window"]
        in_window = ((since >= start) & (since <= end)) | ((-until >= start) & (-until <= end))
        x = in_window.astype(float)
    elif kind == "location":
        series = spec.get("mean", (lo + hi) / 2) + spec.get("sd", (hi - lo) / 6) * _ar1(
            rng, cfg.n_locations, d, spec.get("autocorr", 0.8)
        )
        x = series[location]
    else:  # the schema allows no other kind
        raise HBMError(f"unknown simulation kind '{kind}'")
    x = np.clip(x, lo, hi)
    if "decimals" in spec:
        x = np.round(x, int(spec["decimals"]))
    return np.asarray(x, dtype=float)


def simulate(priors: Priors, config: SimulationConfig | None = None) -> Cohort:
    """Simulate a diary cohort with known per-user intercepts and weights.

    Parameters
    ----------
    priors
        Features to simulate (raw columns, impact patterns, population priors).
    config
        Cohort size, heterogeneity, seed and realism settings.

    Returns
    -------
    Cohort
        The diary as written, it validated, and a JSON-ready truth dictionary.
    """
    cfg = config or SimulationConfig()
    _check(cfg)
    premonitory = premonitory_keys(priors, cfg.premonitory)
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_users
    location = rng.integers(0, cfg.n_locations, size=n)
    cycle = _cycle_offsets(rng, cfg)
    width = max(3, len(str(n)))
    users = [f"u{i + 1:0{width}d}" for i in range(n)]
    diary = _exposure_diary(priors, cfg, rng, users, location, cycle)
    design = exposures(diary, without_clustering(priors))  # the trigger features' exposures

    kinds = feature_kinds(priors, premonitory)
    mu, tau = _population(priors, cfg, kinds)
    # the intercepts' centre a0 is solved for below, so draw around 0 and shift
    za, w = new_users(
        Population(np.zeros(n), np.full(n, cfg.sigma_a), np.tile(mu, (n, 1)), np.tile(tau, (n, 1))),
        *standard_noise(rng, n, len(mu)),
    )
    a0, coef, onset, continues = _attacks(priors, cfg, rng, design, za, w)
    a = a0 + za
    table, realism = logged_table(priors, cfg, diary.data, onset, continues, premonitory)
    has_nan = bool(table[list(priors.columns)].isna().any().any())
    logged = validate_frame(
        table, priors, source="<simulated>", missing="impute" if has_nan else "error"
    )
    model = exposures(logged, priors)  # the model's rows and centring on the written diary
    sim_means = dict(zip(design.features, design.exposure_means.means, strict=True))
    shift = model.exposure_means.as_array(priors.keys) - np.array(
        [sim_means.get(k, 0.0) for k in priors.keys]  # the state enters uncentred
    )
    realism["attack_rate_realized"] = float(model.y.mean()) if model.n_obs else float("nan")
    realism["attack_length"] = attack_length(cfg, onset, continues)
    truth: dict[str, Any] = {
        "scale": SCALE,
        "population": {
            "a0": a0 + float(mu @ shift),
            "sigma_a": cfg.sigma_a,
            "mu": dict(zip(priors.keys, mu.tolist(), strict=True)),
            "tau": dict(zip(priors.keys, tau.tolist(), strict=True)),
        },
        "intercepts": dict(zip(users, (a + w @ shift).tolist(), strict=True)),
        "weights": {
            u: dict(zip(priors.keys, w[i].tolist(), strict=True)) for i, u in enumerate(users)
        },
        "kinds": kinds,
        "clustering": cfg.clustering,
        **clustering_truth(priors, users, coef, model),
        "generative": {
            "a0": a0,
            "intercepts": dict(zip(users, a.tolist(), strict=True)),
            "exposure_means": sim_means,
        },
        **realism,
        "menstruating": dict(zip(users, cycle[2].tolist(), strict=True)),
        "location": dict(zip(users, location.tolist(), strict=True)),
        "config": asdict(cfg),
        "priors_sha256": priors.sha256,
    }
    return Cohort(diary=logged, truth=truth, table=table)


#: What the truth's numbers mean (``Cohort.truth["scale"]``).
SCALE = (
    "log-odds; weights per unit of exposure (0 = lowest-risk level, 1 = highest); the weight of "
    "attack_yesterday is the user's clustering coefficient c_u. Intercepts and a0 are on the "
    "model's scale: at the mean exposures hbm.data.exposures computes on the written diary (its "
    "empty values imputed as --missing impute does), i.e. intercept_u = generative a_u + "
    "sum_k w[u,k] (m_k - g_k) + c_u m_c, with m_k the model's centring means, g_k the "
    "simulator's own (over every calendar day, before days and values went missing) and m_c the "
    "model's mean of attack_yesterday (the simulator adds c_u * state uncentred); a0 likewise "
    "with the population means. sigma_a is the spread of the generative intercepts."
)


def _population(
    priors: Priors, cfg: SimulationConfig, kinds: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """The true population means and between-user SDs of every feature's weight."""
    mu, _, prior_tau = priors.weight_priors()
    tau = np.full(len(mu), float(cfg.heterogeneity)) if cfg.heterogeneity is not None else prior_tau
    for i, key in enumerate(priors.keys):
        if kinds[key] == "clustering":
            mu[i], tau[i] = cfg.clustering, cfg.clustering_spread
        elif kinds[key] == "premonitory":
            mu[i], tau[i] = 0.0, 0.0
    return mu, tau


def _attacks(
    priors: Priors,
    cfg: SimulationConfig,
    rng: np.random.Generator,
    design: Design,
    za: np.ndarray,
    w: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """``a0``, each user's clustering coefficient, and the onsets and continuation days."""
    n, d = cfg.n_users, cfg.n_days
    w_trigger = w if priors.clustering is None else w[:, :-1]  # the clustering feature is last
    eta_w = np.einsum("ok,ok->o", design.x, w_trigger[design.user_index])
    coef = (
        w[:, priors.keys.index(CLUSTERING_KEY)]
        if priors.clustering is not None
        else np.full(n, cfg.clustering)
    )
    a0 = _solve_a0(cfg, design, za, eta_w, coef)
    a = a0 + za
    eta = (a[design.user_index] + eta_w).reshape(n, d)
    u01 = rng.random((n, d))
    extra = (
        np.random.default_rng([cfg.seed, 1]).poisson(cfg.attack_days - 1.0, (n, d))
        if cfg.attack_days > 1.0
        else None
    )
    onset, continues = attack_sequence(eta, u01, coef, extra)
    return a0, coef, onset, continues


def _solve_a0(
    cfg: SimulationConfig, design: Design, za: np.ndarray, eta_w: np.ndarray, coef: np.ndarray
) -> float:
    """``a0`` for the requested onset rate per day at risk (every day with neither clustering nor
    multi-day attacks: the formula of earlier versions, so their cohorts stay the same)."""
    if coef.any() or cfg.attack_days > 1.0:
        try:
            return solve_a0(
                za, eta_w.reshape(cfg.n_users, -1), coef, cfg.attack_rate, cfg.attack_days
            )
        except ValueError:
            raise no_intercept(cfg) from None

    def rate_gap(a0: float) -> float:
        return float(special.expit(a0 + za[design.user_index] + eta_w).mean() - cfg.attack_rate)

    return solve_intercept(rate_gap, cfg)


def _exposure_diary(
    priors: Priors,
    cfg: SimulationConfig,
    rng: np.random.Generator,
    users: list[str],
    location: np.ndarray,
    cycle: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> Diary:
    """The cohort's validated diary of exposures (outcomes still 0)."""
    n, d = cfg.n_users, cfg.n_days
    dates = pd.date_range(cfg.start_date, periods=d, freq="D")
    weekend = np.asarray(dates.day_of_week >= 5)
    columns: dict[str, np.ndarray] = {}
    for col in priors.columns:
        spec = next(
            (f.simulation for f in priors.features if f.column == col and f.simulation), None
        )
        rng_range = priors.column_range(col)
        columns[col] = _column(
            spec or {"kind": "continuous"}, rng, cfg, weekend, location, cycle, rng_range
        )
    frame = pd.DataFrame(
        {
            "user_id": np.repeat(users, d),
            "date": np.tile(dates.strftime("%Y-%m-%d"), n),
            "migraine": 0,
        }
    )
    for col, values in columns.items():
        frame[col] = values.reshape(-1)
    return validate_frame(frame, priors, source="<simulated>")
