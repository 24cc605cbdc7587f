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

Outcomes follow the model: ``logit p[u,t] = a[u] + sum_k w[u,k] x[u,t,k]`` (+ ``clustering`` if
the user had an attack the day before), with ``x`` the centred exposures of ``hbm.data.exposures``.
The
population means are the priors' means; the between-user SDs are ``heterogeneity`` for every
feature or, without it, the priors' between-user SDs. ``a0`` is solved so the cohort's expected
attack rate equals ``attack_rate``.
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
from hbm.data.exposures import exposures
from hbm.data.priors import Priors
from hbm.errors import HBMError
from hbm.model.population import Population, new_users, standard_noise


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
    clustering: float = 0.0
    start_date: str = "2025-01-06"


@dataclass(frozen=True)
class Cohort:
    """A simulated diary and its truth on the model's scale."""

    diary: Diary
    truth: dict[str, Any]


def _check(cfg: SimulationConfig) -> None:
    problems = []
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
        The validated ``Diary`` and a JSON-ready truth dictionary.
    """
    cfg = config or SimulationConfig()
    _check(cfg)
    rng = np.random.default_rng(cfg.seed)
    n, d = cfg.n_users, cfg.n_days
    location = rng.integers(0, cfg.n_locations, size=n)
    cycle = _cycle_offsets(rng, cfg)
    width = max(3, len(str(n)))
    users = [f"u{i + 1:0{width}d}" for i in range(n)]
    diary = _exposure_diary(priors, cfg, rng, users, location, cycle)
    design = exposures(diary, priors)

    keys = priors.keys
    mu, _, prior_tau = priors.weight_priors()
    tau = (
        np.full(len(keys), float(cfg.heterogeneity)) if cfg.heterogeneity is not None else prior_tau
    )
    # the intercepts' centre a0 is solved for below, so draw around 0 and shift
    za, w = new_users(
        Population(np.zeros(n), np.full(n, cfg.sigma_a), np.tile(mu, (n, 1)), np.tile(tau, (n, 1))),
        *standard_noise(rng, n, len(keys)),
    )
    eta_w = np.einsum("ok,ok->o", design.x, w[design.user_index])

    def rate_gap(a0: float) -> float:
        return float(special.expit(a0 + za[design.user_index] + eta_w).mean() - cfg.attack_rate)

    a0 = float(optimize.brentq(rate_gap, -15.0, 15.0))
    a = a0 + za
    y = _outcomes(rng, (a[design.user_index] + eta_w).reshape(n, d), cfg.clustering)
    data = diary.data.copy()
    data["migraine"] = y.reshape(-1)
    diary = Diary(data=data, columns=diary.columns, source=diary.source, report=diary.report)

    truth: dict[str, Any] = {
        "scale": (
            "log-odds; weights per unit of exposure (0 = lowest-risk level, 1 = highest); "
            "intercepts at the cohort's mean exposures (hbm.data.exposures centring)"
        ),
        "population": {
            "a0": a0,
            "sigma_a": cfg.sigma_a,
            "mu": dict(zip(keys, mu.tolist(), strict=True)),
            "tau": dict(zip(keys, tau.tolist(), strict=True)),
        },
        "intercepts": dict(zip(users, a.tolist(), strict=True)),
        "weights": {u: dict(zip(keys, w[i].tolist(), strict=True)) for i, u in enumerate(users)},
        "clustering": cfg.clustering,
        "menstruating": dict(zip(users, cycle[2].tolist(), strict=True)),
        "location": dict(zip(users, location.tolist(), strict=True)),
        "config": asdict(cfg),
        "priors_sha256": priors.sha256,
    }
    return Cohort(diary=diary, truth=truth)


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


def _outcomes(rng: np.random.Generator, eta: np.ndarray, clustering: float) -> np.ndarray:
    """Attacks day by day (users x days); an attack the day before adds ``clustering`` log-odds."""
    y = np.zeros(eta.shape, dtype=np.int8)
    u01 = rng.random(eta.shape)
    for t in range(eta.shape[1]):
        boost = clustering * y[:, t - 1] if t > 0 else 0.0
        y[:, t] = u01[:, t] < special.expit(eta[:, t] + boost)
    return y
