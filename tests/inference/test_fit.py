"""Small real NUTS fits: exports, confidence, prediction, save/load, gate flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from hbm.data.diary import Diary, split_by_time
from hbm.data.exposures import exposures
from hbm.errors import FitError
from hbm.inference.diagnostics import Gate, diagnose
from hbm.inference.fitting import SamplerConfig, fit
from hbm.model.build import build_model, choose_centring
from hbm.model.simulation import SimulationConfig, simulate
from hbm.results import io
from hbm.results.prediction import predict
from hbm.results.tables import CLASSES, build_exports, classify

DAYS = [5, 15, 30, 60, 100, 150, 200, 200]


def _truncated_cohort(priors):
    cohort = simulate(priors, SimulationConfig(n_users=8, n_days=200, heterogeneity=0.5, seed=2))
    data = cohort.diary.data
    rank = data.groupby("user_id").cumcount()
    limit = data["user_id"].map(dict(zip(cohort.diary.users, DAYS, strict=True)))
    kept = data[rank < limit].reset_index(drop=True)
    return Diary(kept, cohort.diary.columns, "<test>", cohort.diary.report), cohort.truth


@pytest.fixture(scope="module")
def small_fit(small_priors_module):
    diary, _ = _truncated_cohort(small_priors_module)
    design = exposures(diary, small_priors_module)
    cfg = SamplerConfig(chains=2, tune=300, draws=300, seed=5, progressbar=False)
    return fit(design, small_priors_module, cfg, data_sha256=diary.sha256), diary


@pytest.fixture(scope="module")
def small_priors_module(tmp_path_factory):
    from hbm.data.priors import load_priors

    from ..conftest import small_priors_doc, write_priors

    return load_priors(write_priors(tmp_path_factory.mktemp("p"), small_priors_doc()))


def test_fit_tree_has_groups_and_provenance(small_fit):
    result, diary = small_fit
    tree = result.tree
    for group in ("posterior", "sample_stats", "constant_data", "observed_data"):
        assert group in tree.children, group
    attrs = tree.attrs
    assert attrs["nuts_sampler"] == "nutpie"
    assert attrs["sampled_likelihood"] == "fused"
    assert attrs["jax_platform"] == attrs["numpyro_chain_method"] == "not used"
    assert attrs["seed"] == 5
    assert attrs["data_sha256"] == diary.sha256
    assert json.loads(attrs["priors_json"])["variables"][0]["key"] == "screen_hours"
    assert "pymc" in json.loads(attrs["versions"])
    assert set(json.loads(attrs["centering"])) == set(result.priors.keys)
    assert not any(str(g).startswith("warmup_") for g in tree.children)
    assert set(tree["constant_data"].data_vars) == {"x", "user_index", "centring_z", "centring_za"}
    # sampled in the fused form; y is read out in the pointwise one when asked (with_predictive)
    np.testing.assert_array_equal(tree["observed_data"]["y"].values, result.design.y)
    assert {"a", "w"} <= set(tree["posterior"].data_vars)
    steps = json.loads(attrs["leapfrog_steps"])
    assert steps == result.leapfrog_steps
    assert min(steps["pilot"], steps["warmup"], steps["draws"]) > 0
    prov = result.provenance  # the attrs read back in one place
    assert (prov.leapfrog_steps, prov.seed, prov.max_treedepth) == (steps, 5, 8)
    assert (
        prov.pilot_users == list(result.design.users)
        and prov.reliable == result.diagnostics.reliable
    )


def test_log_likelihood_and_predictive_draws_are_the_pointwise_models(small_fit):
    """hbm's kernel against PyMC's own log-likelihood of the pointwise model (``y``), on the
    same thinned draws; the predictive outcomes' rate against the model's, and by seed."""
    import pymc as pm

    from hbm.inference.predictive import with_predictive

    result, _ = small_fit
    assert "log_likelihood" not in result.tree.children  # computed when asked, not by the fit
    tree = with_predictive(result.tree)
    ll = tree["log_likelihood"]["y"]
    thin = tree["posterior"].to_dataset().sel(draw=ll["draw"])
    # the fit keeps a and w, not the raw variables behind them; in the centred form the raw
    # variables are a and w themselves
    centred = choose_centring(result.design, result.priors, "centred")
    pointwise = build_model(result.design, result.priors, result.pooling, centred)
    thin = thin.assign(za=thin["a"], z=thin["w"])
    ref = pm.compute_log_likelihood(
        xr.DataTree.from_dict({"posterior": thin}),
        model=pointwise,
        extend_inferencedata=False,
        progressbar=False,
    )
    assert ll.dtype == np.float32 and ll.dims == ("chain", "draw", "obs")
    np.testing.assert_allclose(ll.values, ref["y"].transpose(*ll.dims).values, atol=2e-5)
    # P(y = 1) of each row and draw, from the log-mass of the observed outcome
    p_obs = np.exp(ref["y"].values)
    p1 = np.where(result.design.y == 1, p_obs, 1.0 - p_obs)
    y_rep = tree["posterior_predictive"]["y"].values
    assert y_rep.dtype == np.int8 and y_rep.shape == p1.shape
    z = (y_rep.sum() - p1.sum()) / np.sqrt((p1 * (1.0 - p1)).sum())
    assert abs(z) < 4.0
    # the fit's own settings (attrs): the same draws again; another seed, other outcomes
    np.testing.assert_array_equal(with_predictive(result.tree)["posterior_predictive"]["y"], y_rep)
    other = with_predictive(result.tree, seed=result.config.seed + 1)["posterior_predictive"]["y"]
    assert (other.values != y_rep).any()
    assert ll.sizes["chain"] * ll.sizes["draw"] <= result.config.predictive_draws
    fewer = with_predictive(result.tree, max_draws=10)["log_likelihood"]["y"]
    assert fewer.sizes["chain"] * fewer.sizes["draw"] <= 10


def test_the_fit_keeps_a_and_w_in_float32_and_not_their_raw_variables(small_fit):
    result, _ = small_fit
    post = result.tree["posterior"]
    assert not {"z", "za"} & set(post.data_vars)
    assert {"a0", "sigma_a", "mu", "tau", "a", "w"} <= set(post.data_vars)
    assert all(post[v].dtype == np.float32 for v in post.data_vars)
    assert result.tree["observed_data"]["y"].dtype == np.int8
    np.testing.assert_array_equal(result.tree["observed_data"]["y"].values, result.design.y)


@pytest.mark.fits
def test_pilot_reads_a_seeded_subset_of_a_large_cohort(small_priors_module, monkeypatch):
    import hbm.inference.pilot as pilot_module

    diary, _ = _truncated_cohort(small_priors_module)
    design = exposures(diary, small_priors_module)
    assert pilot_module.pilot_design(design, seed=1) is design  # 8 users: all of them
    monkeypatch.setattr(pilot_module, "PILOT_MAX_USERS", 3)
    first, again = pilot_module.pilot_design(design, 1), pilot_module.pilot_design(design, 1)
    assert len(first.users) == 3 and first.users == again.users
    assert set(first.users) <= set(design.users)
    cfg = SamplerConfig(chains=2, tune=100, draws=100, seed=1, progressbar=False, max_treedepth=2)
    result = fit(design, small_priors_module, cfg)
    assert json.loads(result.tree.attrs["pilot_users"]) == list(first.users)
    assert result.timings["pilot_compile_s"] > 0
    # the main fit stops at depth 2 (3 steps); the pilot keeps its own depth and goes further
    assert int(result.tree["sample_stats"]["n_steps"].max()) <= 3
    pilot_iterations = pilot_module.PILOT_CHAINS * (
        pilot_module.PILOT_TUNE + pilot_module.PILOT_DRAWS
    )
    assert result.leapfrog_steps["pilot"] > 3 * pilot_iterations
    assert result.tree.attrs["pilot_max_treedepth"] == pilot_module.PILOT_MAX_TREEDEPTH == 10
    assert result.tree["posterior"]["w"].sizes["user"] == len(design.users)


def test_numpyro_runs_chains_in_parallel_only_with_a_device_per_chain():
    # the CPU shows XLA_HOST_DEVICES devices (the numpyro backend sets the flag before JAX
    # starts); one GPU shows one device, and its chains share each gradient call instead of
    # queueing. A fresh process: the first JAX computation fixes the device count for good.
    code = (
        "from hbm.inference.backends import XLA_HOST_DEVICES as n, numpyro_chain_method as m; "
        "print(m(4), m(n), m(n + 1))"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["parallel", "parallel", "vectorized"], out.stderr


@pytest.mark.heavy
@pytest.mark.fits
def test_every_backend_stops_trajectories_at_max_treedepth(small_priors_module):
    # a depth this low binds on every draw: the limit reaches nutpie, PyMC's NUTS and numpyro,
    # and each backend's own record of it is counted
    diary, _ = _truncated_cohort(small_priors_module)
    design = exposures(diary, small_priors_module)
    for backend in ("nutpie", "pymc", "numpyro"):
        cfg = SamplerConfig(
            backend=backend,
            chains=2,
            tune=30,
            draws=20,
            seed=3,
            progressbar=False,
            max_treedepth=2,
            extend_budget_s=0,  # the 40 draws counted below, not a second try's 80
        )
        result = fit(design, small_priors_module, cfg, parameterization="noncentred")
        stats = result.tree["sample_stats"]
        assert int(stats["n_steps"].max()) <= 3, backend
        assert 0 < result.diagnostics.max_treedepth_hits <= 40, backend
        assert result.tree.attrs["max_treedepth"] == 2
        assert json.loads(result.tree.attrs["sampler_config"])["max_treedepth"] == 2


def test_max_treedepth_hits_reads_each_backends_statistics():
    from hbm.inference.diagnostics import max_treedepth_hits

    flags = xr.Dataset({"maxdepth_reached": ("draw", [True, False, True])})
    assert max_treedepth_hits(flags) == 2
    pymc_flags = xr.Dataset({"reached_max_treedepth": ("draw", [False, True])})
    assert max_treedepth_hits(pymc_flags) == 1
    depths = xr.Dataset({"tree_depth": ("draw", [3, 8, 8, 7])})
    assert max_treedepth_hits(depths, 8) == 2
    assert max_treedepth_hits(depths) == -1
    with pytest.raises(FitError, match="max_treedepth"):
        SamplerConfig(max_treedepth=0).check()


@pytest.mark.heavy
@pytest.mark.fits
def test_sbc_completes_every_simulation(small_priors_module):
    # pm.sample rewrites the `nuts` dict it is handed and simuk hands the same dict to every fit:
    # with target_accept beside it, the second fit failed ("defined twice")
    from hbm.inference.sbc import run_sbc

    cohort = simulate(small_priors_module, SimulationConfig(n_users=3, n_days=20, seed=3))
    cfg = SamplerConfig(backend="pymc", chains=2, tune=20, draws=20, progressbar=False)
    design = exposures(cohort.diary, small_priors_module)
    res = run_sbc(design, small_priors_module, n_simulations=3, config=cfg, bins=2, max_w=1)
    assert res.ranks.sizes["simulation"] == 3


def test_draws_follow_the_recorded_centring(small_priors_module):
    """The main fit samples with the pilot's centring, not the pilot's non-centred form.

    nutpie reuses the pilot's compiled model with new data; if the update were lost, the draws
    of ``a`` would be ``a0 + sigma_a * za`` instead of the partially centred transform. The raw
    variables are kept on request only (``compact=False``, draws as sampled, float64).
    """
    diary, _ = _truncated_cohort(small_priors_module)
    cfg = SamplerConfig(chains=2, tune=150, draws=100, seed=5, progressbar=False, compact=False)
    result = fit(exposures(diary, small_priors_module), small_priors_module, cfg)
    post = result.tree["posterior"].to_dataset()
    lam = result.tree["constant_data"]["centring_za"].values
    np.testing.assert_array_equal(lam, result.centring.intercepts)
    assert lam.max() > 0.5  # some intercepts are mostly centred, so the two forms differ
    a0, sa = post["a0"].values[..., None], post["sigma_a"].values[..., None]
    expected = a0 + sa ** (1 - lam) * (post["za"].values - lam * a0)
    np.testing.assert_allclose(post["a"].values, expected, rtol=1e-9, atol=1e-9)
    lam_w = result.tree["constant_data"]["centring_z"].values
    np.testing.assert_array_equal(lam_w, result.centring.weights)
    mu, tau = post["mu"].values[..., None, :], post["tau"].values[..., None, :]
    expected_w = mu + tau ** (1 - lam_w) * (post["z"].values - lam_w * mu)
    np.testing.assert_allclose(post["w"].values, expected_w, rtol=1e-9, atol=1e-9)


def test_exports_tables(small_fit):
    result, _ = small_fit
    ex = build_exports(result, ci_prob=0.8, ci_kind="hdi")
    w = ex.weights
    assert len(w) == 8 * 3
    assert (w["ci_lb"] <= w["mean"]).all() and (w["mean"] <= w["ci_ub"]).all()
    assert set(w["class"]) <= set(CLASSES)
    assert (w["ci_prob"] == 0.8).all() and (w["ci_kind"] == "hdi").all()
    np.testing.assert_allclose(w["odds_ratio_lb"], np.exp(w["ci_lb"]))
    assert w["reliable"].eq(result.diagnostics.reliable).all()
    pop = ex.population
    assert list(pop["feature"]) == list(result.priors.keys)
    assert {"mu_mean", "mu_ci_lb", "tau_mean", "tau_ci_ub", "p_tau_above_0.3"} <= set(pop.columns)
    users = ex.users
    assert list(users["days_logged"]) == DAYS
    assert users["attacks"].sum() == int(result.design.y.sum())
    assert len(ex.profiles) == 8
    prof = ex.profiles[0]
    assert set(prof) >= {
        "user_id",
        "trigger_weights",
        "top_triggers",
        "personalization_confidence",
        "reliable",
    }
    assert set(prof["trigger_weights"]) == {"environmental", "lifestyle"}
    assert {"name", "category", "weight", "odds_ratio", "odds_ratio_ci", "class"} <= set(
        prof["top_triggers"][0]
    )


def test_confidence_rises_with_days_logged(small_fit):
    result, _ = small_fit
    users = build_exports(result).users
    rho = stats.spearmanr(users["days_logged"], users["confidence"]).statistic
    assert rho > 0.7, users[["days_logged", "confidence"]]
    assert users["confidence"].iloc[0] < 0.15  # 5 days: barely more than a new user
    assert users["confidence"].between(0, 1).all()


def test_classify_against_rope():
    lb = np.array([0.3, -0.9, -0.1, -0.5])
    ub = np.array([0.9, -0.3, 0.1, 0.5])
    assert list(classify(lb, ub, 0.2)) == ["trigger", "protector", "no association", "uncertain"]


def test_predict_known_and_unseen_users(small_fit, small_priors_module):
    result, _ = small_fit
    new = simulate(small_priors_module, SimulationConfig(n_users=2, n_days=20, seed=99))
    # rename the new users so one is known (u001) and one is not
    data = new.diary.data.copy()
    data["user_id"] = data["user_id"].map({"u001": "u001", "u002": "stranger"})
    unseen = Diary(data, new.diary.columns, "<new>", new.diary.report)
    table = predict(result.tree, unseen, seed=1)
    assert len(table) == 40
    assert table.groupby("user_id")["known_user"].first().to_dict() == {
        "stranger": False,
        "u001": True,
    }
    assert table["risk_mean"].between(0, 1).all()
    assert (table["risk_lb"] <= table["risk_mean"]).all()
    # a stranger's risk interval includes the between-user spread: wider than a known user's
    width = (table["risk_ub"] - table["risk_lb"]).groupby(table["user_id"]).mean()
    assert width["stranger"] > width["u001"]
    again = predict(result.tree, unseen, seed=1)
    pd.testing.assert_frame_equal(table, again)


def test_save_load_round_trip_keeps_attrs(tmp_path, small_fit):
    result, _ = small_fit
    path = io.save_fit(result.tree, tmp_path / "fit.nc")
    loaded = io.load_fit(path)
    assert loaded.attrs["priors_json"] == result.tree.attrs["priors_json"]
    np.testing.assert_array_equal(loaded.posterior["w"].values, result.tree.posterior["w"].values)
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_gate_flags_short_runs(small_fit):
    result, _ = small_fit
    strict = diagnose(result.tree, Gate(min_ess_bulk=1e9))
    assert not strict.reliable
    assert any("bulk ESS" in r for r in strict.reasons)


def test_temporal_split_design_reuses_centering(small_fit, small_priors_module):
    _, diary = small_fit
    train, test = split_by_time(diary)
    d_train = exposures(train, small_priors_module)
    d_test = exposures(test, small_priors_module, exposure_means=d_train.exposure_means)
    assert d_test.exposure_means == d_train.exposure_means


def test_a_user_with_no_days_has_confidence_near_zero(small_fit):
    from hbm.results.tables import cold_start_weights, new_user_confidence

    result, _ = small_fit
    assert new_user_confidence(result.tree) < 0.1  # 0 up to Monte Carlo error of the variances
    w_new = cold_start_weights(result.tree, seed=1)
    assert set(w_new.dims) == {"chain", "draw", "feature"}


def test_a_saved_fit_loads_with_the_groups_arviz_expects(small_fit, tmp_path):
    """fit.nc stores neither the log-likelihood nor the predictive draws; ``hbm.load_fit``
    computes them from what it stores, equal to those of the fit in memory, so LOO is too."""
    import arviz as az

    import hbm
    from hbm.inference.predictive import with_predictive
    from hbm.results import io

    result, _ = small_fit
    path = io.save_fit(with_predictive(result.tree), tmp_path / "fit.nc")
    with xr.open_datatree(path, engine="netcdf4") as stored:
        assert not {"log_likelihood", "posterior_predictive"} & set(stored.children)
        assert stored["posterior"]["w"].dtype == np.float32
    loaded = hbm.load_fit(path)
    here = with_predictive(result.tree)
    for group in ("log_likelihood", "posterior_predictive"):
        np.testing.assert_array_equal(loaded[group]["y"].values, here[group]["y"].values)
    assert loaded.attrs == {k: v for k, v in result.tree.attrs.items()}
    with warnings.catch_warnings():
        # a small fit has influential rows (Pareto k > 0.6): LOO is compared, not trusted, here
        warnings.filterwarnings("ignore", "Estimated shape parameter of Pareto", UserWarning)
        assert az.loo(loaded).elpd == pytest.approx(az.loo(here).elpd, abs=1e-9)
