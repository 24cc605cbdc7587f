"""Posterior predictive risk on hand-written posteriors: every expected value is computed here.

The posteriors are literal draws (2 chains x 3 draws); the expected risk of a row is the mean and
the equal-tailed quantiles, over draws, of ``expit(a + x . w)`` written out term by term.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import special

from hbm.data.diary import validate_frame
from hbm.data.exposures import Design, ExposureMeans
from hbm.data.priors import parse_priors
from hbm.errors import PriorsError, RunError
from hbm.results.prediction import fit_exposure_means, fit_priors, predict, predict_design

from ..conftest import small_priors_doc

FEATURES = ("screen_hours", "chocolate", "pressure_drop")
PRIORS_JSON = json.dumps(small_priors_doc())
EXPOSURE_MEANS = {"screen_hours": 0.5, "chocolate": 0.25, "pressure_drop": 0.5}
COLUMNS = ["user_id", "date", "known_user", "risk_mean", "risk_lb", "risk_ub", "ci_prob"]
COLUMNS += ["ci_kind", "migraine"]
Z95 = 1.6448536269514722  # the standard normal's 95% quantile

# a[chain, draw, user] for users k1, k2
A = np.array([[[-1.0, -2.0], [-0.5, -1.5], [0.0, -1.0]], [[-1.5, 0.5], [0.5, -0.5], [-2.0, 1.0]]])
# w[chain, draw, user, feature]
W = np.array(
    [
        [
            [[0.2, -0.1, 0.4], [1.0, 0.0, -0.5]],
            [[0.6, 0.3, 0.0], [0.4, 0.2, 0.1]],
            [[-0.2, 0.5, 0.8], [0.0, -0.4, 0.3]],
        ],
        [
            [[0.1, 0.1, 0.1], [0.9, 0.6, -0.2]],
            [[1.2, -0.3, 0.5], [-0.6, 0.0, 0.7]],
            [[0.3, 0.0, -0.4], [0.2, 0.8, 0.0]],
        ],
    ]
)
A0 = np.array([[-1.0, -0.8, -1.2], [-0.6, -1.4, -0.9]])  # a0[chain, draw]
MU = np.array(
    [
        [[0.5, -0.2, 0.1], [0.3, 0.0, 0.2], [0.7, -0.4, 0.0]],
        [[0.4, -0.1, 0.3], [0.6, -0.3, 0.1], [0.2, 0.1, 0.4]],
    ]
)  # mu[chain, draw, feature]


def _tree(pooling: str = "partial", **posterior: np.ndarray) -> xr.DataTree:
    dims = {
        "a": ("chain", "draw", "user"),
        "w": ("chain", "draw", "user", "feature"),
        "a0": ("chain", "draw"),
        "sigma_a": ("chain", "draw"),
        "mu": ("chain", "draw", "feature"),
        "tau": ("chain", "draw", "feature"),
    }
    n_chain, n_draw, n_user = posterior["a"].shape
    post = xr.Dataset(
        {name: (dims[name], value) for name, value in posterior.items()},
        coords={
            "chain": np.arange(n_chain),
            "draw": np.arange(n_draw),
            "user": [f"k{i + 1}" for i in range(n_user)],
            "feature": list(FEATURES),
        },
    )
    tree = xr.DataTree.from_dict({"posterior": post})
    tree.attrs.update(
        priors_json=PRIORS_JSON, centering=json.dumps(EXPOSURE_MEANS), pooling=pooling
    )
    return tree


def partial_tree(sigma_a: float = 0.0, tau: float | np.ndarray = 0.0) -> xr.DataTree:
    return _tree(
        a=A,
        w=W,
        a0=A0,
        sigma_a=np.full(A0.shape, sigma_a),
        mu=MU,
        tau=np.broadcast_to(np.asarray(tau, dtype=float), MU.shape).copy(),
    )


def design(users: tuple[str, ...], user_index: list[int], x: list[list[float]]) -> Design:
    n = len(user_index)
    xa = np.array(x, dtype=float).reshape(n, len(FEATURES))
    return Design(
        x=xa,
        exposure=xa + 0.5,
        y=np.array([i % 2 for i in range(n)], dtype=np.int8),
        user_index=np.array(user_index, dtype=np.int64),
        users=users,
        features=FEATURES,
        dates=np.array([f"2025-03-{d + 1:02d}" for d in range(n)], dtype="datetime64[ns]"),
        exposure_means=ExposureMeans(FEATURES, tuple(EXPOSURE_MEANS.values())),
        lag_filled=dict.fromkeys(FEATURES, 0),
    )


def expected_risk(
    intercepts: list[float], weights: list[list[float]], x: list[float], ci_prob: float = 0.9
) -> tuple[float, float, float]:
    """Mean and equal-tailed interval of ``expit(a + x . w)`` over the listed draws."""
    p = []
    for a, w in zip(intercepts, weights, strict=True):
        eta = a + sum(wk * xk for wk, xk in zip(w, x, strict=True))
        p.append(1.0 / (1.0 + math.exp(-eta)))
    tail = (1.0 - ci_prob) / 2.0
    return sum(p) / len(p), float(np.quantile(p, tail)), float(np.quantile(p, 1.0 - tail))


def draws_of(user: int, picks: list[tuple[int, int]]) -> tuple[list[float], list[list[float]]]:
    """The literal (a, w) draws of a known user at the given (chain, draw) positions."""
    return [float(A[c, d, user]) for c, d in picks], [list(W[c, d, user]) for c, d in picks]


ALL = [(c, d) for c in range(2) for d in range(3)]  # chain-major, as the draws are stacked


def assert_risk(row: pd.Series, want: tuple[float, float, float]) -> None:
    got = (row["risk_mean"], row["risk_lb"], row["risk_ub"])
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


# --- known users -------------------------------------------------------------------------------


@pytest.mark.parametrize("ci_prob", [0.9, 0.5])
def test_known_users_use_their_own_draws(ci_prob):
    # design users in another order than the posterior's: k2 first, then k1
    x = [[0.5, 0.0, -1.0], [0.0, 0.0, 0.0], [-0.5, 0.75, 0.5], [1.0, -1.0, 2.0]]
    d = design(("k2", "k1"), [0, 1, 1, 0], x)
    out = predict_design(partial_tree(), d, ci_prob=ci_prob)
    assert list(out.columns) == COLUMNS
    assert out["user_id"].tolist() == ["k2", "k1", "k1", "k2"]
    assert out["known_user"].tolist() == [True, True, True, True]
    for i, user in enumerate([1, 0, 0, 1]):
        assert_risk(out.iloc[i], expected_risk(*draws_of(user, ALL), x[i], ci_prob))
    assert (out["ci_prob"] == ci_prob).all() and (out["ci_kind"] == "eti").all()
    assert out["migraine"].tolist() == [0, 1, 0, 1]
    dates = ["2025-03-01", "2025-03-02", "2025-03-03", "2025-03-04"]
    assert out["date"].tolist() == list(pd.to_datetime(dates))


def test_risk_of_a_zero_row_is_the_base_rate_draws():
    out = predict_design(partial_tree(), design(("k1",), [0], [[0.0, 0.0, 0.0]]))
    p = [1 / (1 + math.exp(-a)) for a in [-1.0, -0.5, 0.0, -1.5, 0.5, -2.0]]
    assert out["risk_mean"].iloc[0] == pytest.approx(sum(p) / 6, rel=1e-12)
    # 6 draws, linear interpolation: 5% at position 0.25, 95% at position 4.75 of the sorted p
    s = sorted(p)
    assert out["risk_lb"].iloc[0] == pytest.approx(s[0] + 0.25 * (s[1] - s[0]), rel=1e-12)
    assert out["risk_ub"].iloc[0] == pytest.approx(s[4] + 0.75 * (s[5] - s[4]), rel=1e-12)


@pytest.mark.parametrize(
    ("max_draws", "picks"),
    [
        (1000, ALL),
        (6, ALL),
        (5, [(0, 0), (0, 2), (1, 1)]),  # every 2nd of the 6 stacked draws
        (4, [(0, 0), (0, 2), (1, 1)]),
        (3, [(0, 0), (0, 2), (1, 1)]),
        (2, [(0, 0), (1, 0)]),  # every 3rd
        (1, [(0, 0)]),
    ],
)
def test_thinning_keeps_every_nth_stacked_draw(max_draws, picks):
    x = [[1.0, -1.0, 0.5], [0.25, 0.5, -0.5]]
    d = design(("k1", "k2", "new"), [0, 1, 2], [*x, [1.0, 1.0, 1.0]])
    out = predict_design(partial_tree(), d, max_draws=max_draws)
    assert_risk(out.iloc[0], expected_risk(*draws_of(0, picks), x[0]))
    assert_risk(out.iloc[1], expected_risk(*draws_of(1, picks), x[1]))
    # the cold-start row thins the population draws the same way
    a0 = [float(A0[c, dr]) for c, dr in picks]
    mu = [list(MU[c, dr]) for c, dr in picks]
    assert_risk(out.iloc[2], expected_risk(a0, mu, [1.0, 1.0, 1.0]))


# --- unseen users (cold start) -----------------------------------------------------------------


def test_cold_start_without_spread_is_the_population_line():
    """tau = 0 and sigma_a = 0: every draw's new user is (a0, mu), so p = expit(a0 + x . mu)."""
    x = [[0.0, 0.0, 0.0], [1.0, -0.5, 2.0], [-1.0, 1.0, 0.25]]
    d = design(("k1", "new", "other"), [1, 0, 2, 1], [x[0], [0.0, 0.0, 0.0], x[1], x[2]])
    out = predict_design(partial_tree(), d, ci_prob=0.8)
    assert out["user_id"].tolist() == ["new", "k1", "other", "new"]
    assert out["known_user"].tolist() == [False, True, False, False]
    a0 = [float(A0[c, dr]) for c, dr in ALL]
    mu = [list(MU[c, dr]) for c, dr in ALL]
    for i, xi in zip([0, 2, 3], x, strict=True):
        assert_risk(out.iloc[i], expected_risk(a0, mu, xi, 0.8))
    # exactly expit(a0 + x . mu) per draw, here for the first draw alone
    one = predict_design(partial_tree(), design(("new",), [0], [x[1]]), max_draws=1)
    assert one["risk_mean"].iloc[0] == pytest.approx(special.expit(-1.0 + 0.5 + 0.1 + 0.2))


