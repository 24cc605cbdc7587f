"""The go / no-go criteria at their exact boundaries, with the user-facing reasons word for word."""

from __future__ import annotations

import pandas as pd
import pytest

from hbm.evaluation.decide import MIN_MEDIAN_DAYS, MIN_USERS, SPREAD, SPREAD_PROB, decide


def _users(days: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{i}" for i in range(len(days))], "days_logged": days})


def _population(p_tau: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": [f"f{i}" for i in range(len(p_tau))],
            "tau_mean": 0.5,
            "p_tau_above_0.3": p_tau,
        }
    )


def _comparison(auc_lb: float = 0.001, brier_lb: float = -0.0002) -> pd.DataFrame:
    """A compare table: the global reference row first (as `hbm compare` writes it), then hbm."""
    hbm = {
        "model": "hbm",
        "d_within_auc": 0.012,
        "d_within_auc_lb": auc_lb,
        "d_within_auc_ub": 0.023,
        "d_brier": -0.0004,
        "d_brier_lb": brier_lb,
        "d_brier_ub": 0.0007,
        "boot_ci_prob": 0.95,
    }
    glob = {k: (float("nan") if k != "model" else "global") for k in hbm}
    glob["d_within_auc_lb"] = 1.0  # would pass if the wrong row were read
    return pd.DataFrame([glob, hbm])


ENOUGH = _users([90.0] * MIN_USERS)
DIFFER = _population([0.2, 0.97, 0.5, SPREAD_PROB])


def test_constants_are_the_studys():
    assert (MIN_USERS, MIN_MEDIAN_DAYS, SPREAD, SPREAD_PROB) == (20, 90, 0.3, 0.95)


def test_all_criteria_met_at_their_boundaries():
    """20 users, median exactly 90 days, P(tau > .3) exactly .95 for f3, AUC lb > 0 and Brier
    lb exactly 0 (not above zero): personalize."""
    d = decide(_population([0.2, 0.5, 0.6, 0.95]), ENOUGH, _comparison(brier_lb=0.0))
    assert d.personalize is True
    assert d.checks == {"enough_data": True, "users_differ": True, "predicts_better": True}
    assert d.reasons == (
        "data: 20 users, median 90 days (needs >= 20 users and >= 90 days): enough",
        "spread: 1 feature(s) with P(tau > 0.3) >= 0.95 (f3); highest: f3 0.95, f2 0.60, f1 0.50",
        "held-out: within-person AUC hbm - global +0.0120 [+0.0010, +0.0230], Brier -0.00040 "
        "[+0.00000, +0.00070] (95% paired bootstrap over users): better",
    )


def test_nineteen_users_are_not_enough():
    d = decide(DIFFER, _users([365.0] * 19), _comparison())
    assert d.personalize is False
    assert d.checks == {"enough_data": False, "users_differ": True, "predicts_better": True}
    assert d.reasons[0] == (
        "data: 19 users, median 365 days (needs >= 20 users and >= 90 days): not enough"
    )


def test_median_of_89_5_days_is_not_enough():
    d = decide(DIFFER, _users([89.0] * 10 + [90.0] * 10), _comparison())
    assert d.personalize is False and d.checks["enough_data"] is False
    assert d.reasons[0] == (
        "data: 20 users, median 89.5 days (needs >= 20 users and >= 90 days): not enough"
    )


def test_median_not_mean_of_days():
    """Mean 98 days but median 80: not enough (and a median above 90 with a low mean is)."""
    assert not decide(DIFFER, _users([80.0] * 11 + [120.0] * 9), _comparison()).checks[
        "enough_data"
    ]
    assert decide(DIFFER, _users([10.0] * 9 + [91.0] * 11), _comparison()).checks["enough_data"]


def test_spread_just_below_the_probability_fails():
    d = decide(_population([0.9499, 0.2, 0.1, 0.05]), ENOUGH, _comparison())
    assert d.personalize is False
    assert d.checks == {"enough_data": True, "users_differ": False, "predicts_better": True}
    assert d.reasons[1] == (
        "spread: 0 feature(s) with P(tau > 0.3) >= 0.95; highest: f0 0.95, f1 0.20, f2 0.10"
    )


