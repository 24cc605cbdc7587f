"""Risk for new days: known users from their own posterior, unseen users from the population.

For a known user, ``p = invlogit(a[u] + x . w[u])`` per posterior draw. For an unseen user (cold
start), every draw first draws a new user from the fitted population
(``hbm.model.population.new_user_draws``: ``a ~ Normal(a0, sigma_a)``, ``w[k] ~ Normal(mu[k],
tau[k])``; under no pooling the priors' means and wide SDs), so the prediction carries the
between-user uncertainty. Exposures use the centring stored in the fit.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

from hbm.data.diary import Diary
from hbm.data.exposures import Design, ExposureMeans, exposures
from hbm.data.priors import CLUSTERING_KEY, Priors, parse_priors
from hbm.defaults import CI_PROB
from hbm.inference.config import thinning_step
from hbm.inference.provenance import stored_centering, stored_last_days, stored_priors_json
from hbm.model.population import new_user_draws

MAX_DRAWS = 1000


def fit_priors(tree: xr.DataTree) -> Priors:
    """The priors a fit was made with (from its attrs, ``hbm.inference.provenance``)."""
    return parse_priors(stored_priors_json(tree.attrs), "<priors stored in fit.nc>")


def fit_exposure_means(tree: xr.DataTree) -> ExposureMeans:
    """The exposure centring a fit was made with (from its attrs)."""
    means = stored_centering(tree.attrs)
    return ExposureMeans(features=tuple(means), means=tuple(means.values()))


def _thinning(post: xr.Dataset, max_draws: int) -> int:
    return thinning_step(post.sizes["chain"] * post.sizes["draw"], max_draws)


def _stacked(post: xr.Dataset, name: str, max_draws: int) -> np.ndarray:
    arr = post[name].stack(sample=("chain", "draw"))
    step = _thinning(post, max_draws)
    return np.asarray(arr.isel(sample=slice(None, None, step)).transpose("sample", ...).values)


def predict(
    tree: xr.DataTree,
    diary: Diary,
    ci_prob: float = CI_PROB,
    seed: int = 0,
    max_draws: int = MAX_DRAWS,
) -> pd.DataFrame:
    """Posterior predictive migraine risk for every row of a diary.

    Parameters
    ----------
    tree
        A fit saved by ``hbm fit`` (``hbm.results.io.load_fit``).
    diary
        Days to predict, validated against the fit's priors. Lags, and the clustering state,
        are computed within this diary, never from a day's own outcome; a known user's first
        day takes the state of the fit's last day when that is the day before it.
    ci_prob
        Probability of the equal-tailed interval of the risk.
    seed
        Seed of the cold-start draws of unseen users.
    max_draws
        Posterior draws used (evenly thinned).

    Returns
    -------
    pandas.DataFrame
        ``user_id, date, known_user, risk_mean, risk_lb, risk_ub, ci_prob, ci_kind`` and
        ``migraine`` when the diary has it; one row per day at risk of an onset (days marked
        ``migraine_continues`` have none; ``attrs["continuing_days"]`` counts them).
    """
    design = exposures(diary, fit_priors(tree), exposure_means=fit_exposure_means(tree))
    out = predict_design(tree, continued_from_fit(tree, design, diary), ci_prob, seed, max_draws)
    # days inside a continuing attack are not at risk of an onset: no row, but counted
    out.attrs["continuing_days"] = design.continuing_days
    return out


def continued_from_fit(tree: xr.DataTree, design: Design, diary: Diary) -> Design:
    """The design with each known user's first day given the fitted diary's last day's state.

    A diary of new days only does not hold the day before its first: the clustering state of
    that first day would be unknown. When the fit's last day for the user is exactly the day
    before (``stored_last_days``), its attack state is used, as if the diaries were one.
    """
    if CLUSTERING_KEY not in design.features or not design.n_obs:
        return design
    last_days = stored_last_days(tree.attrs)
    k = design.features.index(CLUSTERING_KEY)
    mean = design.exposure_means.as_array((CLUSTERING_KEY,))[0]
    first = diary.data.groupby("user_id", sort=False)["date"].min()
    x, exposure = design.x.copy(), design.exposure.copy()
    for ui, user in enumerate(design.users):
        if user not in last_days:
            continue
        date, state = last_days[user]
        start = first[user]
        if pd.Timestamp(date) != start - pd.Timedelta(days=1):
            continue
        rows = np.flatnonzero((design.user_index == ui) & (design.dates == start.to_datetime64()))
        x[rows, k], exposure[rows, k] = state - mean, state
    return replace(design, x=x, exposure=exposure)


def predict_design(
    tree: xr.DataTree,
    design: Design,
    ci_prob: float = CI_PROB,
    seed: int = 0,
    max_draws: int = MAX_DRAWS,
) -> pd.DataFrame:
    """``predict`` for a design already built with the fit's centring (one row per obs, in order).

    Unseen users in ``design.users`` get the population-predictive (cold-start) risk.
    """
    post = tree["posterior"].to_dataset()
    known = [str(u) for u in post["user"].values]
    pos = {u: i for i, u in enumerate(known)}
    a = _stacked(post, "a", max_draws)  # (S, U)
    w = _stacked(post, "w", max_draws)  # (S, U, K)
    # Every unseen user gets the same new-user draws (those of the service's cold-start profile
    # for this seed), so a user's risk does not depend on who else is new in the file.
    a_all, w_all = new_user_draws(post, fit_priors(tree), seed)
    step = _thinning(post, max_draws)
    a_new, w_new = a_all[::step], w_all[::step]
    lo_q, hi_q = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
    risk = np.empty((3, design.n_obs))
    for ui, user in enumerate(design.users):
        sel = design.user_index == ui
        if not sel.any():
            continue
        x = design.x[sel]
        if user in pos:
            eta = a[:, pos[user], None] + w[:, pos[user], :] @ x.T
        else:
            eta = a_new[:, None] + w_new @ x.T
        p = special.expit(eta)  # (S, days)
        risk[:, sel] = p.mean(axis=0), np.quantile(p, lo_q, axis=0), np.quantile(p, hi_q, axis=0)
    users = np.asarray(design.users, dtype=object)
    out = pd.DataFrame(
        {
            "user_id": users[design.user_index] if design.n_obs else [],
            "date": design.dates,
            "known_user": np.isin(users[design.user_index], known) if design.n_obs else [],
            "risk_mean": risk[0],
            "risk_lb": risk[1],
            "risk_ub": risk[2],
        }
    )
    out["ci_prob"] = ci_prob
    out["ci_kind"] = "eti"
    out["migraine"] = design.y
    return out


def next_day_risk(dt: xr.DataTree, design: Design, ci_prob: float = CI_PROB) -> pd.DataFrame:
    """Per user, tomorrow's attack risk given today's state, other exposures at the cohort mean.

    ``invlogit(a[u] + w[u, attack_yesterday] * (s - m))`` per draw, ``s`` 1 after an attack day
    and 0 after an attack-free day, ``m`` the clustering exposure's centring mean; mean and
    ``ci_prob`` equal-tailed interval. No columns when the fit has no clustering term.
    """
    post = dt["posterior"].to_dataset()
    if CLUSTERING_KEY not in design.features or "w" not in post:
        return pd.DataFrame(index=pd.Index([str(u) for u in post["user"].values]))
    m = design.exposure_means.as_array((CLUSTERING_KEY,))[0]
    w_c = post["w"].sel(feature=CLUSTERING_KEY, drop=True)
    lo, hi = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
    columns = {}
    for state, name in ((1.0, "after_attack_day"), (0.0, "after_attack_free_day")):
        risk = xr.apply_ufunc(special.expit, post["a"] + w_c * (state - m))
        q = risk.quantile([lo, hi], dim=("chain", "draw"))
        columns[f"risk_{name}_mean"] = risk.mean(("chain", "draw")).values
        columns[f"risk_{name}_lb"] = q.isel(quantile=0).values
        columns[f"risk_{name}_ub"] = q.isel(quantile=1).values
    return pd.DataFrame(columns, index=pd.Index([str(u) for u in post["user"].values]))
