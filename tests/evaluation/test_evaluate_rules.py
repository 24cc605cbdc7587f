"""Held-out metrics, the paired bootstrap, weight recovery and stability against hand-worked cases.

Every expected value is worked out by hand (or by an independent formula written here), never by
the scikit-learn calls ``hbm.evaluation.metrics`` itself makes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hbm.evaluation.metrics import (
    BOOTSTRAP,
    ECE_BINS,
    expected_calibration_error,
    paired_bootstrap,
    per_user_scores,
    scores,
    weight_recovery,
    weight_stability,
)

# Six users. Per-user AUC = share of (attack, no-attack) day pairs ranked right, ties half:
#   u0: attacks {.35, .8} vs none {.1, .4}: .35>.1, .35<.4, .8>.1, .8>.4        -> 3/4  = 0.75
#   u1: attacks {.3, .9}  vs none {.3, .6}: tie (1/2), .3<.6, .9>.3, .9>.6      -> 2.5/4 = 0.625
#   u2: attack {.7} vs none {.2}                                               -> 1
#   u3: attack {.1} vs none {.5, .6}                                           -> 0
#   u4: no attack, u5: only attacks                                            -> NaN
USERS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5])
Y = np.array([0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1], dtype=float)
P = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.3, 0.6, 0.9, 0.2, 0.7, 0.1, 0.5, 0.6, 0.2, 0.5, 0.9])
AUCS = [0.75, 0.625, 1.0, 0.0]


def _auc_by_pairs(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney: concordant (attack, no-attack) pairs plus half the ties, over all pairs."""
    pos, neg = p[y == 1][:, None], p[y == 0][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def test_per_user_table_is_counted_by_hand():
    t = per_user_scores(Y, P, USERS)
    assert t.columns.tolist() == ["user", "n_test", "attacks", "auc", "sse", "nll"]
    assert t["user"].tolist() == [0, 1, 2, 3, 4, 5]
    assert t["n_test"].tolist() == [4, 4, 2, 3, 2, 1]
    assert t["attacks"].tolist() == [2, 2, 1, 1, 0, 1]
    np.testing.assert_allclose(t["auc"].iloc[:4], AUCS)
    assert t["auc"].iloc[4:].isna().all()  # one class only: no AUC
    # u0 squared errors .1², .4², .65², .2²; u4 .2², .5²
    assert t.loc[0, "sse"] == pytest.approx(0.01 + 0.16 + 0.4225 + 0.04)
    assert t.loc[4, "sse"] == pytest.approx(0.04 + 0.25)
    # u0 log-loss: -log(.9) - log(.6) - log(.35) - log(.8); u5: -log(.9)
    nll0 = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8))
    assert t.loc[0, "nll"] == pytest.approx(nll0)
    assert t.loc[5, "nll"] == pytest.approx(-math.log(0.9))


def test_per_user_scores_clip_certain_predictions():
    """p = 0 for an attack costs -log(1e-12) ≈ 27.63 nats, not infinity; p = 1 for one likewise."""
    t = per_user_scores(np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0, 1]))
    np.testing.assert_allclose(t["nll"], [-math.log(1e-12)] * 2, rtol=1e-5)
    np.testing.assert_allclose(t["sse"], [1.0, 1.0])


def test_scores_summarise_users_with_an_auc():
    s = scores(Y, P, USERS)
    # sorted AUCs 0, .625, .75, 1 (linear quantiles): median .6875, q25 .75*.625, q75 .75+.25*.25
    assert s["within_auc_median"] == pytest.approx(0.6875)
    assert s["within_auc_q25"] == pytest.approx(0.46875)
    assert s["within_auc_q75"] == pytest.approx(0.8125)
    assert s["within_auc_mean"] == pytest.approx(2.375 / 4)
    assert s["users_with_auc"] == 4.0
    assert s["pooled_auc"] == pytest.approx(_auc_by_pairs(Y, P))
    assert s["brier"] == pytest.approx(np.mean((P - Y) ** 2))


