"""A user's posterior from a fitted population (``hbm.inference.update``), checked against exact
answers: the prior when there are no rows, and a brute-force importance sampler otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from hbm.inference.update import K_HAT_LIMIT, laplace, user_posterior
from hbm.model.population import Population

S, K = 2000, 3


def _population(rng: np.random.Generator, spread: float = 0.1) -> Population:
    return Population(
        a_loc=-2.0 + spread * rng.standard_normal(S),
        a_scale=np.full(S, 0.7),
        w_loc=0.3 + spread * rng.standard_normal((S, K)),
        w_scale=np.full((S, K), 0.5),
    )


def _cohort_user(rng: np.random.Generator, days: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(days, K)) * 0.5
    y = (rng.random(days) < special.expit(-1.5 + x @ np.array([1.0, -0.5, 0.0]))).astype(float)
    return x, y


def test_laplace_mode_has_zero_gradient():
    rng = np.random.default_rng(0)
    x, y = _cohort_user(rng, 80)
    d = np.column_stack([np.ones(80), x])
    mean, sd = np.array([-2.0, 0.3, 0.3, 0.3]), np.array([0.7, 0.5, 0.5, 0.5])
    mode, hess = laplace(d, y, mean, sd)
    grad = d.T @ (y - special.expit(d @ mode)) - (mode - mean) / sd**2
    assert np.max(np.abs(grad)) < 1e-8
    assert np.all(np.linalg.eigvalsh(hess) > 0)


def test_without_rows_the_posterior_is_the_population():
    """No days: each draw's user comes from ``Normal(m_s, d_s)`` exactly (Laplace is exact)."""
    rng = np.random.default_rng(1)
    pop = _population(rng, spread=0.3)
    res = user_posterior(pop, np.zeros((0, K)), np.zeros(0), np.random.default_rng(2))
    assert res.a.shape == (S,) and res.w.shape == (S, K)
    # the population-predictive mean and SD: E[m], sqrt(Var(m) + E[d^2])
    assert res.w.mean(0) == pytest.approx(pop.w_loc.mean(0), abs=0.05)
    sd = np.sqrt(pop.w_loc.var(0) + (pop.w_scale**2).mean(0))
    assert res.w.std(0) == pytest.approx(sd, rel=0.08)
    assert res.ess_share == pytest.approx(1.0)  # every proposal's weight is the same
    assert res.khat == 0.0 and res.ok  # importance sampling is exact: no tail to fit


def _reference(pop: Population, x: np.ndarray, y: np.ndarray, n: int = 400_000) -> np.ndarray:
    """Brute force: users drawn from the population, weighted by their likelihood."""
    rng = np.random.default_rng(99)
    s = rng.integers(S, size=n)
    a = pop.a_loc[s] + pop.a_scale[s] * rng.standard_normal(n)
    w = pop.w_loc[s] + pop.w_scale[s] * rng.standard_normal((n, K))
    eta = a[:, None] + w @ x.T
    logw = (eta * y).sum(1) - np.logaddexp(0, eta).sum(1)
    weights = special.softmax(logw)
    beta = np.column_stack([a, w])
    mean = weights @ beta
    sd = np.sqrt(weights @ (beta - mean) ** 2)
    return np.vstack([mean, sd])


@pytest.mark.parametrize("days", [20, 120])
def test_draws_match_a_brute_force_posterior(days):
    rng = np.random.default_rng(days)
    pop = _population(rng)
    x, y = _cohort_user(rng, days)
    res = user_posterior(pop, x, y, np.random.default_rng(3))
    beta = np.column_stack([res.a, res.w])
    mean, sd = _reference(pop, x, y)
    # Monte Carlo error of 2,000 draws' mean is ~0.02 SD; the reference's is smaller
    assert np.abs(beta.mean(0) - mean) / sd == pytest.approx(np.zeros(K + 1), abs=0.08)
    assert beta.std(0) / sd == pytest.approx(np.ones(K + 1), abs=0.08)
    assert res.khat < K_HAT_LIMIT and res.ok


def test_same_seed_same_draws_and_another_seed_other_draws():
    rng = np.random.default_rng(5)
    pop = _population(rng)
    x, y = _cohort_user(rng, 60)
    one = user_posterior(pop, x, y, np.random.default_rng(7))
    two = user_posterior(pop, x, y, np.random.default_rng(7))
    other = user_posterior(pop, x, y, np.random.default_rng(8))
    np.testing.assert_array_equal(one.w, two.w)
    assert not np.array_equal(one.w, other.w)


def test_each_draw_follows_its_population_draw():
    """A draw's user sits near its own population draw's mean: the pairing is kept."""
    rng = np.random.default_rng(6)
    pop = Population(
        a_loc=np.where(np.arange(S) < S // 2, -3.0, -1.0),
        a_scale=np.full(S, 0.05),
        w_loc=np.zeros((S, K)),
        w_scale=np.full((S, K), 0.05),
    )
    x, y = _cohort_user(rng, 30)
    res = user_posterior(pop, x, y, np.random.default_rng(1))
    assert np.all(np.abs(res.a[: S // 2] + 3.0) < 0.5)
    assert np.all(np.abs(res.a[S // 2 :] + 1.0) < 0.5)


def test_a_known_users_days_inside_the_fit_are_refused_whatever_their_kind():
    """Days inside a continuing attack count too: every row's date is checked."""
    import json

    import pandas as pd
    import xarray as xr

    from hbm.errors import DiaryError
    from hbm.inference.update import check_new_days

    tree = xr.DataTree()
    tree.attrs["last_days"] = json.dumps({"u1": ["2026-03-06", 0]})
    later = pd.DataFrame({"user_id": ["u1", "u2"], "date": pd.to_datetime(["2026-03-07"] * 2)})
    check_new_days(tree, later)  # after the fit's last day, and a new user: fine
    inside = pd.DataFrame({"user_id": ["u1"], "date": pd.to_datetime(["2026-01-16"])})
    with pytest.raises(DiaryError, match="user u1: the diary has 2026-01-16"):
        check_new_days(tree, inside)
