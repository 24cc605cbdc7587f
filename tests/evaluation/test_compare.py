"""Baselines, held-out metrics, splits, the comparison command and the go / no-go."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import special

from hbm.app.cli import main
from hbm.data.diary import split_by_time
from hbm.data.exposures import exposures
from hbm.errors import EXIT_INPUT
from hbm.evaluation.baselines import MODELS, SEED_FIXED_BIAS, fit_model, seed_fixed_logit
from hbm.evaluation.compare import first_part, temporal_designs, users_designs
from hbm.evaluation.decide import decide
from hbm.evaluation.metrics import (
    expected_calibration_error,
    paired_bootstrap,
    per_user_scores,
    scores,
    weight_stability,
)
from hbm.model.simulation import SimulationConfig, simulate
from hbm.results import io

from ..conftest import FIT_ARGS, REPO, write_priors
from .priors_docs import clustering_priors_doc


@pytest.fixture(scope="module")
def cohort(priors):
    return simulate(priors, SimulationConfig(n_users=6, n_days=80, heterogeneity=0.6, seed=8))


def test_seed_fixed_is_the_documented_formula(priors, cohort):
    d = exposures(cohort.diary, priors)
    groups = np.array([f.group for f in priors.features])
    g = {k: d.x[:, groups == k].mean(axis=1) for k in ("stress", "sleep_debt", "hormonal")}
    g["environmental"] = d.x[:, groups == "environmental"].mean(axis=1)
    expected = (
        0.5 * g["stress"]
        + 0.4 * g["sleep_debt"]
        + 0.45 * g["hormonal"]
        + 0.35 * g["environmental"]
        + SEED_FIXED_BIAS
    )
    np.testing.assert_allclose(seed_fixed_logit(d, priors), expected)
    fitted = fit_model("seed-fixed", d, priors)
    np.testing.assert_allclose(fitted.predict(d), special.expit(expected))


def test_temporal_split_keeps_every_row_and_time_order(priors, cohort):
    train, test = temporal_designs(cohort.diary, priors, 0.25)
    assert train.n_obs + test.n_obs == len(cohort.diary.data)
    assert test.n_obs == 6 * 20
    for u in range(len(train.users)):
        assert train.dates[train.user_index == u].max() < test.dates[test.user_index == u].min()
    alone = exposures(split_by_time(cohort.diary, 0.25)[0], priors)
    assert train.exposure_means == alone.exposure_means  # centring from training rows only
    np.testing.assert_array_equal(train.x, alone.x)
    half = first_part(train, 0.5)
    assert half.n_obs == 6 * 30


def test_users_split_holds_out_whole_users(priors, cohort):
    train, test = users_designs(cohort.diary, priors, 0.34, seed=2)
    assert set(train.users).isdisjoint(test.users)
    assert len(test.users) == 2 and train.n_obs + test.n_obs == len(cohort.diary.data)


def test_per_user_metrics_match_hand_counts():
    """Per-user AUC counted over (attack, no-attack) pairs by hand, not by scikit-learn.

    User 0: attacks {.35, .8} vs none {.1, .4}: .35>.1, .35<.4, .8>.1, .8>.4 -> 3/4.
    User 1: attacks {.3, .9} vs none {.3, .65}: tie (1/2), .3<.65, .9>.3, .9>.65 -> 2.5/4.
    User 2: attack {.15} vs none {.25, .45}: both wrong -> 0.
    """
    y = np.array([0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0], dtype=float)
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.3, 0.65, 0.9, 0.15, 0.25, 0.45])
    users = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    table = per_user_scores(y, p, users)
    np.testing.assert_allclose(table["auc"], [0.75, 0.625, 0.0])
    s = scores(y, p, users)
    assert s["within_auc_median"] == pytest.approx(0.625)
    # squared errors by hand: .01 .16 .4225 .04 | .49 .09 .4225 .01 | .7225 .0625 .2025
    assert s["brier"] == pytest.approx(2.6325 / 11)
    # a perfectly calibrated constant: ECE 0; predicting 0.9 for a 0.5 rate: 0.4
    assert expected_calibration_error(np.array([0, 1] * 50), np.full(100, 0.5)) == 0.0
    assert expected_calibration_error(np.array([0, 1] * 50), np.full(100, 0.9)) == pytest.approx(
        0.4
    )


def test_paired_bootstrap_sees_no_difference_and_a_real_one():
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(30), 40)
    y = rng.integers(0, 2, users.size).astype(float)
    noise = rng.random(users.size)
    weak = per_user_scores(y, np.clip(0.5 * noise + 0.1 * y + 0.2, 0, 1), users)
    strong = per_user_scores(y, np.clip(0.5 * noise + 0.4 * y + 0.05, 0, 1), users)
    same = paired_bootstrap(weak, weak)
    assert same["d_within_auc"] == 0 and same["d_within_auc_lb"] == same["d_within_auc_ub"] == 0
    better = paired_bootstrap(strong, weak)
    assert better["d_within_auc_lb"] > 0 and better["d_brier_ub"] < 0


def test_weight_stability():
    a = pd.DataFrame({"user_id": ["u"] * 3, "feature": list("abc"), "mean": [0.1, 0.5, -0.2]})
    b = a.assign(mean=a["mean"] + 0.1)
    s = weight_stability(a, b)
    assert s["mean_abs_change"] == pytest.approx(0.1) and s["correlation"] == pytest.approx(1.0)


@pytest.mark.fits
def test_embedding_trains_predicts_and_is_reproducible(priors, cohort):
    train, test = temporal_designs(cohort.diary, priors, 0.25)
    one = fit_model("embedding", train, priors, seed=3)
    two = fit_model("embedding", train, priors, seed=3)
    p = one.predict(test)
    assert p.shape == (test.n_obs,) and np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(p, two.predict(test), rtol=1e-6)
    assert 1 <= one.info["epochs"] <= 400 and one.info["validation_rows"] == 6 * 12
    _, unseen = users_designs(cohort.diary, priors, 0.34, seed=2)
    assert np.all(np.isfinite(one.predict(unseen)))  # unknown ids: the mean embedding
    for variant in ("embedding-reg", "embedding-prior-init"):
        assert np.all(np.isfinite(fit_model(variant, train, priors, seed=3).predict(test)))


def test_the_embedding_leaves_a_jax_device_per_chain_for_a_later_numpyro_fit():
    # the first JAX computation fixes the process's device count; hbm compare trains the network
    # before it may fit hbm with numpyro, whose chains run in parallel only with a device each
    code = """