def test_scores_pooled_metrics_by_hand():
    """Five days: user 0 has both classes, user 1 only attacks.

    Pooled AUC: attacks {.19, .95, .91} vs none {.12, .55}: 5 of 6 pairs right. Brier:
    (.12² + .81² + .55² + .05² + .09²) / 5 = .9836 / 5. ECE (10 bins): [.1,.2) rate .5 mean .155
    share .4 -> .138; [.5,.6) rate 0 mean .55 share .2 -> .11; [.9,1] rate 1 mean .93 share .4 ->
    .028; sum .276 (11 bins would split .12 and .19 and give .186).
    """
    y = np.array([0.0, 1.0, 0.0, 1.0, 1.0])
    p = np.array([0.12, 0.19, 0.55, 0.95, 0.91])
    s = scores(y, p, np.array([0, 0, 0, 1, 1]))
    assert s["pooled_auc"] == pytest.approx(5 / 6)
    assert s["within_auc_median"] == s["within_auc_mean"] == pytest.approx(0.5)
    assert s["users_with_auc"] == 1.0
    assert s["brier"] == pytest.approx(0.9836 / 5)
    logs = [0.88, 0.19, 0.45, 0.95, 0.91]  # probability given to what happened
    assert s["log_loss"] == pytest.approx(-sum(math.log(v) for v in logs) / 5)
    assert s["ece"] == pytest.approx(0.276)


def test_scores_without_any_within_person_auc():
    """No attack at all: no AUC anywhere (NaN, not an error); log-loss still defined."""
    y = np.zeros(4)
    p = np.array([0.1, 0.2, 0.0, 0.5])
    s = scores(y, p, np.array([0, 0, 1, 1]))
    for key in ("within_auc_median", "within_auc_q25", "within_auc_q75", "within_auc_mean"):
        assert math.isnan(s[key])
    assert s["users_with_auc"] == 0.0 and math.isnan(s["pooled_auc"])
    assert s["brier"] == pytest.approx((0.01 + 0.04 + 0 + 0.25) / 4)
    # -log(1 - p); p = 0 is clipped to 1e-12, whose cost is ~1e-12
    expected = -(math.log(0.9) + math.log(0.8) + math.log(1 - 1e-12) + math.log(0.5)) / 4
    assert s["log_loss"] == pytest.approx(expected)
    ones = scores(np.ones(2), np.array([0.6, 0.7]), np.array([0, 0]))
    assert math.isnan(ones["pooled_auc"])


def test_scores_with_a_single_attack_and_certain_predictions():
    """One attack is enough for a pooled AUC (.4 above .2 and .3: 1). Certain predictions that
    are wrong cost -log(1e-12) ≈ 27.63 nats each, as in per_user_scores (scikit-learn's own
    clipping, at machine epsilon, would give ≈ 36.04)."""
    s = scores(np.array([0.0, 0.0, 1.0]), np.array([0.2, 0.3, 0.4]), np.array([0, 1, 1]))
    assert s["pooled_auc"] == 1.0
    for y, p in (([1.0], [0.0]), ([0.0], [1.0])):
        s = scores(np.array(y), np.array(p), np.array([0]))
        assert s["log_loss"] == pytest.approx(-math.log(1e-12), rel=1e-5)


def test_ece_by_hand():
    assert ECE_BINS == 10
    # calibrated constant: 0; predicting .9 for a .5 rate: .4
    assert expected_calibration_error(np.array([0, 1] * 50), np.full(100, 0.5)) == 0.0
    assert expected_calibration_error(np.array([0, 1] * 50), np.full(100, 0.9)) == pytest.approx(
        0.4
    )
    # 4 bins of width .25: {.1 (y 0), .2 (y 1)} rate .5 mean .15 -> .35 * 2/4; {.9 (y 1)} ->
    # .1 * 1/4; {.6 (y 0)} -> .6 * 1/4; total .175 + .025 + .15 = .35
    y, p = np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.1, 0.2, 0.9, 0.6])
    assert expected_calibration_error(y, p, n_bins=4) == pytest.approx(0.35)
    # 10 bins: each of the four alone: (.1 + .8 + .1 + .6) / 4 = .4
    assert expected_calibration_error(y, p) == pytest.approx(0.4)


def test_ece_with_predictions_on_bin_edges():
    """Regression: counts came from np.histogram (left-closed bins) but rates from
    calibration_curve (right-closed), so a prediction on an edge was weighted in the wrong bin
    (or the shapes differed and it raised). With right-closed bins (.1,.2], (.2,.3]:
    y 0 at .2 -> gap .2, y 1 at .25 -> gap .75: ECE (.2 + .75) / 2 = .475 (was .95)."""
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0.2, 0.25])) == pytest.approx(
        0.475
    )
    # four predictions in four bins (.2 in (.1,.2]): gaps .2, .75, .35, .55 -> 1.85 / 4 (raised)
    y, p = np.array([0.0, 1.0, 0.0, 1.0]), np.array([0.2, 0.25, 0.35, 0.45])
    assert expected_calibration_error(y, p) == pytest.approx(1.85 / 4)