def test_complete_pooling_fit_without_tau():
    tree = _tree("complete", a=A, w=W, a0=A0, sigma_a=np.zeros(A0.shape), mu=MU)
    x = [0.5, 1.0, -1.0]
    out = predict_design(tree, design(("new",), [0], [x]))
    a0 = [float(A0[c, dr]) for c, dr in ALL]
    assert_risk(out.iloc[0], expected_risk(a0, [list(MU[c, dr]) for c, dr in ALL], x))


def _normal_risk(mean: float, sd: float, ci_prob: float = 0.9) -> tuple[float, float, float]:
    """Mean and equal-tailed interval of expit(N(mean, sd^2)), by Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    m = float(np.sum(weights * special.expit(mean + sd * nodes)) / np.sqrt(2 * np.pi))
    z = {0.9: Z95, 0.5: 0.6744897501960817}[ci_prob]
    return m, float(special.expit(mean - z * sd)), float(special.expit(mean + z * sd))


def _many_draws_tree(pooling: str, n_draws: int = 10_000, **population: float) -> xr.DataTree:
    shape = (2, n_draws)
    post = {"a": np.zeros((*shape, 1)), "w": np.zeros((*shape, 1, 3))}
    if pooling != "none":
        post["a0"] = np.full(shape, population["a0"])
        post["sigma_a"] = np.full(shape, population["sigma_a"])
        post["mu"] = np.broadcast_to(np.array(population["mu"]), (*shape, 3)).copy()
        post["tau"] = np.broadcast_to(np.array(population["tau"]), (*shape, 3)).copy()
    return _tree(pooling, **post)


def test_cold_start_carries_the_between_user_spread():
    """a ~ N(a0, sigma_a), w ~ N(mu, tau): the risk is that of a normal on the logit scale."""
    tree = _many_draws_tree("partial", a0=-1.0, sigma_a=0.5, mu=[0.3, -0.2, 0.0], tau=[0.8, 0, 2])
    rows = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    out = predict_design(tree, design(("new",), [0] * 4, rows), max_draws=20_000, seed=3)
    want = [
        _normal_risk(-1.0, 0.5),
        _normal_risk(-0.7, math.sqrt(0.25 + 0.64)),
        _normal_risk(-1.2, 0.5),
        _normal_risk(-1.0, math.sqrt(0.25 + 4.0)),
    ]
    for i, w in enumerate(want):
        got = (out["risk_mean"].iloc[i], out["risk_lb"].iloc[i], out["risk_ub"].iloc[i])
        assert got == pytest.approx(w, abs=0.02), i


def test_no_pooling_uses_the_priors_means_and_wide_sds():
    """pooling 'none': a ~ N(logit 0.15, 1.5), w[k] ~ N(prior mean, 1) (see hbm.model.build)."""
    tree = _many_draws_tree("none")
    rows = [[0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 2.0, 0.0]]
    base = math.log(0.15 / 0.85)
    chocolate_mean = 0.2 * math.log(1.3)  # derived: weight_prior * log(max/min pattern)
    want = [
        _normal_risk(base, 1.5, 0.5),
        _normal_risk(base + 0.1 + 0.1, math.sqrt(2.25 + 2.0), 0.5),
        _normal_risk(base + 2 * chocolate_mean, math.sqrt(2.25 + 4.0), 0.5),
    ]
    out = predict_design(tree, design(("new",), [0] * 3, rows), 0.5, seed=5, max_draws=20_000)
    assert out["known_user"].tolist() == [False] * 3
    for i, w in enumerate(want):
        got = (out["risk_mean"].iloc[i], out["risk_lb"].iloc[i], out["risk_ub"].iloc[i])
        assert got == pytest.approx(w, abs=0.02), i


def test_cold_start_is_seeded():
    tree = partial_tree(sigma_a=0.7, tau=0.9)
    d = design(("new",), [0, 0], [[1.0, 1.0, 1.0], [0.0, -1.0, 0.5]])
    first = predict_design(tree, d, seed=11)
    pd.testing.assert_frame_equal(first, predict_design(tree, d, seed=11))
    other = predict_design(tree, d, seed=12)
    assert (first["risk_mean"] != other["risk_mean"]).all()


def test_cold_start_draws_are_the_documented_layout():
    """One new user per stacked draw: z_w = N(0,1) of shape (draws, features) first, then z_a."""
    tree = partial_tree(sigma_a=0.7, tau=np.array([0.9, 0.4, 1.3]))
    x = [1.0, -1.0, 0.5]
    out = predict_design(tree, design(("new",), [0], [x]), seed=21)
    rng = np.random.default_rng(21)
    z_w = rng.standard_normal((6, 3))
    z_a = rng.standard_normal(6)
    a0 = [float(A0[c, d]) for c, d in ALL]
    mu = [MU[c, d] for c, d in ALL]
    intercepts = [a0[s] + 0.7 * z_a[s] for s in range(6)]
    weights = [[mu[s][k] + [0.9, 0.4, 1.3][k] * z_w[s, k] for k in range(3)] for s in range(6)]
    want = expected_risk(intercepts, weights, x)
    got = (out["risk_mean"].iloc[0], out["risk_lb"].iloc[0], out["risk_ub"].iloc[0])
    assert got == pytest.approx(want, abs=1e-12)


def test_a_new_users_risk_does_not_depend_on_other_new_users():
    tree = partial_tree(sigma_a=0.7, tau=0.9)
    alone = predict_design(tree, design(("new",), [0], [[1.0, -1.0, 0.5]]), seed=4)
    crowd = predict_design(
        tree,
        design(("x", "new", "y"), [0, 1, 2], [[0.3, 0.0, 1.0], [1.0, -1.0, 0.5], [2.0, 2.0, 2.0]]),
        seed=4,
    )
    cols = ["risk_mean", "risk_lb", "risk_ub"]
    assert crowd[cols].iloc[1].tolist() == alone[cols].iloc[0].tolist()


def test_cold_start_risk_uses_the_cold_start_profiles_weights():
    """``hbm predict`` and the service's cold-start profile draw the same new users per seed."""
    from hbm.results.tables import cold_start_weights

    tree = partial_tree(sigma_a=0.0, tau=np.array([0.9, 0.4, 1.3]))
    x = [1.0, -1.0, 0.5]
    out = predict_design(tree, design(("new",), [0], [x]), seed=8)
    w_new = cold_start_weights(tree, seed=8).transpose("chain", "draw", "feature").values
    weights = [list(w_new[c, d]) for c, d in ALL]
    want = expected_risk([float(A0[c, d]) for c, d in ALL], weights, x)
    assert out["risk_mean"].iloc[0] == pytest.approx(want[0], abs=1e-12)


