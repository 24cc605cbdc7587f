"""A user's posterior from a fitted population and the user's own rows, without a refit.

Given the population, users are independent: user ``u``'s intercept and weights ``beta = (a,
w)`` have the prior ``Normal(m_s, d_s)`` of population draw ``s`` (``m = (a0, mu)``, ``d =
(sigma_a, tau)``) and the logistic likelihood of their rows. ``user_posterior`` draws, for every
population draw ``s`` of a fit, one ``beta`` from ``p(beta | y_u, population_s)``:

1. Laplace: the mode of each draw's log posterior (a convex problem: Newton steps with the
   Hessian at a shared start, then the exact Hessian at each mode) gives ``q_s = Normal(mode_s,
   H_s^-1)``.
2. Sampling-importance-resampling: ``PROPOSALS`` draws from ``q_s``, weighted by ``p / q_s``,
   one kept in proportion to its weight. What the Laplace approximation misses (skew of a
   sparse logistic likelihood) is corrected by the weights.
3. Diagnostics: the Pareto k-hat (``arviz_stats``' PSIS) of ``p_s / q_s`` from
   ``KHAT_PROPOSALS`` proposals at each of ``KHAT_DRAWS`` population draws, each draw's ratios
   normalised by their mean and pooled; and the within-draw effective sample share. k-hat above
   ``K_HAT_LIMIT`` says the Laplace proposal misses the posterior's tail: that user needs a
   refit.

The population is the fit's, unchanged (the new user's pull on it is left out: one user among
a cohort barely moves it); every draw keeps its chain and draw position, so the result reads like
a fit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats.base import array_stats
from scipy import special
from tqdm import tqdm

from hbm.data.exposures import Design
from hbm.errors import DiaryError, FitError, RunError
from hbm.inference.provenance import stored_last_days
from hbm.inference.updated_tree import all_rows, fit_rows, updated_tree
from hbm.interrupts import check
from hbm.model.population import Population, pooling_of, population_of
from hbm.tasks import task_seed

METHOD = "laplace-sir"
#: Proposals per population draw: enough for the within-draw weights to correct the Laplace
#: approximation (their effective share is reported), few enough for about a second per user.
PROPOSALS = 4
#: The Pareto k-hat check: this many population draws, evenly spaced, each with this many
#: proposals (Pareto smoothing needs a few hundred ratios to fit a tail).
KHAT_DRAWS, KHAT_PROPOSALS = 20, 200
#: At most this many: each batch holds draws x proposals x days log-odds (100: ~160 MB a year).
MAX_PROPOSALS = 100
#: Above this Pareto k-hat the importance ratios have too heavy a tail to be trusted (Vehtari et
#: al. 2024, PSIS): the user's update is flagged and a refit is due.
K_HAT_LIMIT = 0.7
#: Population draws handled at once: keeps each batch's arrays (draws x proposals x days) small.
CHUNK = 500
#: Newton stops when no coordinate moves more than this (posterior SDs are ~0.1 or more).
_TOL = 1e-6
#: Newton steps with the shared Hessian, then exact ones (a concave problem: a few suffice).
_FIXED_STEPS, _EXACT_STEPS = 30, 30


@dataclass(frozen=True)
class UserPosterior:
    """One user's draws (one per population draw) and how well they were made.

    Attributes
    ----------
    a, w
        ``(S,)`` intercepts and ``(S, K)`` weights, in the population's draw order.
    khat
        Pareto k-hat of the importance ratios (below ``K_HAT_LIMIT``: trustworthy).
    ess_share
        Mean over draws of the within-draw effective sample size over ``proposals``.
    newton_steps
        Most Newton steps a draw's mode took.
    seconds
        Wall time of the computation.
    """

    a: np.ndarray
    w: np.ndarray
    khat: float
    ess_share: float
    newton_steps: int
    seconds: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.khat) and self.khat <= K_HAT_LIMIT)


def laplace(
    x: np.ndarray,
    y: np.ndarray,
    mean: np.ndarray,
    sd: np.ndarray,
    iters: int = 50,
    tol: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray]:
    """Mode and Hessian of the posterior of ``logit p = x @ beta``, ``beta ~ Normal(mean, sd)``.

    Newton's method (the log posterior is concave).
    """
    beta = mean.astype(float)
    prec = 1.0 / sd**2
    for _ in range(iters):
        p = special.expit(x @ beta)
        grad = x.T @ (y - p) - prec * (beta - mean)
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(prec)
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            break
    p = special.expit(x @ beta)
    return beta, (x * (p * (1 - p))[:, None]).T @ x + np.diag(prec)


def _log_target(
    beta: np.ndarray, d: np.ndarray, y: np.ndarray, m: np.ndarray, prec: np.ndarray
) -> np.ndarray:
    """Unnormalised log posterior of ``beta (..., P)`` for prior ``(m, prec)`` broadcast alike."""
    eta = beta @ d.T
    loglik = (eta * y).sum(-1) - np.logaddexp(0.0, eta).sum(-1)
    return loglik - 0.5 * (((beta - m) ** 2) * prec).sum(-1) + 0.5 * np.log(prec).sum(-1)


def _hessians(d: np.ndarray, beta: np.ndarray, prec: np.ndarray) -> np.ndarray:
    """The negative log posterior's Hessian at each draw's ``beta``: ``d' W d + diag(prec)``."""
    p = special.expit(beta @ d.T)
    hess = np.matmul(d.T[None] * (p * (1 - p))[:, None, :], d)
    idx = np.arange(d.shape[1])
    hess[:, idx, idx] += prec
    return hess


