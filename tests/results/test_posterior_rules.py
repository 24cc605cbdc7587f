"""The posterior tables against answers known by hand, from tiny hand-made posteriors (no NUTS).

Every posterior here is an ``xarray.DataTree`` whose draws are chosen so that the answer is known:
20 draws (2 chains x 10) per cell, the interval bounds repeated three times at each end, so that
both the 90% equal-tailed interval (``numpy.quantile``) and the 90% shortest interval are exactly
the bounds. Expected numbers come from the literal draws (numpy) or from hand arithmetic, never
from ``hbm.results.tables`` itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import special

from hbm.data.exposures import Design, ExposureMeans
from hbm.errors import HBMError
from hbm.inference.diagnostics import Diagnostics
from hbm.inference.fitting import FitResult, SamplerConfig
from hbm.model.build import Centring
from hbm.model.population import NO_POOLING_SD
from hbm.results.tables import (
    CLASSES,
    build_exports,
    classify,
    cold_start_profile,
    cold_start_weights,
    confidence,
    new_user_confidence,
    population_table,
    profile_records,
    users_table,
    weights_table,
)

N_DRAWS = 20  # 2 chains x 10 draws
CHAINS, DRAWS = 2, 10
COORDS = {"chain": np.arange(CHAINS), "draw": np.arange(DRAWS)}


def cell(lb: float, ub: float, interior: list[float] | None = None) -> np.ndarray:
    """20 draws: ``lb`` x3, 14 values strictly inside (skewed, so mean != median), ``ub`` x3.

    For ci_prob 0.9 both the equal-tailed interval (quantile positions 0.95 and 18.05 of 0..19)
    and the shortest interval holding 18 or 19 draws are exactly ``[lb, ub]``.
    """
    if interior is None:
        k = np.arange(1, 15) / 15
        interior = list(lb + (ub - lb) * k**2)
    assert len(interior) == 14 and all(lb < v < ub for v in interior)
    return np.array([lb] * 3 + list(interior) + [ub] * 3, dtype=float)


def chains(draws: np.ndarray) -> np.ndarray:
    """(20, ...) -> (chain, draw, ...)."""
    return draws.reshape(CHAINS, DRAWS, *draws.shape[1:])


def tree(**variables: xr.DataArray) -> xr.DataTree:
    return xr.DataTree.from_dict({"posterior": xr.Dataset(variables)})


def by_feature(draws: dict[str, np.ndarray]) -> xr.DataArray:
    """{feature: 20 draws} -> DataArray (chain, draw, feature)."""
    keys = list(draws)
    values = np.stack([draws[k] for k in keys], axis=-1)
    return xr.DataArray(
        chains(values), dims=("chain", "draw", "feature"), coords={**COORDS, "feature": keys}
    )


def by_user_feature(draws: dict[tuple[str, str], np.ndarray], users, features) -> xr.DataArray:
    """{(user, feature): 20 draws} -> DataArray (chain, draw, user, feature)."""
    values = np.stack([np.stack([draws[u, f] for f in features], -1) for u in users], -2)
    return xr.DataArray(
        chains(values),
        dims=("chain", "draw", "user", "feature"),
        coords={**COORDS, "user": list(users), "feature": list(features)},
    )


def eti(v: np.ndarray, prob: float = 0.9) -> tuple[float, float]:
    lo, hi = np.quantile(v, [(1 - prob) / 2, (1 + prob) / 2])
    return float(lo), float(hi)


# ---------------------------------------------------------------- classes against the ROPE

#: (user, feature) -> (lb, ub, class) with the default ROPE 0.2. Comments: what a wrong rule says.
CLASS_CASES = {
    ("u1", "screen_hours"): (0.21, 0.5, "trigger"),
    ("u1", "chocolate"): (0.2, 0.5, "uncertain"),  # lb >= rope: trigger; `|`: no association
    ("u1", "pressure_drop"): (-0.2, 0.2, "no association"),  # strict < or >: uncertain
    ("u2", "screen_hours"): (-0.1, 0.5, "uncertain"),  # `|`: no association
    ("u2", "chocolate"): (-0.5, -0.21, "protector"),
    ("u2", "pressure_drop"): (-0.5, -0.2, "uncertain"),  # ub <= -rope: protector
    ("u3", "screen_hours"): (0.15, 0.5, "uncertain"),  # ROPE 0.1: trigger
    ("u3", "chocolate"): (-0.15, 0.15, "no association"),  # ROPE 0.1: uncertain
    ("u3", "pressure_drop"): (-0.5, -0.15, "uncertain"),  # ROPE 0.1: protector
}
CLASS_USERS = ("u1", "u2", "u3")
#: Draws inside [-0.2, 0.2] with two exact zeros: P(w > 0) = 10/20 (>= would say 12/20) and
#: three exact 0.2s at the top: P(w > 0.2) = 0 (>= would say 3/20).
ZERO_INTERIOR = [
    -0.19,
    -0.15,
    -0.1,
    -0.05,
    -0.02,
    0.0,
    0.0,
    0.01,
    0.03,
    0.05,
    0.08,
    0.12,
    0.17,
    0.19,
]


def class_draws() -> dict[tuple[str, str], np.ndarray]:
    out = {}
    for key, (lb, ub, _) in CLASS_CASES.items():
        out[key] = cell(lb, ub, ZERO_INTERIOR if (lb, ub) == (-0.2, 0.2) else None)
    return out


def class_tree(priors) -> xr.DataTree:
    # the tree's features in the reverse of the priors' order: the table must follow the priors
    w = by_user_feature(class_draws(), CLASS_USERS, list(reversed(priors.keys)))
    return tree(w=w)


def classes_of(table: pd.DataFrame) -> dict[tuple[str, str], str]:
    return table.set_index(["user_id", "feature"])["class"].to_dict()


def test_classify_every_rope_edge_with_the_default_rope():
    lbs, ubs, expected = zip(*CLASS_CASES.values(), strict=True)
    assert list(classify(np.array(lbs), np.array(ubs))) == list(expected)


def test_classify_with_an_explicit_rope():
    lb = np.array([0.11, 0.1, -0.1, -0.3, -0.3, 0.15])
    ub = np.array([0.3, 0.3, 0.1, -0.11, -0.1, 0.5])
    out = classify(lb, ub, rope=0.1)
    assert list(out) == [
        "trigger",
        "uncertain",
        "no association",
        "protector",
        "uncertain",
        "trigger",
    ]


def test_classes_are_the_four_named_ones():
    lbs, ubs, _ = zip(*CLASS_CASES.values(), strict=True)
    assert set(classify(np.array(lbs), np.array(ubs))) == set(CLASSES)
    assert set(CLASSES) == {"trigger", "protector", "no association", "uncertain"}


@pytest.mark.parametrize("ci_kind", ["eti", "hdi"])
def test_weights_table_classes_at_every_rope_edge(small_priors, ci_kind):
    """Catches ``&`` -> ``|`` in classify and a ROPE default of 0.1 instead of 0.2."""
    table = weights_table(class_tree(small_priors), small_priors, ci_kind=ci_kind)
    assert list(table["user_id"]) == [u for u in CLASS_USERS for _ in small_priors.keys]
    assert list(table["feature"]) == list(small_priors.keys) * 3
    assert classes_of(table) == {key: c for key, (_, _, c) in CLASS_CASES.items()}
    assert (table["rope"] == 0.2).all()


@pytest.mark.parametrize("ci_kind", ["eti", "hdi"])
def test_weights_table_numbers_from_the_draws(small_priors, ci_kind):
    draws = class_draws()
    table = weights_table(class_tree(small_priors), small_priors, 0.9, ci_kind).set_index(
        ["user_id", "feature"]
    )
    assert list(table.columns) == [
        "name",
        "group",
        "category",
        "role",
        "mean",
        "sd",
        "median",
        "ci_lb",
        "ci_ub",
        "ci_prob",
        "ci_kind",
        "odds_ratio",
        "odds_ratio_lb",
        "odds_ratio_ub",
        "p_positive",
        "p_above_rope",
        "p_below_rope",
        "rope",
        "interval_class",
        "p_call",
        "class",
        "fdr_level",
    ]
    for (user, key), (lb, ub, _) in CLASS_CASES.items():
        v, row, f = draws[user, key], table.loc[(user, key)], small_priors.feature(key)
        assert (row["name"], row["group"], row["category"]) == (f.name, f.group, f.category)
        assert eti(v) == (lb, ub)  # the construction: both kinds give exactly the bounds
        assert row["ci_lb"] == pytest.approx(lb, abs=1e-12)
        assert row["ci_ub"] == pytest.approx(ub, abs=1e-12)
        assert row["mean"] == pytest.approx(v.mean(), abs=1e-12)
        assert row["sd"] == pytest.approx(v.std(ddof=1), abs=1e-12)
        assert row["median"] == pytest.approx(np.median(v), abs=1e-12)
        assert row["median"] != pytest.approx(row["mean"], abs=1e-6)  # skewed on purpose
        assert row["odds_ratio"] == pytest.approx(np.exp(np.median(v)), rel=1e-12)
        assert row["odds_ratio_lb"] == pytest.approx(np.exp(lb), rel=1e-12)
        assert row["odds_ratio_ub"] == pytest.approx(np.exp(ub), rel=1e-12)
        assert row["p_positive"] == pytest.approx(np.mean(v > 0), abs=1e-12)
        assert row["p_above_rope"] == pytest.approx(np.mean(v > 0.2), abs=1e-12)
        assert row["p_below_rope"] == pytest.approx(np.mean(v < -0.2), abs=1e-12)
        assert row["p_call"] == pytest.approx(max(np.mean(v > 0.2), np.mean(v < -0.2)), abs=1e-12)
        assert row["role"] == "trigger" and row["fdr_level"] == 0.02
        assert (row["ci_prob"], row["ci_kind"]) == (0.9, ci_kind)
    zero = table.loc[("u1", "pressure_drop")]
    assert (zero["p_positive"], zero["p_above_rope"]) == (0.5, 0.0)  # by hand: 10/20, 0/20
    assert table.loc[("u1", "screen_hours"), "p_above_rope"] == 1.0  # all draws >= 0.21


def test_weights_table_explicit_rope_and_ci_prob(small_priors):
    draws = class_draws()
    table = weights_table(class_tree(small_priors), small_priors, 0.8, "eti", rope=0.1)
    table = table.set_index(["user_id", "feature"])
    assert (table["ci_prob"] == 0.8).all() and (table["rope"] == 0.1).all()
    for key, v in draws.items():
        lb, ub = eti(v, 0.8)
        assert table.loc[key, "ci_lb"] == pytest.approx(lb, abs=1e-12)
        assert table.loc[key, "ci_ub"] == pytest.approx(ub, abs=1e-12)
        assert table.loc[key, "p_above_rope"] == pytest.approx(np.mean(v > 0.1), abs=1e-12)
    # rope 0.1 moves the three ROPE-0.1 cases (their 80% intervals are still the bounds)
    assert table.loc[("u3", "screen_hours"), "class"] == "trigger"
    assert table.loc[("u3", "chocolate"), "class"] == "uncertain"
    assert table.loc[("u3", "pressure_drop"), "class"] == "protector"


def test_hdi_is_the_shortest_interval_not_the_equal_tailed_one(small_priors):
    # 19 draws in [0, 1] (0 x3, 1 x2) and one far outlier at 10: every window of 18 or 19
    # draws that avoids the outlier is [0, 1]; the equal-tailed upper bound is pulled up to
    # 1 + 0.05 * (10 - 1) = 1.45.
    skew = np.array([0.0] * 3 + [0.05 * k for k in range(1, 15)] + [1.0] * 2 + [10.0])
    assert eti(skew) == (0.0, pytest.approx(1.45))
    draws = {("u1", k): skew for k in small_priors.keys}
    dt = tree(w=by_user_feature(draws, ["u1"], small_priors.keys))
    hdi = weights_table(dt, small_priors, 0.9, "hdi")
    assert np.allclose(hdi["ci_lb"], 0.0) and np.allclose(hdi["ci_ub"], 1.0)
    assert np.allclose(hdi["odds_ratio_ub"], np.e)
    equal_tailed = weights_table(dt, small_priors, 0.9, "eti")
    assert np.allclose(equal_tailed["ci_ub"], 1.45)
    assert np.allclose(equal_tailed["odds_ratio_ub"], np.exp(1.45))


# ---------------------------------------------------------------- population


def population_tree(priors) -> tuple[xr.DataTree, dict, dict]:
    keys = list(priors.keys)
    mu = {
        keys[0]: cell(
            -0.3,
            0.4,
            [-0.2, -0.1, 0.0, 0.0, 0.0, 0.05, 0.1, 0.1, 0.2, 0.2, 0.3] * 1 + [0.31, 0.32, 0.33],
        ),
        keys[1]: cell(0.1, 0.9),
        keys[2]: cell(-0.8, -0.1),
    }
    tau = {
        keys[0]: cell(
            0.1, 0.6, [0.2, 0.3, 0.3, 0.3, 0.31, 0.32, 0.4, 0.4, 0.4, 0.45, 0.5, 0.5, 0.55, 0.59]
        ),
        keys[1]: cell(0.05, 0.3, list(np.linspace(0.06, 0.29, 14))),
        keys[2]: cell(0.3, 1.0),
    }
    # the tree's features in reverse order: the table follows the priors
    rev = list(reversed(keys))
    dt = tree(
        mu=by_feature({k: mu[k] for k in rev}),
        tau=by_feature({k: tau[k] for k in rev}),
    )
    return dt, mu, tau


PRIOR_COLUMNS = [
    "feature",
    "name",
    "group",
    "category",
    "role",
    "prior_mean",
    "prior_sd",
    "prior_between_user_sd",
    "premonitory_confound",
]


def summary_columns(var: str) -> list[str]:
    cols = ("mean", "sd", "ci_lb", "ci_ub", "ess_bulk", "ess_tail", "r_hat")
    return [f"{var}_{c}" for c in cols]


@pytest.mark.parametrize("ci_kind", ["eti", "hdi"])
def test_population_table_from_known_draws(small_priors, ci_kind):
    import arviz as az

    dt, mu, tau = population_tree(small_priors)
    table = population_table(dt, small_priors, 0.9, ci_kind)
    assert list(table.columns) == [
        *PRIOR_COLUMNS,
        *summary_columns("mu"),
        *summary_columns("tau"),
        "mu_odds_ratio",
        "p_mu_positive",
        "p_tau_above_0.3",
        "ci_prob",
        "ci_kind",
    ]
    assert list(table["feature"]) == list(small_priors.keys)
    ess_bulk = az.ess(dt, var_names=["mu", "tau"], method="bulk")
    ess_tail = az.ess(dt, var_names=["mu", "tau"], method="tail")
    rhat = az.rhat(dt, var_names=["mu", "tau"])
    for i, f in enumerate(small_priors.features):
        row = table.iloc[i]
        assert (row["name"], row["group"], row["category"]) == (f.name, f.group, f.category)
        assert row["prior_mean"] == f.prior.mean and row["prior_sd"] == f.prior.sd
        assert row["prior_between_user_sd"] == f.prior.between_user_sd
        assert row["premonitory_confound"] == f.premonitory_confound
        for var, draws in (("mu", mu[f.key]), ("tau", tau[f.key])):
            assert row[f"{var}_mean"] == pytest.approx(draws.mean(), abs=1e-12)
            assert row[f"{var}_sd"] == pytest.approx(draws.std(ddof=1), abs=1e-12)
            assert row[f"{var}_ci_lb"] == pytest.approx(draws[0], abs=1e-12)  # lb x3
            assert row[f"{var}_ci_ub"] == pytest.approx(draws[-1], abs=1e-12)  # ub x3
            assert row[f"{var}_ess_bulk"] == pytest.approx(float(ess_bulk[var].sel(feature=f.key)))
            assert row[f"{var}_ess_tail"] == pytest.approx(float(ess_tail[var].sel(feature=f.key)))
            assert row[f"{var}_r_hat"] == pytest.approx(float(rhat[var].sel(feature=f.key)))
        assert row["mu_odds_ratio"] == pytest.approx(np.exp(np.median(mu[f.key])), rel=1e-12)
        assert row["p_mu_positive"] == pytest.approx(np.mean(mu[f.key] > 0), abs=1e-12)
        assert row["p_tau_above_0.3"] == pytest.approx(np.mean(tau[f.key] > 0.3), abs=1e-12)
    assert (table["ci_prob"] == 0.9).all() and (table["ci_kind"] == ci_kind).all()
    # by hand, first feature: mu has three exact zeros and 12 draws > 0 (9 inside, 0.4 x3);
    # tau has three 0.3s and 13 draws above 0.3; second feature: tau <= 0.3 everywhere
    first = table.iloc[0]
    assert first["p_mu_positive"] == pytest.approx(12 / 20)
    assert first["p_tau_above_0.3"] == pytest.approx(13 / 20)
    assert table.iloc[1]["p_tau_above_0.3"] == 0.0
    assert table.iloc[1]["p_mu_positive"] == 1.0


def test_population_table_defaults_and_missing_variables(small_priors):
    dt, mu, _ = population_tree(small_priors)
    table = population_table(dt, small_priors)
    assert (table["ci_prob"] == 0.9).all() and (table["ci_kind"] == "eti").all()
    # complete pooling: no tau
    no_tau = tree(mu=dt["posterior"]["mu"])
    table = population_table(no_tau, small_priors, 0.8)
    assert list(table.columns) == [
        *PRIOR_COLUMNS,
        *summary_columns("mu"),
        "mu_odds_ratio",
        "p_mu_positive",
        "ci_prob",
        "ci_kind",
    ]
    for i, key in enumerate(small_priors.keys):
        lb, ub = eti(mu[key], 0.8)
        assert table["mu_ci_lb"].iloc[i] == pytest.approx(lb, abs=1e-12)
        assert table["mu_ci_ub"].iloc[i] == pytest.approx(ub, abs=1e-12)
    # no pooling: neither mu nor tau
    nothing = tree(w=class_tree(small_priors)["posterior"]["w"])
    table = population_table(nothing, small_priors, 0.8, "hdi")
    assert list(table.columns) == [*PRIOR_COLUMNS, "ci_prob", "ci_kind"]
    assert (table["ci_prob"] == 0.8).all() and (table["ci_kind"] == "hdi").all()


# ---------------------------------------------------------------- confidence

#: Per user: the half-spread d of w's draws per feature (draws alternate m - d, m + d, so the
#: variance over draws is d^2) and the confidence by hand with tau draws alternating 1 and 2:
#: E[tau^2] = (1 + 4) / 2 = 2.5 (E[tau]^2 = 2.25, E[tau] = 1.5).
#: u1: 1 - (1/2.5 + 0.25/2.5)/2 = 0.75   (SD ratio: 1 - (1 + 0.5)/sqrt(2.5)/2 = 0.5257;
#:                                        E[tau]^2: 1 - (1/2.25 + 0.25/2.25)/2 = 0.7222)
#: u2: 1 - (4/2.5 + 4/2.5)/2 = -0.6 -> clipped to 0
#: u3: no spread at all -> 1
#: u4: 1 - (0.25/2.5 + 0.25/2.5)/2 = 0.9  (SD ratio: 0.6838; E[tau]^2: 0.8889)
SPREADS = {"u1": (1.0, 0.5), "u2": (2.0, 2.0), "u3": (0.0, 0.0), "u4": (0.5, 0.5)}
CONF_PARTIAL = {"u1": 0.75, "u2": 0.0, "u3": 1.0, "u4": 0.9}
#: Without tau (no pooling) the reference variance is NO_POOLING_SD^2 = 1:
#: u1: 1 - (1 + 0.25)/2 = 0.375; u2: 1 - 4 -> 0; u3: 1; u4: 1 - 0.25 = 0.75
CONF_NONE = {"u1": 0.375, "u2": 0.0, "u3": 1.0, "u4": 0.75}
SIGNS = np.tile([-1.0, 1.0], N_DRAWS // 2)


def spread_w(users=tuple(SPREADS)) -> xr.DataArray:
    draws = {}
    for i, u in enumerate(users):
        for k, f in enumerate(("f1", "f2")):
            draws[u, f] = 0.3 * i - 0.2 * k + SPREADS[u][k] * SIGNS
    return by_user_feature(draws, users, ("f1", "f2"))


def tau_12() -> xr.DataArray:
    return by_feature({"f1": np.tile([1.0, 2.0], 10), "f2": np.tile([2.0, 1.0], 10)})


def test_the_spread_construction():
    w = spread_w()
    var = w.values.reshape(N_DRAWS, len(SPREADS), 2).var(axis=0)
    np.testing.assert_allclose(var, [[d * d for d in SPREADS[u]] for u in SPREADS], atol=1e-15)
    t = tau_12().values.reshape(N_DRAWS, 2)
    np.testing.assert_allclose((t**2).mean(0), [2.5, 2.5])
    np.testing.assert_allclose(t.mean(0) ** 2, [2.25, 2.25])


def test_confidence_is_one_minus_the_variance_ratio_by_hand():
    """Catches a variance ratio turned into an SD ratio and E[tau^2] turned into E[tau]^2."""
    conf = confidence(tree(w=spread_w(), tau=tau_12()))
    assert conf.name == "confidence" and conf.index.name == "user_id"
    assert list(conf.index) == list(SPREADS)
    for u, expected in CONF_PARTIAL.items():
        assert conf[u] == pytest.approx(expected, abs=1e-12), u
    # the wrong formulas would say, for u1 and u4:
    assert abs(conf["u1"] - (1 - (1 + 0.5) / np.sqrt(2.5) / 2)) > 0.2  # SD ratio
    assert abs(conf["u1"] - (1 - (1 + 0.25) / 2.25 / 2)) > 0.02  # E[tau]^2


def test_confidence_without_tau_uses_the_no_pooling_sd():
    assert NO_POOLING_SD == 1.0  # the hand numbers below assume it
    conf = confidence(tree(w=spread_w()), pooling="none")
    for u, expected in CONF_NONE.items():
        assert conf[u] == pytest.approx(expected, abs=1e-12), u


def test_confidence_is_zero_under_complete_pooling_and_without_weights():
    # complete pooling: every user's w is mu itself (spread 0.5 -> 0.75 if it were computed)
    mu = by_feature({"f1": 0.5 * SIGNS, "f2": 0.1 + 0.5 * SIGNS})
    w = mu.expand_dims(user=["a", "b"], axis=2).transpose("chain", "draw", "user", "feature")
    conf = confidence(tree(w=w, mu=mu), pooling="complete")
    assert list(conf.index) == ["a", "b"] and conf.name == "confidence"
    assert conf.index.name == "user_id"
    assert (conf == 0.0).all()
    # the same tree read as partial pooling (no tau) is not 0: the pooling argument decides
    assert confidence(tree(w=w, mu=mu)).to_list() == pytest.approx([0.75, 0.75])
    # no weights at all
    a = xr.DataArray(
        chains(np.zeros((N_DRAWS, 2))),
        dims=("chain", "draw", "user"),
        coords={**COORDS, "user": ["a", "b"]},
    )
    conf = confidence(tree(a=a, mu=mu))
    assert list(conf.index) == ["a", "b"] and (conf == 0.0).all()
    assert conf.name == "confidence" and conf.index.name == "user_id"


def test_confidence_user_ids_are_strings():
    w = spread_w().assign_coords(user=[11, 12, 13, 14])
    conf = confidence(tree(w=w, tau=tau_12()))
    assert list(conf.index) == ["11", "12", "13", "14"]
    assert conf["11"] == pytest.approx(0.75)


# ---------------------------------------------------------------- cold start


def cold_tree(keys=("f1", "f2")) -> tuple[xr.DataTree, np.ndarray, np.ndarray]:
    mu = np.stack([np.linspace(0.2, 0.3, N_DRAWS), np.linspace(-0.1, 0.0, N_DRAWS)], -1)
    tau = np.stack([np.full(N_DRAWS, 0.5), np.linspace(0.2, 0.4, N_DRAWS)], -1)
    if len(keys) == 3:
        mu = np.concatenate([mu, np.full((N_DRAWS, 1), -2.0)], -1)
        tau = np.concatenate([tau, np.full((N_DRAWS, 1), 0.1)], -1)
    dt = tree(
        mu=by_feature(dict(zip(keys, mu.T, strict=True))),
        tau=by_feature(dict(zip(keys, tau.T, strict=True))),
    )
    return dt, mu, tau


def expected_cold(mu: np.ndarray, tau: np.ndarray, seed: int) -> np.ndarray:
    eps = np.random.default_rng(seed).standard_normal((CHAINS, DRAWS, mu.shape[-1]))
    return chains(mu) + chains(tau) * eps


def expected_conf(w: np.ndarray, tau: np.ndarray) -> float:
    """1 - mean_k Var(w_k) / E[tau_k^2], clipped; w (chain, draw, k), tau (draws, k)."""
    var = w.reshape(N_DRAWS, -1).var(axis=0)
    return float(np.clip(1 - np.mean(var / (tau**2).mean(axis=0)), 0, 1))


@pytest.mark.parametrize("seed", [None, 3])
def test_cold_start_weights_are_mu_plus_tau_times_noise(seed):
    dt, mu, tau = cold_tree()
    w = cold_start_weights(dt) if seed is None else cold_start_weights(dt, seed)
    assert w.dims == ("chain", "draw", "feature")
    assert list(w["feature"].values) == ["f1", "f2"]
    np.testing.assert_allclose(w.values, expected_cold(mu, tau, seed or 0), rtol=1e-12)


@pytest.mark.parametrize("seed", [None, 2])
def test_new_user_confidence_by_hand(seed):
    dt, mu, tau = cold_tree()
    got = new_user_confidence(dt) if seed is None else new_user_confidence(dt, seed)
    expected = expected_conf(expected_cold(mu, tau, seed or 0), tau)
    assert 0.0 < expected < 0.5  # not clipped: the test sees the formula
    assert got == pytest.approx(expected, abs=1e-12)
    assert isinstance(got, float)


def test_cold_start_under_complete_pooling_is_the_population_and_has_no_confidence():
    dt, mu, _ = cold_tree()
    pop = tree(mu=dt["posterior"]["mu"])
    np.testing.assert_array_equal(cold_start_weights(pop).values, chains(mu))
    # under complete pooling nobody has personal weights: a new user neither (was ~0.99,
    # 1 - Var(mu) / NO_POOLING_SD^2, while every known user's confidence is 0)
    assert new_user_confidence(pop) == 0.0


@pytest.mark.parametrize("seed", [None, 4])
def test_cold_start_profile_by_hand(small_priors, seed):
    keys = small_priors.keys  # screen_hours (environmental), chocolate (lifestyle), pressure_drop
    dt, mu, tau = cold_tree(keys)
    kwargs = {} if seed is None else {"seed": seed}
    prof = cold_start_profile(dt, small_priors, False, ("rhat",), 0.8, "eti", **kwargs)
    w = expected_cold(mu, tau, seed or 0).reshape(N_DRAWS, 3)
    means = w.mean(axis=0)
    order = sorted(range(3), key=lambda k: -means[k])
    assert prof["user_id"] == "<new user>" and prof["cold_start"] is True
    assert prof["reliable"] is False and prof["reliability_reasons"] == ["rhat"]
    assert (prof["ci_prob"], prof["ci_kind"]) == (0.8, "eti")
    assert prof["personalization_confidence"] == pytest.approx(
        expected_conf(w.reshape(CHAINS, DRAWS, 3), tau), abs=1e-12
    )
    assert prof["trigger_weights"] == pytest.approx(
        {"environmental": (means[0] + means[2]) / 2, "lifestyle": means[1]}
    )
    assert [t["feature"] for t in prof["top_triggers"]] == [keys[k] for k in order]
    for t, k in zip(prof["top_triggers"], order, strict=True):
        f = small_priors.feature(keys[k])
        lb, ub = eti(w[:, k], 0.8)
        assert (t["name"], t["category"], t["group"]) == (f.name, f.category, f.group)
        assert t["weight"] == pytest.approx(means[k], abs=1e-12)
        assert t["weight_ci"] == pytest.approx([lb, ub], abs=1e-12)
        assert t["odds_ratio"] == pytest.approx(np.exp(np.median(w[:, k])), rel=1e-12)
        assert t["odds_ratio_ci"] == pytest.approx([np.exp(lb), np.exp(ub)], rel=1e-12)
        assert t["p_positive"] == pytest.approx(np.mean(w[:, k] > 0), abs=1e-12)
    # pressure_drop: mu = -2, tau = 0.1: every draw far below -0.2
    assert prof["top_triggers"][-1]["class"] == "protector"


def test_cold_start_profile_records_its_interval_kind(small_priors):
    # mu, tau constant over draws: the 20 cold-start draws of feature k are mu_k + tau_k * eps
    keys = small_priors.keys
    mu, tau = np.array([0.5, 0.0, -0.5]), np.array([0.3, 0.2, 0.1])
    dt = tree(
        mu=by_feature({k: np.full(N_DRAWS, m) for k, m in zip(keys, mu, strict=True)}),
        tau=by_feature({k: np.full(N_DRAWS, t) for k, t in zip(keys, tau, strict=True)}),
    )
    prof = cold_start_profile(dt, small_priors, True, (), 0.9, "hdi", seed=1)
    assert (prof["ci_prob"], prof["ci_kind"]) == (0.9, "hdi")
    eps = np.random.default_rng(1).standard_normal((CHAINS, DRAWS, 3)).reshape(N_DRAWS, 3)
    for t in prof["top_triggers"]:
        k = keys.index(t["feature"])
        v = np.sort(mu[k] + tau[k] * eps[:, k])
        # the shortest window holding 18 (or, by another convention, 19) of the 20 draws
        candidates = [
            min(((v[i], v[i + n - 1]) for i in range(N_DRAWS - n + 1)), key=lambda w: w[1] - w[0])
            for n in (18, 19)
        ]
        assert any(np.allclose(t["weight_ci"], c, atol=1e-12) for c in candidates)
        assert not np.allclose(t["weight_ci"], eti(v), atol=1e-6)


def test_cold_start_profile_defaults(small_priors):
    dt, _, _ = cold_tree(small_priors.keys)
    prof = cold_start_profile(dt, small_priors, True, user_id="newcomer")
    assert prof["user_id"] == "newcomer" and prof["reliable"] is True
    assert prof["reliability_reasons"] == []
    assert (prof["ci_prob"], prof["ci_kind"]) == (0.9, "eti")


# ---------------------------------------------------------------- users


def make_design(days: dict[str, int], attacks: dict[str, int]) -> Design:
    users = tuple(days)
    user_index = np.concatenate([np.full(n, i) for i, n in enumerate(days.values())])
    y = np.concatenate([np.r_[np.ones(attacks[u]), np.zeros(days[u] - attacks[u])] for u in users])
    perm = np.random.default_rng(0).permutation(len(y))  # rows interleaved between users
    n = len(y)
    return Design(
        x=np.zeros((n, 2)),
        exposure=np.zeros((n, 2)),
        y=y[perm],
        user_index=user_index[perm],
        users=users,
        features=("f1", "f2"),
        dates=np.datetime64("2025-01-01", "ns") + np.arange(n).astype("timedelta64[D]"),
        exposure_means=ExposureMeans(("f1", "f2"), (0.0, 0.0)),
        lag_filled={},
    )


DAYS = {"u1": 29, "u2": 30, "u3": 1, "u4": 0}
ATTACKS = {"u1": 5, "u2": 3, "u3": 1, "u4": 0}
#: Base-rate probabilities per user: 0.1 x3, 14 inside, 0.3 x3 (interval [0.1, 0.3]) etc.
RATE_BOUNDS = {"u1": (0.1, 0.3), "u2": (0.05, 0.2), "u3": (0.2, 0.6), "u4": (0.01, 0.5)}


def users_tree() -> tuple[xr.DataTree, dict[str, np.ndarray]]:
    rates = {u: cell(*RATE_BOUNDS[u]) for u in DAYS}
    order = ["u4", "u3", "u2", "u1"]  # the tree's order differs from the design's
    a = xr.DataArray(
        chains(np.stack([special.logit(rates[u]) for u in order], -1)),
        dims=("chain", "draw", "user"),
        coords={**COORDS, "user": order},
    )
    return tree(a=a, w=spread_w(tuple(order)), tau=tau_12()), rates


def class_rows(classes: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(u, c) for u, cs in classes.items() for c in cs]
    return pd.DataFrame(rows, columns=["user_id", "class"])


@pytest.mark.parametrize("ci_kind", ["eti", "hdi"])
def test_users_table_by_hand(ci_kind):
    dt, rates = users_tree()
    weights = class_rows(
        {
            "u1": ["trigger", "trigger", "no association", "uncertain"],
            "u2": ["no association"],
            "u3": ["trigger", "uncertain"],
        }
    )
    table = users_table(dt, make_design(DAYS, ATTACKS), weights, "partial", 0.9, ci_kind)
    assert list(table.columns) == [
        "user_id",
        "days_logged",
        "attacks",
        "attack_rate_observed",
        "base_rate_mean",
        "base_rate_ci_lb",
        "base_rate_ci_ub",
        "ci_prob",
        "ci_kind",
        "confidence",
        "n_triggers",
        "n_protectors",
        "n_no_association",
        "n_possible_premonitory",
        "few_days",
    ]
    assert list(table["user_id"]) == ["u1", "u2", "u3", "u4"]
    assert list(table["days_logged"]) == [29, 30, 1, 0]
    assert list(table["attacks"]) == [5, 3, 1, 0]
    np.testing.assert_allclose(table["attack_rate_observed"], [5 / 29, 3 / 30, 1.0, 0.0])
    for i, u in enumerate(DAYS):
        p = special.expit(special.logit(rates[u]))
        assert eti(p) == pytest.approx(RATE_BOUNDS[u], abs=1e-12)
        assert table["base_rate_mean"].iloc[i] == pytest.approx(p.mean(), abs=1e-12)
        assert table["base_rate_ci_lb"].iloc[i] == pytest.approx(RATE_BOUNDS[u][0], abs=1e-12)
        assert table["base_rate_ci_ub"].iloc[i] == pytest.approx(RATE_BOUNDS[u][1], abs=1e-12)
    assert (table["ci_prob"] == 0.9).all() and (table["ci_kind"] == ci_kind).all()
    np.testing.assert_allclose(table["confidence"], [CONF_PARTIAL[u] for u in DAYS], atol=1e-12)
    assert list(table["n_triggers"]) == [2, 0, 1, 0]
    assert list(table["n_protectors"]) == [0, 0, 0, 0]  # no protector anywhere
    assert list(table["n_no_association"]) == [1, 1, 0, 0]
    assert list(table["few_days"]) == [True, False, True, True]  # default min_days 30
    for col in ("days_logged", "attacks", "n_triggers", "n_protectors", "n_no_association"):
        assert table[col].dtype.kind == "i", col  # counts are written as integers, not 2.0


def test_users_table_counts_each_class_and_min_days():
    dt, rates = users_tree()
    dt = tree(a=dt["posterior"]["a"], w=dt["posterior"]["w"])  # no pooling: no tau
    weights = class_rows(
        {"u2": ["protector", "protector", "trigger"], "u4": ["no association", "protector"]}
    )
    table = users_table(dt, make_design(DAYS, ATTACKS), weights, "none", 0.8, "eti", min_days=1)
    assert list(table["n_triggers"]) == [0, 1, 0, 0]
    assert list(table["n_protectors"]) == [0, 2, 0, 1]
    assert list(table["n_no_association"]) == [0, 0, 0, 1]
    assert table["n_protectors"].dtype.kind == "i"
    assert list(table["few_days"]) == [False, False, False, True]
    np.testing.assert_allclose(table["confidence"], [CONF_NONE[u] for u in DAYS], atol=1e-12)
    assert (table["ci_prob"] == 0.8).all()
    for i, u in enumerate(DAYS):
        lb, ub = eti(special.expit(special.logit(rates[u])), 0.8)
        assert table["base_rate_ci_lb"].iloc[i] == pytest.approx(lb, abs=1e-12)
        assert table["base_rate_ci_ub"].iloc[i] == pytest.approx(ub, abs=1e-12)


def test_users_table_defaults_and_complete_pooling():
    dt, _ = users_tree()
    design = make_design(DAYS, ATTACKS)
    weights = class_rows({"u1": ["uncertain"]})
    table = users_table(dt, design, weights)
    assert (table["ci_prob"] == 0.9).all() and (table["ci_kind"] == "eti").all()
    for col in ("n_triggers", "n_protectors", "n_no_association"):  # no such class anywhere
        assert list(table[col]) == [0, 0, 0, 0], col
    np.testing.assert_allclose(table["confidence"], [CONF_PARTIAL[u] for u in DAYS], atol=1e-12)
    complete = users_table(dt, design, weights, "complete")
    assert (complete["confidence"] == 0.0).all()
    # few_days boundary at min_days: 30 days is enough for min_days 30, 29 is not
    assert list(users_table(dt, design, weights, min_days=30)["few_days"]) == [
        True,
        False,
        True,
        True,
    ]
    assert list(users_table(dt, design, weights, min_days=31)["few_days"]) == [
        True,
        True,
        True,
        True,
    ]


# ---------------------------------------------------------------- profiles


def profile_weights() -> pd.DataFrame:
    """7 features per user, users in unsorted order; ties in the mean on purpose."""
    means = {
        "u2": [0.1, 0.5, 0.3, 0.5, 0.3, 0.5, 0.9],
        "u1": [-0.4, -0.1, 0.2, 0.0, 0.0, 0.0, -0.3],
    }
    rows = []
    for u, ms in means.items():
        for k, m in enumerate(ms):
            rows.append(
                {
                    "user_id": u,
                    "feature": f"f{k + 1}",
                    "name": f"Feature {k + 1}",
                    "group": "environmental" if k % 2 == 0 else "lifestyle",
                    "category": f"Cat{k % 3}",
                    "mean": m,
                    "ci_lb": m - 0.25,
                    "ci_ub": m + 0.5,
                    "ci_prob": 0.8,
                    "ci_kind": "hdi",
                    "odds_ratio": np.exp(m + 0.01),
                    "odds_ratio_lb": np.exp(m - 0.25),
                    "odds_ratio_ub": np.exp(m + 0.5),
                    "p_positive": 0.5 + m / 2,
                    "class": "trigger" if m - 0.25 > 0.2 else "uncertain",
                }
            )
    return pd.DataFrame(rows)


def test_profile_records_group_means_and_top_five(small_priors):
    assert small_priors.groups == ("environmental", "lifestyle")
    weights = profile_weights()
    users = pd.DataFrame({"user_id": ["u1", "u2"], "confidence": [0.25, 0.6]})
    out = profile_records(weights, users, small_priors, False, ("r-hat 1.05",))
    assert [p["user_id"] for p in out] == ["u2", "u1"]  # the weights' order, not sorted
    u2, u1 = out
    # u2 environmental f1, f3, f5, f7: (0.1 + 0.3 + 0.3 + 0.9) / 4; lifestyle f2, f4, f6: 0.5
    assert u2["trigger_weights"] == pytest.approx({"environmental": 0.4, "lifestyle": 0.5})
    assert list(u2["trigger_weights"]) == ["environmental", "lifestyle"]
    # top 5 by mean, ties in row order: f7 0.9, then f2 f4 f6 (0.5), then f3 (0.3, before f5)
    assert [t["feature"] for t in u2["top_triggers"]] == ["f7", "f2", "f4", "f6", "f3"]
    # u1: f3 0.2, then f4 f5 f6 (0.0), then f2 -0.1
    assert [t["feature"] for t in u1["top_triggers"]] == ["f3", "f4", "f5", "f6", "f2"]
    assert u1["trigger_weights"] == pytest.approx(
        {"environmental": (-0.4 + 0.2 + 0.0 - 0.3) / 4, "lifestyle": (-0.1 + 0.0 + 0.0) / 3}
    )
    assert u2["personalization_confidence"] == 0.6 and u1["personalization_confidence"] == 0.25
    for p in out:
        assert p["reliable"] is False and p["reliability_reasons"] == ["r-hat 1.05"]
        assert p["ci_prob"] == 0.8 and p["ci_kind"] == "hdi"
        assert set(p) == {
            "user_id",
            "trigger_weights",
            "top_triggers",
            "clustering",
            "personalization_confidence",
            "reliable",
            "reliability_reasons",
            "ci_prob",
            "ci_kind",
        }
    assert u2["top_triggers"][0] == {
        "feature": "f7",
        "name": "Feature 7",
        "category": "Cat0",
        "group": "environmental",
        "weight": 0.9,
        "weight_ci": [pytest.approx(0.65), pytest.approx(1.4)],
        "odds_ratio": pytest.approx(np.exp(0.91)),
        "odds_ratio_ci": [pytest.approx(np.exp(0.65)), pytest.approx(np.exp(1.4))],
        "p_positive": pytest.approx(0.95),
        "class": "trigger",
    }
    assert u1["top_triggers"][0]["class"] == "uncertain"


def test_profile_records_top_and_reliable(small_priors):
    weights = profile_weights()
    users = pd.DataFrame({"user_id": ["u2", "u1"], "confidence": [0.6, 0.25]})
    out = profile_records(weights, users, small_priors, True, top=2)
    assert [t["feature"] for t in out[0]["top_triggers"]] == ["f7", "f2"]
    assert out[0]["reliable"] is True and out[0]["reliability_reasons"] == []


def test_profile_records_with_a_single_feature(tmp_path):
    from hbm.data.priors import load_priors
    from tests.conftest import small_priors_doc, write_priors

    doc = small_priors_doc()
    doc["variables"] = [v for v in doc["variables"] if v["key"] == "chocolate"]
    priors = load_priors(write_priors(tmp_path, doc))
    weights = profile_weights()
    weights = weights[weights["feature"] == "f2"]  # one row per user, group lifestyle
    users = pd.DataFrame({"user_id": ["u1", "u2"], "confidence": [0.25, 0.6]})
    out = profile_records(weights, users, priors, True)
    assert [p["user_id"] for p in out] == ["u2", "u1"]
    assert out[0]["trigger_weights"] == {"lifestyle": 0.5}
    assert out[1]["trigger_weights"] == {"lifestyle": -0.1}
    assert [(p["ci_prob"], p["ci_kind"]) for p in out] == [(0.8, "hdi")] * 2
    assert [[t["feature"] for t in p["top_triggers"]] for p in out] == [["f2"], ["f2"]]


# ---------------------------------------------------------------- build_exports


#: tau draws of the hand-made fit (not two-valued: R-hat of a two-valued variable is 0/0)
FIT_TAU = np.linspace(1.0, 2.0, N_DRAWS)[::-1]


def fit_result(priors, pooling: str = "partial", reliable: bool = False) -> FitResult:
    keys = priors.keys
    w = class_tree(priors)["posterior"]["w"]
    mu = by_feature({k: cell(-0.1 * i, 0.3 + 0.1 * i) for i, k in enumerate(keys)})
    tau = by_feature({k: FIT_TAU + 0.1 * i for i, k in enumerate(keys)})
    a = xr.DataArray(
        chains(np.stack([special.logit(cell(0.1, 0.3))] * 3, -1)),
        dims=("chain", "draw", "user"),
        coords={**COORDS, "user": list(CLASS_USERS)},
    )
    variables = {"w": w, "mu": mu, "a": a} | ({"tau": tau} if pooling == "partial" else {})
    diag = Diagnostics(
        reliable=reliable,
        reasons=() if reliable else ("max R-hat 1.2 > 1.01",),
        max_rhat=1.2,
        min_ess_bulk=10.0,
        min_ess_tail=12.0,
        divergences=0,
        ebfmi=(1.0, 1.0),
    )
    return FitResult(
        tree=tree(**variables),
        design=make_design({"u1": 3, "u2": 30, "u3": 31}, {"u1": 1, "u2": 0, "u3": 2}),
        priors=priors,
        diagnostics=diag,
        config=SamplerConfig(backend="pymc", chains=2, draws=10, tune=7),
        pooling=pooling,
        centring=Centring(np.full((3, 3), 0.25), np.ones(3), "test rule"),
        timings={},
    )


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_build_exports_refuses_ci_prob_outside_0_1(small_priors, bad):
    with pytest.raises(HBMError, match=rf"^ci_prob must be in \(0, 1\), got {bad}$"):
        build_exports(fit_result(small_priors), ci_prob=bad)


def test_build_exports_refuses_an_unknown_ci_kind(small_priors):
    msg = r"^ci_kind 'median' is unknown; expected one of \('eti', 'hdi'\)$"
    with pytest.raises(HBMError, match=msg):
        build_exports(fit_result(small_priors), ci_kind="median")


@pytest.mark.parametrize("reliable", [False, True])
def test_build_exports_tables(small_priors, reliable):
    result = fit_result(small_priors, reliable=reliable)
    ex = build_exports(result, ci_prob=0.9, ci_kind="hdi", min_days=30)
    assert (ex.ci_prob, ex.ci_kind) == (0.9, "hdi")
    for table in (ex.population, ex.weights, ex.users):
        assert (table["reliable"] == reliable).all() and table["reliable"].dtype == bool
        assert (table["ci_prob"] == 0.9).all() and (table["ci_kind"] == "hdi").all()
        assert table.columns[-1] == "reliable"
    assert classes_of(ex.weights) == {key: c for key, (_, _, c) in CLASS_CASES.items()}
    assert list(ex.population["feature"]) == list(small_priors.keys)
    assert "tau_mean" in ex.population and "mu_mean" in ex.population
    assert list(ex.users["days_logged"]) == [3, 30, 31]
    assert list(ex.users["attacks"]) == [1, 0, 2]
    assert list(ex.users["few_days"]) == [True, False, False]
    # u1 (trigger, no association), u2 (protector), u3 (no association)
    assert list(ex.users["n_triggers"]) == [1, 0, 0]
    assert list(ex.users["n_protectors"]) == [0, 1, 0]
    assert list(ex.users["n_no_association"]) == [1, 0, 1]
    # confidence from the literal draws: 1 - mean_k Var(w) / E[tau^2]
    draws = class_draws()
    tau2 = {k: np.mean((FIT_TAU + 0.1 * i) ** 2) for i, k in enumerate(small_priors.keys)}
    for i, u in enumerate(CLASS_USERS):
        ratio = np.mean([draws[u, k].var() / tau2[k] for k in small_priors.keys])
        assert ex.users["confidence"].iloc[i] == pytest.approx(1 - ratio, abs=1e-12)
    assert [p["user_id"] for p in ex.profiles] == list(CLASS_USERS)
    for p in ex.profiles:
        assert p["reliable"] is reliable
        assert p["reliability_reasons"] == list(result.diagnostics.reasons)
        assert (p["ci_prob"], p["ci_kind"]) == (0.9, "hdi")
    assert ex.profiles[0]["personalization_confidence"] == ex.users["confidence"].iloc[0]
    d = ex.diagnostics
    assert d["reliable"] is reliable and d["max_rhat"] == 1.2 and d["min_ess_tail"] == 12.0
    assert d["reasons"] == result.diagnostics.reasons
    assert (d["nuts_sampler"], d["chains"], d["draws"], d["tune"]) == ("pymc", 2, 10, 7)
    assert d["centring"] == {
        "weights_mean_lambda": 0.25,
        "weights_share_mostly_centred": 0.0,
        "intercepts_mean_lambda": 1.0,
    }
    assert d["centring_rule"] == "test rule"


def test_build_exports_defaults_and_pooling(small_priors):
    ex = build_exports(fit_result(small_priors, pooling="complete"), min_days=31)
    assert (ex.ci_prob, ex.ci_kind) == (0.9, "eti")
    assert (ex.weights["ci_kind"] == "eti").all() and (ex.users["ci_prob"] == 0.9).all()
    assert (ex.users["confidence"] == 0.0).all()  # complete pooling: nobody is personal
    assert list(ex.users["few_days"]) == [True, True, False]
    assert "tau_mean" not in ex.population
    default_days = build_exports(fit_result(small_priors))
    assert list(default_days.users["few_days"]) == [True, False, False]
    assert (default_days.users["confidence"] > 0).all()


def test_next_day_risk_by_hand():
    """invlogit(a + w_c (s - m)) per draw, s = 1 after an attack day and 0 after a free one."""
    from hbm.results.prediction import next_day_risk

    a = np.array([[[-2.0], [-1.0]], [[-1.5], [-0.5]]])  # (chain, draw, user)
    w_c = np.array([[[1.0], [2.0]], [[0.5], [1.5]]])
    post = xr.Dataset(
        {
            "a": (("chain", "draw", "user"), a),
            "w": (("chain", "draw", "user", "feature"), np.stack([w_c * 0 + 9, w_c], axis=-1)),
        },
        coords={
            "chain": [0, 1],
            "draw": [0, 1],
            "user": ["k"],
            "feature": ["x", "attack_yesterday"],
        },
    )
    design = Design(
        x=np.zeros((1, 2)),
        exposure=np.zeros((1, 2)),
        y=np.zeros(1, dtype=np.int8),
        user_index=np.zeros(1, dtype=np.int64),
        users=("k",),
        features=("x", "attack_yesterday"),
        dates=np.array(["2025-01-01"], dtype="datetime64[ns]"),
        exposure_means=ExposureMeans(("x", "attack_yesterday"), (0.5, 0.25)),
        lag_filled={"x": 0, "attack_yesterday": 0},
    )
    table = next_day_risk(xr.DataTree.from_dict({"posterior": post}), design, ci_prob=0.5)
    for state, name in ((1.0, "after_attack_day"), (0.0, "after_attack_free_day")):
        p = special.expit(a.reshape(-1) + w_c.reshape(-1) * (state - 0.25))
        assert table.loc["k", f"risk_{name}_mean"] == pytest.approx(p.mean(), rel=1e-12)
        assert table.loc["k", f"risk_{name}_lb"] == pytest.approx(np.quantile(p, 0.25), rel=1e-12)
        assert table.loc["k", f"risk_{name}_ub"] == pytest.approx(np.quantile(p, 0.75), rel=1e-12)
    # without the clustering term there is no such risk
    no_c = design.__class__(**{**design.__dict__, "features": ("x", "y")})
    assert next_day_risk(xr.DataTree.from_dict({"posterior": post}), no_c).columns.empty