# --- the paired bootstrap -----------------------------------------------------------------------


def _table(auc, sse, n_test, nll=None, users=None) -> pd.DataFrame:
    """A per_user_scores-shaped table (only the columns the bootstrap reads matter)."""
    auc = np.asarray(auc, dtype=float)
    return pd.DataFrame(
        {
            "user": np.arange(len(auc)) if users is None else users,
            "n_test": n_test,
            "attacks": 1,
            "auc": auc,
            "sse": np.asarray(sse, dtype=float),
            "nll": np.asarray(sse if nll is None else nll, dtype=float),
        }
    )


def _standardised(n: int) -> np.ndarray:
    """n fixed numbers with mean 0 and population SD 1 exactly."""
    z = np.linspace(-1.0, 1.0, n)
    return (z - z.mean()) / z.std()


N_USERS, MEAN_D, SD_D = 200, 0.05, 0.1


@pytest.fixture(scope="module")
def known_spread():
    """200 users, AUC differences d_i = .05 + .1 z_i and Brier/log-loss sums differences
    -.02 + .04 z_i on 10 test days each. Resampling users, the mean difference has SD
    s / sqrt(n) (population s), so the interval is about m ± z s / sqrt(n)."""
    z = _standardised(N_USERS)
    ref = _table(np.full(N_USERS, 0.6), np.full(N_USERS, 2.0), 10)
    model = _table(0.6 + MEAN_D + SD_D * z, 2.0 - 0.2 + 0.4 * z, 10)
    return model, ref


@pytest.mark.parametrize("ci_prob, z", [(0.95, 1.959964), (0.9, 1.644854)])
def test_bootstrap_interval_has_the_known_level_and_width(known_spread, ci_prob, z):
    """Catches "95% percentiles changed to 90%" (and any other wrong level or centre)."""
    model, ref = known_spread
    out = paired_bootstrap(model, ref, n_boot=20000, seed=5, ci_prob=ci_prob)
    assert out["boot_ci_prob"] == ci_prob and out["n_boot"] == 20000.0
    se = SD_D / math.sqrt(N_USERS)
    assert out["d_within_auc"] == pytest.approx(MEAN_D)
    assert out["d_within_auc_ub"] - out["d_within_auc"] == pytest.approx(z * se, rel=0.04)
    assert out["d_within_auc"] - out["d_within_auc_lb"] == pytest.approx(z * se, rel=0.04)
    # Brier per day: sse difference -.2 + .4 z over 10 days -> mean -.02, SD .04
    se_b = 0.04 / math.sqrt(N_USERS)
    for name in ("brier", "log_loss"):
        assert out[f"d_{name}"] == pytest.approx(-0.02)
        assert out[f"d_{name}_ub"] - out[f"d_{name}"] == pytest.approx(z * se_b, rel=0.04)
        assert out[f"d_{name}"] - out[f"d_{name}_lb"] == pytest.approx(z * se_b, rel=0.04)


def test_bootstrap_defaults():
    """2000 resamples, seed 0, 95%: the documented defaults."""
    assert BOOTSTRAP == 2000
    z = _standardised(30)
    model, ref = _table(0.7 + 0.1 * z, 1.0 + z, 5), _table(np.full(30, 0.7), np.ones(30), 5)
    out = paired_bootstrap(model, ref)
    assert out["n_boot"] == 2000.0 and out["boot_ci_prob"] == 0.95
    assert out == paired_bootstrap(model, ref, n_boot=2000, seed=0, ci_prob=0.95)
    assert out != paired_bootstrap(model, ref, seed=1)
    # the default level is 95%: half-width about 1.96 * .1 / sqrt(30) (2000 draws: loose)
    half = (out["d_within_auc_ub"] - out["d_within_auc_lb"]) / 2
    assert half == pytest.approx(1.96 * 0.1 / math.sqrt(30), rel=0.1)