def test_default_seed_is_0():
    """The documented default seed: a run without --seed reproduces one with seed 0."""
    tree = partial_tree(sigma_a=0.7, tau=0.9)
    d = design(("new",), [0], [[1.0, -1.0, 0.5]])
    pd.testing.assert_frame_equal(predict_design(tree, d), predict_design(tree, d, seed=0))
    frame = pd.DataFrame(
        {
            "user_id": ["new"],
            "date": ["2025-03-01"],
            "migraine": [0],
            "screen_hours": [10.0],
            "chocolate": [0.0],
            "pressure": [1000.0],
        }
    )
    diary = validate_frame(frame, parse_priors(PRIORS_JSON))
    pd.testing.assert_frame_equal(predict(tree, diary), predict(tree, diary, seed=0))


def test_users_without_rows_do_not_stop_later_users():
    x = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    d = design(("gone", "k1", "absent", "new"), [1, 3], x)
    out = predict_design(partial_tree(), d)
    assert out["user_id"].tolist() == ["k1", "new"]
    assert_risk(out.iloc[0], expected_risk(*draws_of(0, ALL), x[0]))
    a0 = [float(A0[c, dr]) for c, dr in ALL]
    assert_risk(out.iloc[1], expected_risk(a0, [list(MU[c, dr]) for c, dr in ALL], x[1]))


