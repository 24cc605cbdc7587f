"""The simulator: requested rates and spreads, heterogeneity 0, reproducibility, round trip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from hbm.data.diary import load_diary
from hbm.data.exposures import exposure_prevalence, exposures
from hbm.errors import HBMError
from hbm.model.simulation import SimulationConfig, simulate
from hbm.results import io


@pytest.fixture(scope="module")
def big_cohort(priors):
    return simulate(priors, SimulationConfig(n_users=200, n_days=365, seed=11))


def test_attack_rate_matches_request(big_cohort):
    # a0 is solved for the expected rate; the realised rate over 73,000 days is within 0.01.
    assert big_cohort.diary.data["migraine"].mean() == pytest.approx(0.15, abs=0.01)


def test_between_user_intercept_sd_matches_request(big_cohort):
    a = np.array(list(big_cohort.truth["intercepts"].values()))
    assert np.std(a) == pytest.approx(1.2, abs=0.15)  # 200 draws: SE of the SD is about 0.06
    # and the observed per-user rates spread as that SD implies (logit scale, tolerance 0.25)
    rates = big_cohort.diary.data.groupby("user_id")["migraine"].mean().clip(0.005, 0.995)
    assert np.std(special.logit(rates)) == pytest.approx(1.2, abs=0.3)


def test_binary_prevalences_match_the_priors_file(big_cohort, priors):
    design = exposures(big_cohort.diary, priors)
    prevalence = exposure_prevalence(design)
    checked = 0
    for f in priors.features:
        spec = f.simulation or {}
        if spec.get("kind") == "binary" and "weekend_prevalence" not in spec:
            assert prevalence[f.key] == pytest.approx(spec["prevalence"], abs=0.015), f.key
            checked += 1
        if spec.get("kind") == "binary" and "weekend_prevalence" in spec:
            expected = (5 * spec["prevalence"] + 2 * spec["weekend_prevalence"]) / 7
            assert prevalence[f.key] == pytest.approx(expected, abs=0.02), f.key
            checked += 1
    assert checked >= 4


def test_menstrual_windows_follow_the_cycle(big_cohort):
    data = big_cohort.diary.data
    cycling = [u for u, c in big_cohort.truth["menstruating"].items() if c]
    assert 0.35 < len(cycling) / 200 < 0.65
    per_user = data[data.user_id.isin(cycling)].groupby("user_id")["menstruation"].mean()
    assert per_user.mean() == pytest.approx(3 / 28, abs=0.01)  # days 1-3 of a 28-day cycle
    assert data[~data.user_id.isin(cycling)]["menstruation"].sum() == 0
    # premenstrual days are never menstrual days
    assert not ((data.menstruation == 1) & (data.premenstrual == 1)).any()


def test_weather_is_shared_by_users_of_one_location(big_cohort):
    data = big_cohort.diary.data
    loc = big_cohort.truth["location"]
    same = [u for u in loc if loc[u] == loc["u001"]][:2]
    a = data[data.user_id == same[0]]["temperature"].to_numpy()
    b = data[data.user_id == same[1]]["temperature"].to_numpy()
    np.testing.assert_array_equal(a, b)


def test_heterogeneity_zero_gives_identical_weights(priors):
    cohort = simulate(priors, SimulationConfig(n_users=5, n_days=30, heterogeneity=0.0, seed=3))
    weights = np.array([list(w.values()) for w in cohort.truth["weights"].values()])
    assert np.ptp(weights, axis=0).max() == 0.0
    assert cohort.truth["population"]["tau"] == {k: 0.0 for k in priors.keys}


def test_heterogeneity_sets_every_between_user_sd(priors):
    cohort = simulate(priors, SimulationConfig(n_users=400, n_days=10, heterogeneity=0.6, seed=4))
    weights = np.array([list(w.values()) for w in cohort.truth["weights"].values()])
    np.testing.assert_allclose(weights.std(axis=0), 0.6, atol=0.08)


def test_same_seed_same_cohort_and_loader_accepts_it(tmp_path, priors):
    cfg = SimulationConfig(n_users=3, n_days=20, seed=9)
    one, two = simulate(priors, cfg), simulate(priors, cfg)
    assert one.diary.sha256 == two.diary.sha256
    assert one.truth == two.truth
    out = io.write_cohort(tmp_path / "sim.csv", one.diary.data, one.truth)
    loaded = load_diary(out, priors)
    assert loaded.sha256 == one.diary.sha256
    assert io.truth_path(out).exists()


def test_custom_priors_simulate(small_priors):
    cohort = simulate(small_priors, SimulationConfig(n_users=4, n_days=40, seed=1))
    assert set(cohort.truth["weights"]["u001"]) == {"screen_hours", "chocolate", "pressure_drop"}
    assert cohort.diary.columns == ("screen_hours", "chocolate", "pressure")


def test_invalid_settings_are_refused(priors):
    with pytest.raises(HBMError, match="users must be >= 1"):
        simulate(priors, SimulationConfig(n_users=0))
    with pytest.raises(HBMError, match="attack rate must be in"):
        simulate(priors, SimulationConfig(attack_rate=1.5))