def test_spread_lists_every_strong_feature_and_the_top_three():
    d = decide(DIFFER, ENOUGH, _comparison())
    assert d.reasons[1] == (
        "spread: 2 feature(s) with P(tau > 0.3) >= 0.95 (f1, f3); highest: f1 0.97, f3 0.95, "
        "f2 0.50"
    )


def test_run_without_between_user_sd():
    d = decide(pd.DataFrame({"feature": ["f0"], "mu_mean": [0.1]}), ENOUGH, _comparison())
    assert d.personalize is False and d.checks["users_differ"] is False
    assert d.reasons[1] == "spread: the run has no between-user SD (not a partial-pooling fit)"


def test_auc_lower_bound_exactly_zero_is_not_better():
    d = decide(DIFFER, ENOUGH, _comparison(auc_lb=0.0))
    assert d.personalize is False
    assert d.checks == {"enough_data": True, "users_differ": True, "predicts_better": False}
    assert d.reasons[2] == (
        "held-out: within-person AUC hbm - global +0.0120 [+0.0000, +0.0230], Brier -0.00040 "
        "[-0.00020, +0.00070] (95% paired bootstrap over users): not shown better"
    )


@pytest.mark.parametrize("brier_lb, better", [(0.0, True), (1e-6, False), (-1e-6, True)])
def test_brier_interval_above_zero_blocks(brier_lb, better):
    d = decide(DIFFER, ENOUGH, _comparison(brier_lb=brier_lb))
    assert d.checks["predicts_better"] is better and d.personalize is better


def test_no_comparison_is_no_evidence():
    d = decide(DIFFER, ENOUGH, None)
    assert d.personalize is False and d.checks["predicts_better"] is False
    assert d.reasons[2] == "held-out: no comparison (run `hbm compare`), so no evidence of gain"
    assert len(d.reasons) == 3


def test_comparison_without_hbm_row():
    cmp = _comparison().assign(model=["global", "seed-fixed"])
    d = decide(DIFFER, ENOUGH, cmp)
    assert d.personalize is False and d.checks["predicts_better"] is False
    assert d.reasons[2] == "held-out: the comparison has no 'hbm' row"


def test_reason_reports_the_bootstrap_level():
    cmp = _comparison().assign(boot_ci_prob=0.9)
    assert "(90% paired bootstrap over users): better" in decide(DIFFER, ENOUGH, cmp).reasons[2]


def test_premonitory_and_clustering_spreads_do_not_show_that_users_differ():
    """Issue 21: a premonitory symptom's spread follows each user's attacks, and the clustering
    term is no trigger; only the other features' spreads count, and only they are listed."""
    population = _population([0.99, 0.98, 0.5, 0.4]).assign(
        role=["clustering", "trigger", "trigger", "trigger"],
        premonitory_confound=[False, True, False, False],
    )
    d = decide(population, ENOUGH, _comparison())
    assert d.checks["users_differ"] is False
    assert d.reasons[1] == (
        "spread: 0 feature(s) with P(tau > 0.3) >= 0.95; highest: f2 0.50, f3 0.40"
    )
    # the same spreads on two plain trigger features do count
    plain = population.assign(role="trigger", premonitory_confound=False)
    d = decide(plain, ENOUGH, _comparison())
    assert d.checks["users_differ"] is True
    assert d.reasons[1] == (
        "spread: 2 feature(s) with P(tau > 0.3) >= 0.95 (f0, f1); highest: f0 0.99, f1 0.98, "
        "f2 0.50"
    )
    # a flag stored as text in a CSV ("True"/"False" read back as bool) counts the same
    flagged = population.assign(role="trigger")
    assert (
        decide(flagged, ENOUGH, _comparison())
        .reasons[1]
        .startswith("spread: 1 feature(s) with P(tau > 0.3) >= 0.95 (f0)")
    )