def test_empty_design_gives_an_empty_table():
    d = design(("k1",), [], [])
    out = predict_design(partial_tree(), d)
    assert list(out.columns) == COLUMNS and len(out) == 0


# --- from a diary ------------------------------------------------------------------------------


def test_predict_from_a_diary_uses_the_stored_centring():
    """Exposures by hand (small priors; centring 0.5, 0.25, 0.5 stored in the fit):

    screen_hours 10, 4, 7 -> 1, 0, 0.5; chocolate (lag 1) 1, 0, 1 -> unknown, 1, 0;
    pressure 1010, 1002, 1006 (change) -> unknown, -8 (1), +4 (0). Unknown -> centred 0.
    """
    frame = pd.DataFrame(
        {
            "user_id": ["k1"] * 3 + ["new"] * 2,
            "date": ["2025-03-01", "2025-03-02", "2025-03-03", "2025-03-01", "2025-03-02"],
            "migraine": [0, 1, 0, 1, 1],
            "screen_hours": [10.0, 4.0, 7.0, 4.0, 10.0],
            "chocolate": [1.0, 0.0, 1.0, 0.0, 0.0],
            "pressure": [1010.0, 1002.0, 1006.0, 1000.0, 996.0],
        }
    )
    diary = validate_frame(frame, parse_priors(PRIORS_JSON))
    out = predict(partial_tree(sigma_a=0.3, tau=0.2), diary, ci_prob=0.5, seed=1, max_draws=3)
    x_k1 = [[0.5, 0.0, 0.0], [-0.5, 0.75, 0.5], [0.0, -0.25, -0.5]]
    picks = [(0, 0), (0, 2), (1, 1)]
    assert list(out.columns) == COLUMNS
    assert out["user_id"].tolist() == ["k1", "k1", "k1", "new", "new"]
    assert out["known_user"].tolist() == [True, True, True, False, False]
    assert out["migraine"].tolist() == [0, 1, 0, 1, 1]
    for i, x in enumerate(x_k1):
        assert_risk(out.iloc[i], expected_risk(*draws_of(0, picks), x, 0.5))
    assert (out["ci_prob"] == 0.5).all()
    # the same call again: the cold-start rows are seeded; another seed moves them
    again = predict(partial_tree(sigma_a=0.3, tau=0.2), diary, ci_prob=0.5, seed=1, max_draws=3)
    pd.testing.assert_frame_equal(out, again)
    moved = predict(partial_tree(sigma_a=0.3, tau=0.2), diary, ci_prob=0.5, seed=2, max_draws=3)
    assert (moved["risk_mean"].iloc[3:] != out["risk_mean"].iloc[3:]).all()
    assert (moved["risk_mean"].iloc[:3] == out["risk_mean"].iloc[:3]).all()