import jax
from hbm.data.priors import load_priors
from hbm.evaluation.baselines import fit_model
from hbm.evaluation.compare import temporal_designs
from hbm.inference.backends import XLA_HOST_DEVICES, numpyro_chain_method
from hbm.model.simulation import SimulationConfig, simulate
priors = load_priors("priors/migraine_features.json")
cohort = simulate(priors, SimulationConfig(n_users=3, n_days=40, seed=1))
fit_model("embedding", temporal_designs(cohort.diary, priors, 0.25)[0], priors, seed=3)
print(jax.local_device_count() == XLA_HOST_DEVICES, numpyro_chain_method(4))
"""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert out.stdout.split() == ["True", "parallel"], out.stderr


def _population(p_tau: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"feature": [f"f{i}" for i in range(len(p_tau))], "p_tau_above_0.3": p_tau})


def _comparison(lb: float, brier_lb: float = -0.01) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "model": "hbm",
                "d_within_auc": lb + 0.01,
                "d_within_auc_lb": lb,
                "d_within_auc_ub": lb + 0.02,
                "d_brier": 0.0,
                "d_brier_lb": brier_lb,
                "d_brier_ub": 0.01,
                "boot_ci_prob": 0.95,
            }
        ]
    )


def test_decide_follows_each_criterion():
    users = pd.DataFrame({"days_logged": [365] * 50})
    yes = decide(_population([0.2, 0.99]), users, _comparison(0.01))
    assert yes.personalize and all(yes.checks.values())
    assert not decide(_population([0.2, 0.9]), users, _comparison(0.01)).personalize
    assert not decide(_population([0.99]), users, _comparison(-0.001)).personalize
    assert not decide(_population([0.99]), users, _comparison(0.01, brier_lb=0.001)).personalize
    assert not decide(_population([0.99]), users, None).personalize
    few = decide(_population([0.99]), users.head(10), _comparison(0.01))
    assert not few.personalize and not few.checks["enough_data"]
    assert any("10 users" in r for r in few.reasons)


def test_compare_and_decide_commands(workspace, tmp_path, capsys):
    _, priors, diary, _ = workspace
    out = tmp_path / "cmp"
    models = ["seed-fixed", "hbm", "embedding"]
    args = ["compare", str(diary), "--priors", str(priors), "--out", str(out), *FIT_ARGS]
    assert main([*args, "--models", *models]) == 0
    table = pd.read_csv(out / io.COMPARISON_FILE)
    assert table["model"].tolist() == ["global", *models]
    ref = table.set_index("model").loc["global"]
    assert np.isnan(ref["d_within_auc"])
    assert (
        table.set_index("model").loc["hbm", "d_within_auc_lb"]
        <= table.set_index("model").loc["hbm", "d_within_auc_ub"]
    )
    per_user = pd.read_csv(out / io.PER_USER_METRICS_FILE)
    assert set(per_user["model"]) == set(table["model"]) and len(per_user) == 4 * 5
    recovery = pd.read_csv(out / "recovery.csv")
    assert set(recovery["model"]) == {"global", "hbm"}
    stability = pd.read_csv(out / "stability.csv")
    assert stability["model"].tolist() == ["hbm"]
    assert json.loads((out / "compare.json").read_text())["test_rows"] == 5 * 15
    io.check_run_dir(out / "hbm")
    assert main(["report", str(out / "hbm"), "--days-users", "4"]) == 0
    page = (out / "hbm" / io.REPORT_FILE).read_text()
    assert 'id="comparison-table"' in page and 'data-name="auc_by_model.png"' in page
    capsys.readouterr()
    code = main(["decide", str(out)])
    printed = capsys.readouterr().out
    assert code == 1 and "PERSONALIZE: no" in printed and "5 users" in printed


def test_compare_rejects_unknown_model(tmp_path, capsys):
    """argparse refuses the model before any file is read: exit 2, naming it and the choices."""
    args = ["compare", str(tmp_path / "diary.csv"), "--out", str(tmp_path / "cmp")]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--models", "hbm", "forest"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: argument --models: invalid choice: 'forest' (choose from " in err
    choices = err.split("(choose from ", 1)[1].rstrip(")").replace("'", "").split(", ")
    assert choices == list(MODELS)
    assert not (tmp_path / "cmp").exists()


def test_differences_against_global_and_hbm(workspace, tmp_path):
    _, priors, diary, _ = workspace
    out = tmp_path / "cmp"
    args = ["compare", str(diary), "--priors", str(priors), "--out", str(out), *FIT_ARGS]
    assert main([*args, "--models", "seed-fixed", "hbm", "--no-stability"]) == 0
    diffs = pd.read_csv(out / "differences.csv")
    pairs = set(zip(diffs["model"], diffs["reference"], strict=True))
    assert pairs == {
        ("seed-fixed", "global"),
        ("hbm", "global"),
        ("global", "hbm"),
        ("seed-fixed", "hbm"),
    }
    table = pd.read_csv(out / io.COMPARISON_FILE).set_index("model")
    row = diffs[(diffs["model"] == "hbm") & (diffs["reference"] == "global")].iloc[0]
    assert row["d_brier"] == pytest.approx(table.loc["hbm", "d_brier"])
    back = diffs[(diffs["model"] == "global") & (diffs["reference"] == "hbm")].iloc[0]
    assert back["d_brier"] == pytest.approx(-row["d_brier"])


def test_compare_refuses_origins_below_one_before_reading(tmp_path, capsys):
    args = ["compare", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "cmp")]
    assert main([*args, "--split", "rolling", "--origins", "0"]) == EXIT_INPUT
    assert capsys.readouterr().err == "error: --origins must be at least 1, got 0\n"
    assert not (tmp_path / "cmp").exists()


@pytest.mark.fits
def test_compare_rolling_split_without_clustering(tmp_path):
    """4 users x 40 days, 2 origins (75%, 87.5%): fits on 30 and 35 days per user, each
    forecasting 5; hbm-no-clustering scored on the pooled 10 days per user, with discovery."""
    priors = write_priors(tmp_path, clustering_priors_doc(), "priors.json")
    diary = tmp_path / "diary.csv"
    simulate_args = ["--users", "4", "--days", "40", "--seed", "5", "--priors", str(priors)]
    assert main(["simulate", *simulate_args, "--out", str(diary)]) == 0
    out = tmp_path / "cmp"
    args = ["compare", str(diary), "--priors", str(priors), "--out", str(out), *FIT_ARGS]
    rolling = ["--split", "rolling", "--origins", "2", "--no-stability"]
    assert main([*args, *rolling, "--models", "hbm-no-clustering"]) == 0
    table = pd.read_csv(out / io.COMPARISON_FILE)
    assert table["model"].tolist() == ["global", "hbm-no-clustering"]
    assert (table["split"] == "rolling").all()
    per_user = pd.read_csv(out / io.PER_USER_METRICS_FILE)
    assert (per_user["n_test"] == 10).all() and len(per_user) == 2 * 4
    info = json.loads((out / "compare.json").read_text())
    assert info["split"] == "rolling" and info["test_rows"] == 40 and info["train_rows"] == 140
    origins = info["origins"]
    assert [o["fraction"] for o in origins] == [0.75, 0.875]
    assert [(o["train_rows"], o["test_rows"]) for o in origins] == [(120, 20), (140, 20)]
    assert origins[0]["nuts_seeds"] != origins[1]["nuts_seeds"]
    discovery = pd.read_csv(out / "discovery.csv")
    assert set(discovery["model"]) == {"global", "hbm-no-clustering"}
    cells = discovery.set_index(["model", "kind"])["n_cells"]
    assert cells["hbm-no-clustering", "all"] == cells["global", "all"] == 4 * 3
    assert cells["hbm-no-clustering", "clustering"] == 0 and cells["global", "clustering"] == 4
    listed = json.loads((out / "manifest.json").read_text())["files"]
    assert "discovery.csv" in listed and "recovery.csv" in listed
    assert not (out / "hbm").exists()  # hbm was not compared: no run folder


def test_differences_of_the_reference_alone_are_empty_with_their_key_columns():
    """`hbm compare --models global` fitted, then stopped on a KeyError: no model to compare."""
    from hbm.evaluation.compare import REFERENCE, _differences

    per_user = {REFERENCE: pd.DataFrame({"within_auc": [0.5, 0.6]}, index=["a", "b"])}
    out = _differences(per_user, [REFERENCE], seed=0)
    assert out.empty and list(out.columns) == ["model", "reference"]
    assert out[out["reference"] == REFERENCE].drop(columns="reference").empty