def test_brier_and_log_loss_are_pooled_per_day():
    """Catches "Brier averaged per user instead of per day".

    User 0: 1 test day, sse difference 1; user 1: 3 days, difference 0. Per day: 1 / 4 = .25 (per
    user it would be (1/1 + 0/3) / 2 = .5). Resamples: {0,0} -> 2/2 = 1 (p 1/4), {0,1} -> 1/4
    (p 1/2), {1,1} -> 0 (p 1/4); the 40th-60th percentiles fall in the middle half: .25 (per-user
    averaging would give .5).
    """
    model = _table([0.7, 0.7], [1.0, 0.0], [1, 3], nll=[2.0, 0.0])
    ref = _table([0.7, 0.7], [0.0, 0.0], [1, 3], nll=[0.0, 0.0])
    out = paired_bootstrap(model, ref, n_boot=4000, seed=1, ci_prob=0.2)
    assert out["d_brier"] == pytest.approx(0.25)
    assert out["d_brier_lb"] == pytest.approx(0.25) and out["d_brier_ub"] == pytest.approx(0.25)
    assert out["d_log_loss"] == pytest.approx(0.5)
    assert out["d_log_loss_lb"] == pytest.approx(0.5) and out["d_log_loss_ub"] == pytest.approx(0.5)


def test_bootstrap_keeps_each_users_days_with_its_difference():
    """Model rows in user order (1, 0), reference (0, 1). User 0: 1 day, sse difference 1; user
    1: 3 days, 0. Resample {0,0} (p 1/4) -> 2/2 = 1, so the 90% interval reaches 1 (pairing user
    0's difference with user 1's 3 days would cap it at 2/6)."""
    model = _table([0.7, 0.7], [0.0, 1.0], [3, 1], users=[1, 0])
    ref = _table([0.7, 0.7], [0.0, 0.0], [1, 3])
    out = paired_bootstrap(model, ref, n_boot=4000, seed=4, ci_prob=0.9)
    assert out["d_brier"] == pytest.approx(0.25)
    assert out["d_brier_lb"] == 0.0 and out["d_brier_ub"] == pytest.approx(1.0)


def test_bootstrap_resamples_every_user():
    """Two users with AUC differences 1 and 0: resample means 0, .5, 1 with p 1/4, 1/2, 1/4, so
    the 95% interval is [0, 1] (it would collapse if the first or last user were never drawn)."""
    model, ref = _table([1.0, 0.5], [0.0, 0.0], 2), _table([0.0, 0.5], [0.0, 0.0], 2)
    out = paired_bootstrap(model, ref, n_boot=4000, seed=2)
    assert out["d_within_auc"] == pytest.approx(0.5)
    assert out["d_within_auc_lb"] == 0.0 and out["d_within_auc_ub"] == 1.0


def test_bootstrap_pairs_users_by_id_not_by_row():
    """The reference table in another row order: differences are still taken user by user."""
    model = _table([0.9, 0.6, 0.5], [1.0, 2.0, 3.0], [2, 3, 5])
    ref = _table([0.5, 0.6, 0.8], [3.0, 2.0, 0.5], [5, 3, 2], users=[2, 1, 0])
    out = paired_bootstrap(model, ref, n_boot=200)
    # AUC: (.9-.8, .6-.6, .5-.5) -> mean .1/3; Brier: (1-.5 + 0 + 0) / 10 days
    assert out["d_within_auc"] == pytest.approx(0.1 / 3)
    assert out["d_brier"] == pytest.approx(0.05)


def test_bootstrap_auc_mean_skips_users_without_an_auc():
    """Ten users, five without an AUC and five whose difference is .5: the mean over users with
    an AUC is .5 in every resample that has one (all ten drawn without one: p 1/1024 < 2.5%)."""
    auc_m = [0.9, np.nan] * 5
    auc_r = [0.4, np.nan] * 5
    out = paired_bootstrap(_table(auc_m, [0.0] * 10, 3), _table(auc_r, [0.0] * 10, 3), n_boot=4000)
    assert out["d_within_auc"] == pytest.approx(0.5)
    assert out["d_within_auc_lb"] == pytest.approx(0.5)
    assert out["d_within_auc_ub"] == pytest.approx(0.5)


def test_bootstrap_auc_with_one_valid_user_in_the_resample():
    """Users: A difference .5, B none. Resamples AA (1/4) and AB (1/2) -> .5, BB (1/4) -> no AUC,
    counted 0. The 40th-60th percentiles lie in the .5 block (dividing AB by both users would
    give .25)."""
    model = _table([0.9, np.nan], [0.0, 0.0], 3)
    ref = _table([0.4, np.nan], [0.0, 0.0], 3)
    out = paired_bootstrap(model, ref, n_boot=4000, seed=3, ci_prob=0.2)
    assert out["d_within_auc_lb"] == pytest.approx(0.5)
    assert out["d_within_auc_ub"] == pytest.approx(0.5)