def test_predict_defaults_are_90_percent_and_all_draws():
    frame = pd.DataFrame(
        {
            "user_id": ["k2"],
            "date": ["2025-03-01"],
            "migraine": [1],
            "screen_hours": [10.0],
            "chocolate": [0.0],
            "pressure": [1000.0],
        }
    )
    out = predict(partial_tree(), validate_frame(frame, parse_priors(PRIORS_JSON)))
    assert out["ci_prob"].tolist() == [0.9]
    assert_risk(out.iloc[0], expected_risk(*draws_of(1, ALL), [0.5, 0.0, 0.0]))


# --- what the fit stores -----------------------------------------------------------------------


def test_fit_centering_reads_the_attrs():
    c = fit_exposure_means(partial_tree())
    assert c == ExposureMeans(FEATURES, (0.5, 0.25, 0.5))
    assert all(type(m) is float for m in c.means)


def test_fit_priors_reads_the_attrs():
    assert fit_priors(partial_tree()).keys == FEATURES


def test_fit_without_priors_is_a_run_error():
    tree = partial_tree()
    del tree.attrs["priors_json"]
    with pytest.raises(RunError) as info:
        fit_priors(tree)
    assert str(info.value) == "the fit's attrs hold no priors_json; was it saved by hbm?"


def test_broken_stored_priors_name_their_origin():
    tree = partial_tree()
    tree.attrs["priors_json"] = "{not json"
    with pytest.raises(PriorsError, match=r"^<priors stored in fit\.nc>: not valid JSON"):
        fit_priors(tree)


