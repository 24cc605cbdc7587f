"""How many diary days a new user needs: simulation from a fitted population.

For each simulated user: one posterior draw of the population (``mu, tau, a0, sigma_a``) gives
their true intercept and weights; their exposures are the logged days of a randomly chosen user of
the fit (so exposure patterns are real ones); outcomes are simulated from the model. For each
number of days ``n`` the user's posterior is computed from their first ``n`` days under the
population-predictive prior of a new user, approximated as normal (mean ``E[mu]``, variance
``Var(mu) + E[tau^2]``; likewise for the intercept), by a Laplace approximation of the single-user
logistic model: mode by Newton's method, SD from the Hessian. A new user joins a fitted cohort and
barely moves the population, so the rest of the hierarchy is held fixed. With no days the
confidence is 0, as for ``hbm.results.tables.cold_start_profile``. The intervals are equal-tailed
normal ones at ``ci_prob``; classes use ``hbm.results.tables.classify``, so they follow the same
ROPE
rule as the exports.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special, stats

from hbm.defaults import CI_PROB, DAYS_NEEDED_USERS, ROPE
from hbm.errors import RunError
from hbm.inference.update import laplace
from hbm.model.population import Population, new_users, population_of, standard_noise
from hbm.results.tables import classify, confidence_of

DAYS = (30, 60, 90, 180, 365)


def _true_class(w: np.ndarray, rope: float) -> np.ndarray:
    out = np.full(w.shape, "no association", dtype=object)
    out[w > rope] = "trigger"
    out[w < -rope] = "protector"
    return out


def days_needed(
    tree: xr.DataTree,
    days: Sequence[int] = DAYS,
    n_users: int = DAYS_NEEDED_USERS,
    ci_prob: float = CI_PROB,
    rope: float = ROPE,
    seed: int = 0,
) -> pd.DataFrame:
    """Interval width and class accuracy of a new user's weights against days logged.

    Parameters
    ----------
    tree
        A partial-pooling fit with ``constant_data`` (``x``, ``user_index``) and posterior draws of
        ``mu, tau, a0, sigma_a``.
    days
        Numbers of days logged to evaluate. A user whose real exposure series is shorter than a
        number of days repeats it from the start.
    n_users
        Simulated users per number of days (the same users, with nested day ranges).
    ci_prob, rope
        Interval probability and the region of practical equivalence of the classes.
    seed
        Seed of the simulation.

    Returns
    -------
    pandas.DataFrame
        One row per number of days: ``median_ci_width``, ``mean_ci_width``, ``decided_share``
        (share of (user, feature) with a class other than "uncertain"), ``class_accuracy``
        (share of (user, feature) whose class equals the class of the true weight),
        ``wrong_class_rate`` (a definite class the truth contradicts), ``trigger_sensitivity``
        (true triggers called triggers), ``confidence`` (``1 - mean Var / tau^2``, as exported),
        ``n_users``, ``ci_prob``.
    """
    post = tree["posterior"].to_dataset()
    if "tau" not in post or "constant_data" not in tree.children:
        raise RunError("days needed needs a partial-pooling fit with its constant_data (x)")
    x_all = np.asarray(tree["constant_data"]["x"].values, dtype=float)
    user_index = np.asarray(tree["constant_data"]["user_index"].values)
    pop = population_of(post)
    prior_mean, prior_sd = _new_user_prior(pop)
    ref_var = (pop.w_scale**2).mean(0)
    z = stats.norm.ppf(0.5 + ci_prob / 2)
    rng = np.random.default_rng(seed)
    n_real = int(user_index.max()) + 1
    max_days = max(days)
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in days}
    for _ in range(n_users):
        # one population draw, a new user from it, a real user's exposures, simulated outcomes
        one = pop.take(np.array([rng.integers(pop.n_draws)]))
        a, w = (v[0] for v in new_users(one, *standard_noise(rng, 1, one.w_loc.shape[1])))
        x_user = x_all[user_index == rng.integers(n_real)]
        x_user = np.resize(x_user, (max_days, x_user.shape[1]))  # repeats a short series
        y = (rng.random(max_days) < special.expit(a + x_user @ w)).astype(float)
        design = np.column_stack([np.ones(max_days), x_user])
        truth = _true_class(w, rope)
        for n in days:
            mean, hess = laplace(design[:n], y[:n], prior_mean, prior_sd)
            sd = np.sqrt(np.diag(np.linalg.inv(hess)))
            row = _scores((mean - z * sd)[1:], (mean + z * sd)[1:], truth, rope)
            var = xr.DataArray(sd[1:] ** 2, dims="feature")
            row["confidence"] = float(confidence_of(var, xr.DataArray(ref_var, dims="feature")))
            rows[n].append(row)
    return pd.DataFrame([_summary(n, pd.DataFrame(rows[n]), n_users, ci_prob) for n in days])


def _new_user_prior(pop: Population) -> tuple[np.ndarray, np.ndarray]:
    """A new user's (intercept, weights) as normal: mean E[loc], variance Var(loc) + E[scale^2]."""
    mean = np.concatenate([[pop.a_loc.mean()], pop.w_loc.mean(0)])
    var = np.concatenate(
        [[pop.a_loc.var() + (pop.a_scale**2).mean()], pop.w_loc.var(0) + (pop.w_scale**2).mean(0)]
    )
    return mean, np.sqrt(var)


def _scores(lb: np.ndarray, ub: np.ndarray, truth: np.ndarray, rope: float) -> dict[str, float]:
    """One simulated user's intervals and classes against their true classes."""
    called = classify(lb, ub, rope)
    definite = called != "uncertain"
    return {
        "decided": float(np.mean(definite)),
        "width": float(np.median(ub - lb)),
        "mean_width": float(np.mean(ub - lb)),
        "accuracy": float(np.mean(called == truth)),
        "wrong": float(np.mean(definite & (called != truth))),
        "sens_hits": float(np.sum((truth == "trigger") & (called == "trigger"))),
        "sens_n": float(np.sum(truth == "trigger")),
    }


def _summary(n: int, r: pd.DataFrame, n_users: int, ci_prob: float) -> dict[str, float]:
    """The row of ``days_needed`` for ``n`` days, from every simulated user's scores."""
    return {
        "days": n,
        "median_ci_width": float(r["width"].median()),
        "mean_ci_width": float(r["mean_width"].mean()),
        "decided_share": float(r["decided"].mean()),
        "class_accuracy": float(r["accuracy"].mean()),
        "wrong_class_rate": float(r["wrong"].mean()),
        "trigger_sensitivity": float(r["sens_hits"].sum() / max(r["sens_n"].sum(), 1)),
        "confidence": float(r["confidence"].mean()),
        "n_users": n_users,
        "ci_prob": ci_prob,
    }