def _modes(
    d: np.ndarray,
    y: np.ndarray,
    m: np.ndarray,
    prec: np.ndarray,
    start: np.ndarray,
    base: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Each draw's mode: Newton steps with the fixed Hessian ``base + diag(prec_s)`` (cheap, and
    enough near the shared start), then exact Newton steps if those have not converged."""
    hess = np.broadcast_to(base, (m.shape[0], *base.shape)).copy()
    idx = np.arange(base.shape[0])
    hess[:, idx, idx] += prec
    inverse = np.linalg.inv(hess)  # the same every step: invert once
    beta = np.broadcast_to(start, m.shape).copy()
    for step_no in range(1, _FIXED_STEPS + _EXACT_STEPS + 1):
        grad = (y - special.expit(beta @ d.T)) @ d - (beta - m) * prec
        if step_no > _FIXED_STEPS:
            step = np.linalg.solve(_hessians(d, beta, prec), grad[..., None])[..., 0]
        else:
            step = np.einsum("spq,sq->sp", inverse, grad)
        beta += step
        if np.max(np.abs(step)) < _TOL:
            break
    if not np.isfinite(beta).all() or np.max(np.abs(step)) >= _TOL:
        largest = float(np.max(np.abs(step)))
        raise FitError(
            f"Newton's method found no posterior mode in {step_no} steps (last step {largest:.2g})"
        )
    return beta, step_no


def _proposals(
    d: np.ndarray,
    y: np.ndarray,
    m: np.ndarray,
    prec: np.ndarray,
    start: np.ndarray,
    base: np.ndarray,
    rng: np.random.Generator,
    proposals: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Laplace proposals ``(S, proposals, P)`` of each draw and their log ratios ``p / q_s``,
    centred at the mode's (the Laplace estimate of log Z_s: ~0 where Laplace is exact)."""
    mode, steps = _modes(d, y, m, prec, start, base)
    chol = np.linalg.cholesky(np.linalg.inv(_hessians(d, mode, prec)))  # covariance = L L'
    z = rng.standard_normal((m.shape[0], proposals, d.shape[1]))
    beta = mode[:, None, :] + np.einsum("spq,skq->skp", chol, z)
    log_det: np.ndarray = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(-1)
    log_q = -0.5 * (z**2).sum(-1) - log_det[:, None]
    ratio = _log_target(beta, d, y, m[:, None], prec[:, None]) - log_q
    ratio -= (_log_target(mode, d, y, m, prec) + log_det)[:, None]
    return beta, ratio, steps