# --- the clustering term: next-day risk from earlier outcomes, never the day's own ------------

CLUSTER_DOC = {
    **small_priors_doc(),
    "clustering": {
        "log_odds_prior": {"mean": 0.7, "sd": 0.5, "between_user_sd": 0.5},
        "source": "test fixture",
    },
}
CLUSTER_FEATURES = (*FEATURES, "attack_yesterday")
CLUSTER_MEANS = {**EXPOSURE_MEANS, "attack_yesterday": 0.2}
W_C = np.array([[1.5, 0.8, 2.0], [0.4, 1.0, 1.2]])  # w[chain, draw, attack_yesterday], user k1


def cluster_tree() -> xr.DataTree:
    w = np.concatenate([W[:, :, :1, :], W_C[:, :, None, None]], axis=-1)
    post = xr.Dataset(
        {
            "a": (("chain", "draw", "user"), A[:, :, :1]),
            "w": (("chain", "draw", "user", "feature"), w),
        },
        coords={
            "chain": [0, 1],
            "draw": [0, 1, 2],
            "user": ["k1"],
            "feature": list(CLUSTER_FEATURES),
        },
    )
    tree = xr.DataTree.from_dict({"posterior": post})
    tree.attrs.update(
        priors_json=json.dumps(CLUSTER_DOC), centering=json.dumps(CLUSTER_MEANS), pooling="none"
    )
    return tree


def cluster_diary(migraine: list[int], dates: list[str]) -> pd.DataFrame:
    n = len(migraine)
    return pd.DataFrame(
        {
            "user_id": ["k1"] * n,
            "date": dates,
            "migraine": migraine,
            # exposures at their centring means, so only the clustering term moves the risk:
            # screen_hours 0.5 -> 7 h (pattern 1, 1, 1.5 over 0, 4, 10: (1.25 - 1) / 0.5)
            "screen_hours": [7.0] * n,
            "chocolate": [0.25] * n,  # not a level the pattern has: see the expected x below
            "pressure": [1000.0] * n,
        }
    )


