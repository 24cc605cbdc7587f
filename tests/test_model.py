"""Model structure, the centring rule and the pooling variants (no sampling)."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest

from hbm.errors import FitError
from hbm.features import exposures
from hbm.model import (
    build_model,
    centring,
    choose_centring,
    weight_standard_errors,
)
from hbm.simulate import SimulationConfig, simulate


@pytest.fixture()
def design(small_priors):
    cohort = simulate(small_priors, SimulationConfig(n_users=6, n_days=90, seed=5))
    return exposures(cohort.diary, small_priors)


def test_partial_model_has_named_dims(design, small_priors):
    model = build_model(design, small_priors)
    names = {v.name for v in model.free_RVs}
    assert names == {"a0", "sigma_a", "za", "mu", "tau", "z"}
    assert model.named_vars_to_dims["w"] == ("user", "feature")
    assert model.named_vars_to_dims["a"] == ("user",)
    assert model.named_vars_to_dims["y"] == ("obs",)
    assert list(model.coords["feature"]) == list(small_priors.keys)
    assert list(model.coords["user"]) == list(design.users)


def test_pooling_variants(design, small_priors):
    none = build_model(design, small_priors, "none")
    assert {v.name for v in none.free_RVs} == {"a", "w"}
    complete = build_model(design, small_priors, "complete")
    assert {v.name for v in complete.free_RVs} == {"a0", "sigma_a", "za", "mu"}
    w = pm.draw(complete["w"], random_seed=2)
    assert np.ptp(w, axis=0).max() == 0.0  # every user has the population weights


def test_unknown_pooling_and_mismatched_features(design, small_priors, priors):
    with pytest.raises(FitError, match="pooling 'some'"):
        build_model(design, small_priors, "some")  # type: ignore[arg-type]
    with pytest.raises(FitError, match="do not match"):
        build_model(design, priors)


def test_centring_rule_limits():
    lam = centring(np.array([0.01, 1.0, 100.0, np.inf]), np.array(1.0))
    np.testing.assert_allclose(lam, [1 / (1 + 1e-4), 0.5, 1 / (1 + 1e4), 0.0])


def test_more_days_means_more_centring(small_priors):
    short = simulate(small_priors, SimulationConfig(n_users=4, n_days=30, seed=1))
    long = simulate(small_priors, SimulationConfig(n_users=4, n_days=1000, seed=1))
    se_short = weight_standard_errors(exposures(short.diary, small_priors))
    se_long = weight_standard_errors(exposures(long.diary, small_priors))
    assert (se_long < se_short).all()
    lam_short = choose_centring(exposures(short.diary, small_priors), small_priors).weights
    lam_long = choose_centring(exposures(long.diary, small_priors), small_priors).weights
    assert lam_long.mean() > lam_short.mean()


def test_parameterizations_give_the_same_log_density_of_w(design, small_priors):
    """Every centring is a reparameterization: the prior of w is Normal(mu, tau) in each."""
    draws = {}
    for par in ("centred", "noncentred", "auto"):
        model = build_model(
            design, small_priors, centring=choose_centring(design, small_priors, par)
        )
        w = pm.draw(model["w"], draws=4000, random_seed=1)
        draws[par] = w.std(axis=0).mean()
    assert draws["centred"] == pytest.approx(draws["noncentred"], rel=0.1)
    assert draws["auto"] == pytest.approx(draws["noncentred"], rel=0.1)


def test_unknown_parameterization(design, small_priors):
    with pytest.raises(FitError, match="parameterization 'diagonal'"):
        choose_centring(design, small_priors, "diagonal")  # type: ignore[arg-type]