def _chunk(
    d: np.ndarray,
    y: np.ndarray,
    m: np.ndarray,
    prec: np.ndarray,
    start: np.ndarray,
    base: np.ndarray,
    rng: np.random.Generator,
    proposals: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One draw kept per population draw (importance resampling), and the within-draw ESS."""
    beta, ratio, steps = _proposals(d, y, m, prec, start, base, rng, proposals)
    weights = special.softmax(ratio, axis=1)
    ess = 1.0 / (weights**2).sum(1)
    uniform = rng.random((m.shape[0], 1))
    pick = np.minimum((uniform > np.cumsum(weights, axis=1)).sum(1), proposals - 1)
    return beta[np.arange(m.shape[0]), pick], ess, steps


def _khat(
    d: np.ndarray,
    y: np.ndarray,
    m: np.ndarray,
    prec: np.ndarray,
    start: np.ndarray,
    base: np.ndarray,
    rng: np.random.Generator,
) -> float:
    """Pareto k-hat of ``p_s / q_s`` over ``KHAT_DRAWS`` population draws with
    ``KHAT_PROPOSALS`` proposals each: how far the Laplace proposal is from each posterior.

    Each draw's ratios are divided by their mean (its normaliser ``Z_s``), then pooled: a stable
    estimate of the tail that a single draw's few hundred ratios would give noisily.
    """
    pick = np.unique(np.linspace(0, m.shape[0] - 1, KHAT_DRAWS).astype(int))
    _, ratio, _ = _proposals(d, y, m[pick], prec[pick], start, base, rng, KHAT_PROPOSALS)
    ratio = ratio - special.logsumexp(ratio, axis=1, keepdims=True)
    if np.ptp(ratio) < 1e-9:  # no rows: the proposal is the posterior, no tail to fit
        return 0.0
    # psislw takes log-likelihood-like values: the log ratios negated (as LOO passes them)
    return float(array_stats.psislw(-ratio.ravel())[1])


def user_posterior(
    pop: Population,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    proposals: int = PROPOSALS,
) -> UserPosterior:
    """One user's posterior draws given each population draw (module docstring).

    Parameters
    ----------
    pop
        The fitted population, one entry per posterior draw (``population_of``).
    x
        The user's centred exposures ``(days, K)``, in the fit's centring.
    y
        The user's outcomes ``(days,)``, 0/1.
    rng
        Random numbers of the proposals and the resampling.
    proposals
        Laplace proposals per population draw.
    """
    t0 = time.perf_counter()
    d = np.column_stack([np.ones(len(y)), np.asarray(x, dtype=float)])
    y = np.asarray(y, dtype=float)
    m = np.column_stack([pop.a_loc, pop.w_loc])
    prec = 1.0 / np.column_stack([pop.a_scale, pop.w_scale]) ** 2
    # a shared start and Hessian: the mode under the population-predictive prior of a user
    pooled_sd = np.sqrt(m.var(0) + (1.0 / prec).mean(0))
    start, _ = laplace(d, y, m.mean(0), pooled_sd)
    p0 = special.expit(d @ start)
    base = (d * (p0 * (1 - p0))[:, None]).T @ d
    parts = [
        _chunk(d, y, m[i : i + CHUNK], prec[i : i + CHUNK], start, base, rng, proposals)
        for i in range(0, m.shape[0], CHUNK)
    ]
    beta = np.concatenate([p[0] for p in parts])
    return UserPosterior(
        a=beta[:, 0],
        w=beta[:, 1:],
        khat=_khat(d, y, m, prec, start, base, rng),
        ess_share=float(np.concatenate([p[1] for p in parts]).mean() / proposals),
        newton_steps=max(p[2] for p in parts),
        seconds=time.perf_counter() - t0,
    )


@dataclass(frozen=True)
class Updated:
    """A fit with some users' posteriors updated (``update_fit``).

    Attributes
    ----------
    tree
        The fit's tree: the population's draws as they were, the updated users' ``a`` and ``w``
        in place of theirs (new users appended to ``user``), their rows added to
        ``constant_data`` and ``observed_data``.
    design
        Every row of ``tree`` (the fit's rows, then the new ones) as a design; the fit's rows
        have no dates (a fit does not store them).
    users
        One row per updated user: ``user_id, known_user, days_before, days_added, days_total,
        method, proposals, khat, ess_share, newton_steps, seconds, ok``.
    """

    tree: xr.DataTree
    design: Design
    users: pd.DataFrame


def check_new_days(tree: xr.DataTree, days: pd.DataFrame) -> None:
    """A known user's new days (``user_id``, ``date`` rows, days inside an attack included) must
    come after the fit's last day for that user."""
    last = stored_last_days(tree.attrs)
    if not len(days):
        return
    first = days.groupby("user_id", sort=False)["date"].min()
    for user, day in first.items():
        if str(user) in last and pd.Timestamp(day) <= pd.Timestamp(last[str(user)][0]):
            raise DiaryError(
                f"user {user}: the diary has {pd.Timestamp(day).date()}, on or before the fitted "
                f"diary's last day for this user ({last[str(user)][0]}); hbm update adds the "
                "days after a fit's last day"
            )


def update_fit(
    tree: xr.DataTree,
    design: Design,
    seed: int = 0,
    proposals: int = PROPOSALS,
    progressbar: bool = False,
) -> Updated:
    """Update every user of ``design`` from the fit ``tree``'s population (module docstring).

    Parameters
    ----------
    tree
        A partial-pooling fit with its ``constant_data`` and ``observed_data`` (``load_fit``).
    design
        The new days, built with the fit's priors and centring. A known user's posterior uses
        the fit's rows and these; a new user's these alone.
    seed
        User ``u``'s random numbers come from ``task_seed(seed, "update", u)``: the same draws
        whoever else is in the diary.
    proposals
        Laplace proposals per population draw.
    progressbar
        A tqdm bar over users.
    """
    post = tree["posterior"].to_dataset()
    if pooling_of(post) != "partial":
        raise RunError(
            "hbm update needs a partial-pooling fit: only it has a population to draw from"
        )
    if tuple(str(f) for f in post["feature"].values) != tuple(design.features):
        raise RunError("the diary's features differ from the fit's: build it with the fit's priors")
    users_of_rows = np.asarray(design.users, dtype=object)[design.user_index]
    check_new_days(tree, pd.DataFrame({"user_id": users_of_rows, "date": design.dates}))
    pop = population_of(post)
    old_users = [str(u) for u in post["user"].values]
    x_old, ui_old, y_old = fit_rows(tree)
    a = stack_users(post["a"])
    w = stack_users(post["w"])
    new_users = [u for u in design.users if u not in old_users]
    users = old_users + new_users
    a = np.concatenate([a, np.full((a.shape[0], len(new_users)), np.nan)], axis=1)
    w = np.concatenate([w, np.full((w.shape[0], len(new_users), w.shape[2]), np.nan)], axis=1)
    rows = []
    for ui, user in enumerate(tqdm(design.users, disable=not progressbar, desc="users")):
        check()
        new = design.user_index == ui
        pos = users.index(user)
        old = ui_old == pos if pos < len(old_users) else np.zeros(len(ui_old), bool)
        x = np.concatenate([x_old[old], design.x[new]])
        y = np.concatenate([y_old[old], design.y[new]])
        rng = np.random.default_rng(task_seed(seed, "update", user))
        try:
            res = user_posterior(pop, x, y, rng, proposals)
        except FitError as exc:
            raise FitError(f"user {user}: {exc}; refit the cohort with this user") from None
        a[:, pos], w[:, pos] = res.a, res.w
        rows.append(_user_row(user, pos < len(old_users), int(old.sum()), int(new.sum()), res))
    table = pd.DataFrame(rows)
    table.attrs["proposals"] = proposals
    return Updated(updated_tree(tree, design, users, a, w), all_rows(tree, design, users), table)


def stack_users(arr: xr.DataArray) -> np.ndarray:
    """``(chain, draw, user[, feature])`` as ``(S, user[, feature])``, chain-major."""
    values = np.asarray(arr.transpose("chain", "draw", "user", ...).values, dtype=float)
    return values.reshape(-1, *values.shape[2:])


def _user_row(
    user: str, known: bool, before: int, added: int, res: UserPosterior
) -> dict[str, Any]:
    return {
        "user_id": user,
        "known_user": known,
        "days_before": before,
        "days_added": added,
        "days_total": before + added,
        "method": METHOD,
        "khat": res.khat,
        "ess_share": res.ess_share,
        "newton_steps": res.newton_steps,
        "seconds": res.seconds,
        "ok": res.ok,
    }
