"""Model structure, the centring rule and the pooling variants (no sampling)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pymc as pm
import pytest

from hbm.data.exposures import exposures, select_rows
from hbm.errors import FitError
from hbm.model.build import (
    build_model,
    centring,
    choose_centring,
    weight_standard_errors,
)
from hbm.model.likelihood import quantize_exposures
from hbm.model.simulation import SimulationConfig, simulate

# Every test here compiles a model or samples: left out of mutation runs.
pytestmark = pytest.mark.fits


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
    with pytest.raises(FitError, match="layout 'rows'"):
        build_model(design, small_priors, likelihood="fused", layout="rows")  # type: ignore[arg-type]
    with pytest.raises(FitError, match="do not match"):
        build_model(design, priors)
    x = design.x.copy()
    x[3, 1] = np.nan
    with pytest.raises(FitError, match=f"row 3, feature '{design.features[1]}' \\(nan\\)"):
        build_model(replace(design, x=x), small_priors)


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


def test_partial_centring_matches_its_formula(design, small_priors):
    """``raw ~ Normal(lam * mu, tau**lam)``, ``w = mu + tau**(1 - lam) * (raw - lam * mu)`` per
    cell, for centrings strictly between 0 and 1 as well as at the ends (the model computes
    ``tau**lam`` as ``exp(lam * log tau)``)."""
    from scipy.stats import norm

    rng = np.random.default_rng(4)
    cen = choose_centring(design, small_priors, "noncentred")
    lam = rng.uniform(0, 1, cen.weights.shape)
    lam[0], lam[1] = 0.0, 1.0
    cen = replace(cen, weights=lam)
    model = build_model(design, small_priors, centring=cen)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    outs = model.replace_rvs_by_values([model["w"], model.logp(vars=[model["z"]], sum=False)[0]])
    w, z_logp = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")(point)
    mu, tau, raw = point["mu"], np.exp(point["tau_log__"]), point["z"]
    np.testing.assert_allclose(w, mu + tau ** (1 - lam) * (raw - lam * mu), rtol=1e-12)
    np.testing.assert_allclose(z_logp, norm.logpdf(raw, lam * mu, tau**lam), rtol=1e-12)


def test_unknown_parameterization(design, small_priors):
    with pytest.raises(FitError, match="parameterization 'diagonal'"):
        choose_centring(design, small_priors, "diagonal")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pooling", "parameterization"),
    [
        ("partial", "auto"),
        # the other forms build and compile models of their own: tens of seconds each
        pytest.param("partial", "centred", marks=pytest.mark.heavy),
        pytest.param("partial", "noncentred", marks=pytest.mark.heavy),
        pytest.param("none", "auto", marks=pytest.mark.heavy),
        pytest.param("complete", "auto", marks=pytest.mark.heavy),
    ],
)
def test_fused_and_pointwise_likelihoods_give_one_log_density(
    small_priors, pooling, parameterization
):
    cohort = simulate(small_priors, SimulationConfig(n_users=5, n_days=80, seed=3))
    full = exposures(cohort.diary, small_priors)
    # a ragged diary (one user loses 37 days, one has none left) whose rows are not grouped by user
    keep = np.ones(full.n_obs, dtype=bool)
    keep[np.flatnonzero(full.user_index == 2)[:37]] = False
    keep[full.user_index == 4] = False
    design = select_rows(full, keep)
    perm = np.random.default_rng(1).permutation(design.n_obs)
    fields = ("x", "exposure", "y", "user_index", "dates")
    design = replace(design, **{f: getattr(design, f)[perm] for f in fields})
    assert np.any(np.diff(design.user_index) < 0)
    cen = choose_centring(design, small_priors, parameterization)
    models = [
        build_model(design, small_priors, pooling, cen, lik) for lik in ("pointwise", "fused")
    ]
    assert "y" in models[0].named_vars and "y" not in models[1].named_vars
    # stored narrow (pm.Data would have cast them back to float64 and int64)
    assert [models[1][k].dtype for k in ("x_by_user", "y_by_user")] == ["int16", "float32"]
    # both forms read the exposures as 16-bit codes x scale
    codes, scale = quantize_exposures(design.x)
    np.testing.assert_array_equal(models[0]["x"].get_value(), codes * scale)
    rng = np.random.default_rng(0)
    for _ in range(3):
        init = models[0].initial_point().items()
        point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in init}
        logps = [float(m.compile_logp()(point)) for m in models]
        grads = [m.compile_dlogp()(point) for m in models]
        # the fused kernel's rows are float32 arithmetic (hbm.model.likelihood)
        assert logps[0] == pytest.approx(logps[1], rel=1e-7)
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5)
    # the likelihood term equals PyMC's own Bernoulli(logit_p) on the same predictor
    m = models[0]
    outs = m.replace_rvs_by_values([m["a"], m["w"]])
    a, w = m.compile_fn(outs, inputs=m.value_vars, on_unused_input="ignore")(point)

    def bernoulli(x):
        eta = a[design.user_index] + (x * w[design.user_index]).sum(-1)
        return float(pm.logp(pm.Bernoulli.dist(logit_p=eta), design.y).sum().eval())

    expected = bernoulli(codes * scale)
    assert float(m.compile_logp(vars=[m["y"]])(point)) == pytest.approx(expected, rel=1e-12)
    fused = models[1]
    assert float(fused.compile_logp(vars=[fused["loglik"]])(point)) == pytest.approx(
        expected, rel=1e-7
    )
    # against the exposures before rounding to codes, the log density moves by < 1e-5
    assert bernoulli(design.x) == pytest.approx(expected, rel=1e-5)


def test_outcome_draws_are_bernoulli(design, small_priors):
    """Prior-predictive outcomes are Bernoulli(invlogit(a[u] + x . w[u])) of the drawn parameters:
    their total over 200 draws matches the summed probabilities computed here (binomial z)."""
    model = build_model(design, small_priors)
    a, w, y = pm.draw([model["a"], model["w"], model["y"]], draws=200, random_seed=1)
    assert set(np.unique(y)) <= {0, 1}
    u = design.user_index
    eta = a[:, u] + np.einsum("ok,dok->do", design.x, w[:, u, :])
    p = 1.0 / (1.0 + np.exp(-eta))
    z = (y.sum() - p.sum()) / np.sqrt((p * (1 - p)).sum())
    assert abs(z) < 4
    # and draw by draw: a draw with a higher summed probability has more attacks
    assert np.corrcoef(y.sum(axis=1), p.sum(axis=1))[0, 1] > 0.9


@pytest.mark.heavy
def test_fused_model_under_jax_autodiff_matches_numba(design, small_priors):
    """numpyro differentiates the fused model with JAX (``jax.grad`` of PyMC's jaxified log
    density, through the operation's own derivative): same value and gradient as numba's."""
    import jax
    from pymc.sampling.jax import get_jaxified_logp

    from hbm.model.likelihood import register_jax

    register_jax()
    model = build_model(design, small_priors, likelihood="fused")  # blocked layout, numba's
    jax_model = build_model(design, small_priors, likelihood="fused", layout="feature")  # numpyro's
    rng = np.random.default_rng(4)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    values = [point[v.name] for v in jax_model.value_vars]
    logp = get_jaxified_logp(jax_model)  # PyMC: negative_logp=True gives the log density itself
    value, grads = jax.value_and_grad(logp)(values)
    got = np.concatenate([np.ravel(g) for g in grads])
    # JAX's version is float64 throughout: the pointwise form's values; numba's rows are float32
    pointwise = build_model(design, small_priors)
    assert float(value) == pytest.approx(float(pointwise.compile_logp()(point)), rel=1e-12)
    np.testing.assert_allclose(got, pointwise.compile_dlogp()(point), rtol=1e-9)
    assert float(value) == pytest.approx(float(model.compile_logp()(point)), rel=1e-7)
    np.testing.assert_allclose(got, model.compile_dlogp()(point), rtol=1e-5, atol=1e-5)