def test_next_day_risk_uses_the_previous_days_outcome_and_an_unlogged_day_is_unknown():
    priors = parse_priors(json.dumps(CLUSTER_DOC))
    dates = ["2025-03-01", "2025-03-02", "2025-03-03", "2025-03-05", "2025-03-06"]
    diary = validate_frame(cluster_diary([1, 0, 1, 1, 0], dates), priors)
    out = predict(cluster_tree(), diary)
    picks = ALL
    a = [float(A[c, d, 0]) for c, d in picks]
    # x of the three triggers: screen 7 h -> exposure 0.5, centred 0; chocolate 0.25 and
    # chocolate's lag 1 reads the day before (0.25 -> exposure 0.25, centred 0; the first day
    # and the day after the gap are unknown, centred 0 too); pressure change 0 -> exposure 0
    # against mean 0.5 (-0.5), unknown (0) where the day before is missing
    state = [None, 1, 0, None, 1]  # the previous calendar day's attack state
    for i, s in enumerate(state):
        x_c = 0.0 if s is None else s - 0.2
        x_p = 0.0 if s is None else -0.5
        weights = [[*list(W[c, d, 0]), float(W_C[c, d])] for c, d in picks]
        want = expected_risk(a, weights, [0.0, 0.0, x_p, x_c])
        assert_risk(out.iloc[i], want)


def test_a_days_own_outcome_never_changes_its_risk():
    priors = parse_priors(json.dumps(CLUSTER_DOC))
    dates = [f"2025-03-{d:02d}" for d in range(1, 11)]
    base = [0, 1, 1, 0, 0, 1, 0, 1, 0, 0]
    risk = predict(cluster_tree(), validate_frame(cluster_diary(base, dates), priors))
    for t in range(len(base)):
        flipped = list(base)
        flipped[t] = 1 - flipped[t]
        again = predict(cluster_tree(), validate_frame(cluster_diary(flipped, dates), priors))
        assert again["risk_mean"].iloc[t] == risk["risk_mean"].iloc[t]
        if t + 1 < len(base):  # the next day reads it
            assert again["risk_mean"].iloc[t + 1] != risk["risk_mean"].iloc[t + 1]
        assert np.array_equal(again["risk_mean"].iloc[: t + 1], risk["risk_mean"].iloc[: t + 1])


@pytest.mark.parametrize(
    ("last_day", "state", "x_c"),
    [("2025-02-28", 1, 0.8), ("2025-02-28", 0, -0.2), ("2025-02-27", 1, 0.0)],
)
def test_a_known_users_first_new_day_takes_the_fitted_last_days_state(last_day, state, x_c):
    """The fit's last day is the day before the new diary's first: its state is the first day's
    (1 - 0.2 or 0 - 0.2, centred); a day earlier leaves the first day's state unknown (0)."""
    priors = parse_priors(json.dumps(CLUSTER_DOC))
    tree = cluster_tree()
    tree.attrs["last_days"] = json.dumps({"k1": [last_day, state]})
    dates = ["2025-03-01", "2025-03-02"]
    out = predict(tree, validate_frame(cluster_diary([0, 1], dates), priors))
    weights = [[*list(W[c, d, 0]), float(W_C[c, d])] for c, d in ALL]
    a = [float(A[c, d, 0]) for c, d in ALL]
    assert_risk(out.iloc[0], expected_risk(a, weights, [0.0, 0.0, 0.0, x_c]))
    # the second day reads the diary's own first day (no attack): 0 - 0.2
    assert_risk(out.iloc[1], expected_risk(a, weights, [0.0, 0.0, -0.5, -0.2]))


def test_a_continuing_day_has_no_row_but_is_counted_and_gives_the_next_day_its_state():
    priors = parse_priors(json.dumps(CLUSTER_DOC))
    dates = ["2025-03-01", "2025-03-02", "2025-03-03"]
    frame = cluster_diary([1, 0, 0], dates).assign(migraine_continues=[0, 1, 0])
    out = predict(cluster_tree(), validate_frame(frame, priors))
    assert out["date"].dt.strftime("%Y-%m-%d").tolist() == ["2025-03-01", "2025-03-03"]
    assert out.attrs["continuing_days"] == 1
    weights = [[*list(W[c, d, 0]), float(W_C[c, d])] for c, d in ALL]
    a = [float(A[c, d, 0]) for c, d in ALL]
    # 3 March follows a day inside the attack: state 1 (centred 0.8)
    assert_risk(out.iloc[1], expected_risk(a, weights, [0.0, 0.0, -0.5, 0.8]))
