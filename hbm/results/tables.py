"""Posterior tables: population, per-user weights, users, and trigger profiles.

Interval defaults are stated once here (``CI_PROB``, ``CI_KIND``) and every table
records the probability and kind it used. Classes per (user, feature), with the region of practical
equivalence ``ROPE`` = |log-odds| < 0.2 (odds ratios 0.82-1.22, smaller than every non-null effect
in the evidence file except the weakest weather effects). The column ``class`` holds the calls of
``hbm.results.calls`` (false-discovery rate controlled over the run; premonitory-flagged features
never called triggers; the clustering term its own class). ``interval_class`` keeps the interval
rule, for comparison:

* ``trigger``: the whole interval lies above +ROPE;
* ``protector``: the whole interval lies below -ROPE;
* ``no association``: the whole interval lies inside the ROPE;
* ``uncertain``: anything else (the data cannot yet tell).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

from hbm.data.exposures import Design
from hbm.data.priors import Priors
from hbm.defaults import (
    CI_KIND,
    CI_KINDS,
    CI_PROB,
    FDR_LEVEL,
    MIN_DAYS,
    ROPE,
    SPREAD,
    SPREAD_COLUMN,
)
from hbm.errors import HBMError
from hbm.model.population import NO_POOLING_SD, new_user_draws
from hbm.results.calls import PREMONITORY, Calls, call_classes, fdr_calls
from hbm.results.json_values import json_ready
from hbm.results.prediction import next_day_risk

if TYPE_CHECKING:
    from hbm.inference.fitting import FitResult

CLASSES = ("trigger", "protector", "no association", "uncertain")  # of the interval rule
TOP_TRIGGERS = 5
PRIOR_COLUMNS = ("prior_mean", "prior_sd", "prior_between_user_sd")


def _summary(
    dt: xr.DataTree, var: str, ci_prob: float, ci_kind: str, kind: str = "stats"
) -> pd.DataFrame:
    """Tidy ArviZ summary of one variable: one row per element, columns mean/sd/ci_lb/ci_ub
    (``kind="stats"``), with ESS, R-hat and MCSE too (``"all"``: their quantile MCSE took 4 of
    a medium fit's 6 s of exports for the 650 weights, which export none of them)."""
    with warnings.catch_warnings():
        # One chain, one draw or draws that never change make R-hat and ESS NaN: the exports
        # state them (null with a reason in JSON), so numpy's divide warnings say nothing more.
        warnings.simplefilter("ignore", RuntimeWarning)
        ds = az.summary(
            dt,
            var_names=[var],
            kind=kind,
            fmt="xarray",
            ci_prob=ci_prob,
            ci_kind=ci_kind,
            round_to="none",
        )
    table = ds[var].to_series().unstack("summary")
    prefix = f"{ci_kind}{round(ci_prob * 100):g}"
    table = table.rename(columns={f"{prefix}_lb": "ci_lb", f"{prefix}_ub": "ci_ub"})
    return table


def odds_ratio(log_odds: np.ndarray) -> np.ndarray:
    """``exp(log_odds)``; beyond about 709 that is infinite, stated so (a JSON export writes it
    as null with a reason, ``json_ready``) rather than warned about."""
    with np.errstate(over="ignore"):
        return np.asarray(np.exp(log_odds))


def classify(lb: np.ndarray, ub: np.ndarray, rope: float = ROPE) -> np.ndarray:
    """Class of each interval against the region of practical equivalence (see module doc)."""
    lb, ub = np.asarray(lb), np.asarray(ub)
    out = np.full(lb.shape, "uncertain", dtype=object)
    out[(lb >= -rope) & (ub <= rope)] = "no association"
    out[lb > rope] = "trigger"
    out[ub < -rope] = "protector"
    return out


def population_table(
    dt: xr.DataTree,
    priors: Priors,
    ci_prob: float = CI_PROB,
    ci_kind: str = CI_KIND,
) -> pd.DataFrame:
    """Per feature: posterior of the population weight ``mu`` and between-user SD ``tau``."""
    post = dt["posterior"].to_dataset()
    rows = pd.DataFrame(
        {
            "feature": list(priors.keys),
            "name": [f.name for f in priors.features],
            "group": [f.group for f in priors.features],
            "category": [f.category for f in priors.features],
            "role": [f.role for f in priors.features],
            **dict(zip(PRIOR_COLUMNS, priors.weight_priors(), strict=True)),
            "premonitory_confound": [f.premonitory_confound for f in priors.features],
        }
    )
    for var in ("mu", "tau"):
        if var not in post:
            continue
        s = _summary(dt, var, ci_prob, ci_kind, kind="all").reindex(list(priors.keys))
        for col in ("mean", "sd", "ci_lb", "ci_ub", "ess_bulk", "ess_tail", "r_hat"):
            rows[f"{var}_{col}"] = s[col].to_numpy()
    if "mu" in post:
        mu = post["mu"].sel(feature=list(priors.keys))  # the rows' order, not the tree's
        rows["mu_odds_ratio"] = odds_ratio(mu.median(("chain", "draw")).values)
        rows["p_mu_positive"] = (mu > 0).mean(("chain", "draw")).values
    if "tau" in post:
        tau = post["tau"].sel(feature=list(priors.keys))
        rows[SPREAD_COLUMN] = (tau > SPREAD).mean(("chain", "draw")).values
    rows["ci_prob"] = ci_prob
    rows["ci_kind"] = ci_kind
    return rows


def weights_table(
    dt: xr.DataTree,
    priors: Priors,
    ci_prob: float = CI_PROB,
    ci_kind: str = CI_KIND,
    rope: float = ROPE,
    fdr_level: float = FDR_LEVEL,
) -> pd.DataFrame:
    """Per (user, feature): posterior mean, sd, interval, odds ratio, P(w > 0), the
    probabilities beyond the ROPE, the interval rule's class and the run's FDR-controlled
    class (``weights_calls`` gives the calls' summary)."""
    return weights_calls(dt, priors, ci_prob, ci_kind, rope, fdr_level)[0]


def weights_calls(
    dt: xr.DataTree,
    priors: Priors,
    ci_prob: float = CI_PROB,
    ci_kind: str = CI_KIND,
    rope: float = ROPE,
    fdr_level: float = FDR_LEVEL,
) -> tuple[pd.DataFrame, Calls]:
    """``weights_table`` and the run's calls (``hbm.results.calls.fdr_calls``)."""
    w = dt["posterior"].to_dataset()["w"].sel(feature=list(priors.keys))  # the index's order
    s = _summary(dt, "w", ci_prob, ci_kind)
    users = [str(u) for u in w["user"].values]
    index = pd.MultiIndex.from_product([users, list(priors.keys)], names=["user", "feature"])
    s = s.reindex(index)
    by_key = {f.key: f for f in priors.features}

    def per_cell(arr: xr.DataArray) -> np.ndarray:
        return np.asarray(arr.transpose("user", "feature").values.reshape(-1))

    median = per_cell(w.median(("chain", "draw")))
    features = index.get_level_values("feature")
    cells = [by_key[k] for k in features]
    table = pd.DataFrame(
        {
            "user_id": index.get_level_values("user"),
            "feature": features,
            "name": [f.name for f in cells],
            "group": [f.group for f in cells],
            "category": [f.category for f in cells],
            "role": [f.role for f in cells],
            "mean": s["mean"].to_numpy(),
            "sd": s["sd"].to_numpy(),
            "median": median,
            "ci_lb": s["ci_lb"].to_numpy(),
            "ci_ub": s["ci_ub"].to_numpy(),
            "ci_prob": ci_prob,
            "ci_kind": ci_kind,
            "odds_ratio": odds_ratio(median),
            "odds_ratio_lb": odds_ratio(s["ci_lb"].to_numpy()),
            "odds_ratio_ub": odds_ratio(s["ci_ub"].to_numpy()),
            "p_positive": per_cell((w > 0).mean(("chain", "draw"))),
            "p_above_rope": per_cell((w > rope).mean(("chain", "draw"))),
            "p_below_rope": per_cell((w < -rope).mean(("chain", "draw"))),
            "rope": rope,
        }
    )
    interval = classify(table["ci_lb"].to_numpy(), table["ci_ub"].to_numpy(), rope)
    table["interval_class"] = np.where(table["role"] == "clustering", "clustering", interval)
    trigger = np.array([f.is_trigger for f in cells], dtype=bool)
    premonitory = np.array([f.premonitory_confound for f in cells], dtype=bool)
    p_up, p_down = table["p_above_rope"].to_numpy(), table["p_below_rope"].to_numpy()
    may_call = trigger & ~premonitory
    calls = fdr_calls(p_up, p_down, may_call, fdr_level)
    # the likelier side's probability for every trigger cell, those that may not be called
    # (premonitory) included; none for the clustering term, which is never a call
    table["p_call"] = np.where(trigger, np.maximum(p_up, p_down), np.nan)
    table["class"] = call_classes(
        calls, p_up, table["interval_class"].to_numpy(), table["role"].to_numpy(), premonitory
    )
    table["fdr_level"] = fdr_level
    return table, calls


def confidence(dt: xr.DataTree, pooling: str = "partial") -> pd.Series:
    """Personalization confidence per user: ``1 - mean_k Var(w[u,k]) / E[tau[k]^2]``, in [0, 1].

    0 for a user the data say nothing about (their weights are as uncertain as a new user's),
    towards 1 when their own days pin their weights down. Under complete pooling nobody has
    personal weights (0); without pooling the reference spread is the prior's ``NO_POOLING_SD``.
    """
    post = dt["posterior"].to_dataset()
    users = [str(u) for u in post["user"].values]
    if pooling == "complete" or "w" not in post:
        return pd.Series(0.0, index=pd.Index(users, name="user_id"), name="confidence")
    conf = _confidence(post["w"], post.get("tau")).values
    return pd.Series(conf, index=pd.Index(users, name="user_id"), name="confidence")


def _confidence(w: xr.DataArray, tau: xr.DataArray | None) -> xr.DataArray:
    var_w = w.var(("chain", "draw"))
    ref = (tau**2).mean(("chain", "draw")) if tau is not None else NO_POOLING_SD**2
    return confidence_of(var_w, ref)


def confidence_of(var_w: xr.DataArray, ref: xr.DataArray | float) -> xr.DataArray:
    """Personalization confidence: ``1 - mean over features of Var(w) / E[tau^2]``, in [0, 1].

    ``var_w`` is a user's posterior variance per feature, ``ref`` a new user's (the population's
    spread); 0 means the data taught nothing beyond the population, 1 that they pin ``w`` down.
    """
    return (1.0 - (var_w / ref).mean("feature")).clip(0.0, 1.0)


def cold_start_weights(dt: xr.DataTree, seed: int = 0) -> xr.DataArray:
    """Weights of a user the fit has never seen: one new user per posterior draw.

    ``w_new[k] = mu[k] + tau[k] * z`` (``(chain, draw, feature)``, drawn by
    ``hbm.model.population.new_user_draws``, the draws ``hbm predict`` uses for unseen users);
    without ``tau`` (complete pooling) the population weights themselves.
    """
    post = dt["posterior"].to_dataset()
    mu = post["mu"].transpose("chain", "draw", "feature")
    _, w_new = new_user_draws(post, seed=seed)
    return xr.DataArray(w_new.reshape(mu.shape), dims=mu.dims, coords=mu.coords)


def new_user_confidence(dt: xr.DataTree, seed: int = 0) -> float:
    """Personalization confidence of a user with no days, from their cold-start weights."""
    post = dt["posterior"].to_dataset()
    if "tau" not in post:  # complete pooling: nobody has personal weights (see ``confidence``)
        return 0.0
    w_new = cold_start_weights(dt, seed)
    return float(_confidence(w_new, post["tau"]).item())


def users_table(
    dt: xr.DataTree,
    design: Design,
    weights: pd.DataFrame,
    pooling: str = "partial",
    ci_prob: float = CI_PROB,
    ci_kind: str = CI_KIND,
    min_days: int = MIN_DAYS,
) -> pd.DataFrame:
    """Per user: days, attacks, posterior base rate, confidence and class counts."""
    users = list(design.users)
    days = np.bincount(design.user_index, minlength=len(users))
    attacks = np.bincount(design.user_index, weights=design.y, minlength=len(users)).astype(int)
    a = dt["posterior"]["a"]
    rate = xr.apply_ufunc(special.expit, a)
    rate_tree = xr.DataTree.from_dict({"posterior": rate.to_dataset(name="base_rate")})
    s = _summary(rate_tree, "base_rate", ci_prob, ci_kind).reindex(users)
    counts = weights.groupby(["user_id", "class"]).size().unstack("class").reindex(users).fillna(0)
    table = pd.DataFrame(
        {
            "user_id": users,
            "days_logged": days,
            "attacks": attacks,
            "attack_rate_observed": attacks / np.maximum(days, 1),
            "base_rate_mean": s["mean"].to_numpy(),
            "base_rate_ci_lb": s["ci_lb"].to_numpy(),
            "base_rate_ci_ub": s["ci_ub"].to_numpy(),
            "ci_prob": ci_prob,
            "ci_kind": ci_kind,
            "confidence": confidence(dt, pooling).reindex(users).to_numpy(),
            "n_triggers": counts.get("trigger", pd.Series(0, index=users)).astype(int).to_numpy(),
            "n_protectors": counts.get("protector", pd.Series(0, index=users))
            .astype(int)
            .to_numpy(),
            "n_no_association": counts.get("no association", pd.Series(0, index=users))
            .astype(int)
            .to_numpy(),
            "n_possible_premonitory": counts.get(PREMONITORY, pd.Series(0, index=users))
            .astype(int)
            .to_numpy(),
            "few_days": days < min_days,
        }
    )
    return table.join(next_day_risk(dt, design, ci_prob).reindex(users), on="user_id")


def profile_records(
    weights: pd.DataFrame,
    users: pd.DataFrame,
    priors: Priors,
    reliable: bool,
    reasons: tuple[str, ...] = (),
    top: int = TOP_TRIGGERS,
) -> list[dict[str, Any]]:
    """Trigger profiles in the earlier design's schema, one per user.

    ``trigger_weights`` holds, per group, the mean posterior weight of the group's trigger
    features; ``top_triggers`` the ``top`` trigger features with the largest posterior mean
    weight; ``clustering`` the clustering term's weight (``null`` when the model has none).
    """
    conf = users.set_index("user_id")["confidence"]
    out = []
    for user_id, rows in weights.groupby("user_id", sort=False):
        # a weights table of an earlier version has no role: every row a trigger
        role = rows["role"] if "role" in rows else pd.Series("trigger", index=rows.index)
        history = rows[role == "clustering"]
        rows = rows[role == "trigger"]
        group_means = rows.groupby("group", sort=False)["mean"].mean()
        best = rows.sort_values("mean", ascending=False, kind="stable").head(top)
        out.append(
            {
                "user_id": str(user_id),
                "trigger_weights": {g: float(group_means[g]) for g in priors.groups},
                "top_triggers": [_trigger(r) for r in best.to_dict("records")],
                "clustering": _trigger(history.iloc[0].to_dict()) if len(history) else None,
                "personalization_confidence": float(conf[user_id]),
                "reliable": bool(reliable),
                "reliability_reasons": list(reasons),
                "ci_prob": float(rows["ci_prob"].iloc[0]),
                "ci_kind": str(rows["ci_kind"].iloc[0]),
            }
        )
    return out


def cold_start_profile(
    dt: xr.DataTree,
    priors: Priors,
    reliable: bool,
    reasons: tuple[str, ...] = (),
    ci_prob: float = CI_PROB,
    ci_kind: str = CI_KIND,
    user_id: str = "<new user>",
    seed: int = 0,
) -> dict[str, Any]:
    """The trigger profile of a user the fit has never seen, marked ``cold_start: true``.

    Its weights are the population-predictive draws of ``cold_start_weights`` summarised like any
    user's, so its intervals carry the between-user spread and its confidence is near 0.
    """
    w_new = cold_start_weights(dt, seed).expand_dims(user=[user_id], axis=-2)
    tree = xr.DataTree.from_dict({"posterior": w_new.to_dataset(name="w")})
    weights = weights_table(tree, priors, ci_prob, ci_kind)
    users = pd.DataFrame({"user_id": [user_id], "confidence": [new_user_confidence(dt, seed)]})
    (profile,) = profile_records(weights, users, priors, reliable, reasons)
    return {**profile, "cold_start": True}


def _trigger(r: Mapping[Hashable, Any]) -> dict[str, Any]:
    entry = {
        "feature": r["feature"],
        "name": r["name"],
        "category": r["category"],
        "group": r["group"],
        "weight": float(r["mean"]),
        "weight_ci": [float(r["ci_lb"]), float(r["ci_ub"])],
        "odds_ratio": float(r["odds_ratio"]),
        "odds_ratio_ci": [float(r["odds_ratio_lb"]), float(r["odds_ratio_ub"])],
        "p_positive": float(r["p_positive"]),
        "p_call": float(r["p_call"]) if "p_call" in r and pd.notna(r["p_call"]) else None,
        "class": r["class"],
        "interval_class": r.get("interval_class"),
    }
    # a weights table of an earlier version has neither call column: leave them out
    return {
        k: v for k, v in entry.items() if v is not None or k not in ("p_call", "interval_class")
    }


@dataclass(frozen=True)
class Exports:
    """All tables of a run, built from one fit with one interval choice."""

    population: pd.DataFrame
    weights: pd.DataFrame
    users: pd.DataFrame
    profiles: list[dict[str, Any]]
    diagnostics: dict[str, Any]
    ci_prob: float
    ci_kind: str
    calls: dict[str, Any]  # the trigger calls' rule, level, threshold and expected FDR


def build_exports(
    result: FitResult,
    ci_prob: float = CI_PROB,
    ci_kind: str = CI_KIND,
    min_days: int = MIN_DAYS,
    fdr_level: float = FDR_LEVEL,
) -> Exports:
    """Population, weights, users, profiles and diagnostics, each flagged reliable or not;
    trigger calls at the expected false-discovery level ``fdr_level``."""
    if not 0.0 < ci_prob < 1.0:
        raise HBMError(f"ci_prob must be in (0, 1), got {ci_prob}")
    if ci_kind not in CI_KINDS:
        raise HBMError(f"ci_kind '{ci_kind}' is unknown; expected one of {CI_KINDS}")
    dt, diag = result.tree, result.diagnostics
    reliable, reasons = diag.reliable, diag.reasons
    population = population_table(dt, result.priors, ci_prob, ci_kind)
    weights, calls = weights_calls(dt, result.priors, ci_prob, ci_kind, fdr_level=fdr_level)
    users = users_table(dt, result.design, weights, result.pooling, ci_prob, ci_kind, min_days)
    for table in (population, weights, users):
        table["reliable"] = reliable
    profiles = [
        json_ready(p) for p in profile_records(weights, users, result.priors, reliable, reasons)
    ]
    diagnostics = {
        **diag.to_dict(),
        "nuts_sampler": result.config.backend,
        "chains": result.config.chains,
        "draws": result.config.draws,
        "tune": result.config.tune,
        "centring": result.centring.summary(),
        "centring_rule": result.centring.rule,
    }
    diagnostics = json_ready(diagnostics, diag.not_available)
    summary = json_ready(calls.summary())
    return Exports(population, weights, users, profiles, diagnostics, ci_prob, ci_kind, summary)