def test_bootstrap_without_any_auc_has_no_interval():
    """Regression: with no user having an AUC, the point difference was NaN but its interval
    [0, 0], a claim of no difference; now the interval is NaN too."""
    t = _table([np.nan, np.nan], [1.0, 2.0], 3)
    out = paired_bootstrap(t, t, n_boot=100)
    assert math.isnan(out["d_within_auc"])
    assert math.isnan(out["d_within_auc_lb"]) and math.isnan(out["d_within_auc_ub"])
    assert out["d_brier"] == out["d_brier_lb"] == out["d_brier_ub"] == 0.0


# --- weight recovery and stability --------------------------------------------------------------


def _weights() -> pd.DataFrame:
    """Four cells; ROPE is .2. Truth: u1/a .3 (on the interval's lower end), u1/b .2 (on its
    upper end, not clear of the ROPE), u2/a .2 (called trigger: a false trigger, <= ROPE),
    u2/b -.5 (outside its interval, clear, wrong sign)."""
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2"],
            "feature": ["a", "b", "a", "b"],
            "mean": [0.5, 0.1, 0.4, 0.1],
            "ci_lb": [0.3, -0.4, 0.1, 0.0],
            "ci_ub": [0.7, 0.2, 0.6, 0.4],
            "ci_prob": 0.9,
            "class": ["trigger", "unclear", "trigger", "unclear"],
        }
    )


TRUTH = {"weights": {"u1": {"a": 0.3, "b": 0.2, "c": 9.0}, "u2": {"a": 0.2, "b": -0.5}}}


def test_weight_recovery_by_hand():
    rec = weight_recovery(_weights(), TRUTH)
    assert rec["n_cells"] == 4.0 and rec["ci_prob"] == 0.9
    # errors .2, -.1, .2, .6 -> mean square (.04 + .01 + .04 + .36) / 4 = .1125
    assert rec["rmse"] == pytest.approx(math.sqrt(0.1125))
    assert rec["coverage"] == 0.75  # ends of the interval count as covered
    assert rec["coverage_by_feature"] == {"a": 1.0, "b": 0.5}
    # clear of the ROPE (|w| > .2, strictly): u1/a (sign right) and u2/b (wrong)
    assert rec["sign_accuracy"] == 0.5
    # called trigger: u1/a (.3, real) and u2/a (.2 <= ROPE: false)
    assert rec["false_trigger_rate"] == 0.5 and rec["n_triggers_called"] == 2.0


def test_weight_recovery_counts_right_signs():
    """Clear cells u1/a (right) and u2/b (wrong) plus u3/b (-.4 with mean -.1: right): 2 of 3."""
    w = pd.concat([_weights(), _weights().iloc[[3]].assign(user_id="u3", mean=-0.1)])
    rec = weight_recovery(w, {"weights": {**TRUTH["weights"], "u3": {"b": -0.4}}})
    assert rec["sign_accuracy"] == pytest.approx(2 / 3)


def test_weight_recovery_with_nothing_clear_or_called():
    w = _weights().iloc[[1]].assign(**{"class": "unclear"})
    rec = weight_recovery(w, TRUTH)
    assert math.isnan(rec["sign_accuracy"])
    assert rec["false_trigger_rate"] == 0.0 and rec["n_triggers_called"] == 0.0
    assert rec["coverage"] == 1.0 and rec["rmse"] == pytest.approx(0.1)


def test_weight_stability_matches_cells_by_user_and_feature():
    """Rows in another order and one cell only in the full fit (dropped). Half (1, 2, 3) vs full
    (1, 3, 2): mean |change| 2/3; Pearson: deviations (-1, 0, 1) and (-1, 1, 0) -> 1 / 2."""
    half = pd.DataFrame({"user_id": ["u", "u", "v"], "feature": ["a", "b", "a"], "mean": [1, 2, 3]})
    full = pd.DataFrame(
        {
            "user_id": ["v", "u", "u", "w"],
            "feature": ["a", "b", "a", "a"],
            "mean": [2.0, 3.0, 1.0, 50.0],
        }
    )
    s = weight_stability(half, full)
    assert s["mean_abs_change"] == pytest.approx(2 / 3)
    assert s["correlation"] == pytest.approx(0.5)


@pytest.mark.parametrize("constant", ["half", "full"])
def test_weight_stability_correlation_undefined_for_a_constant_side(constant):
    varying = pd.DataFrame({"user_id": ["u", "u"], "feature": ["a", "b"], "mean": [0.1, 0.5]})
    flat = varying.assign(mean=0.3)
    half, full = (flat, varying) if constant == "half" else (varying, flat)
    s = weight_stability(half, full)
    assert math.isnan(s["correlation"]) and s["mean_abs_change"] == pytest.approx(0.2)
