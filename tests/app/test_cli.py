"""The hbm command end to end on a small cohort: simulate, validate, fit, profile, predict."""

from __future__ import annotations

import json
import tomllib

import pandas as pd
import pytest

from hbm.app.cli import main
from hbm.results import io

from ..conftest import FIT_ARGS


def test_simulate_writes_diary_and_truth(workspace):
    _, _, diary, _ = workspace
    truth = json.loads(io.truth_path(diary).read_text())
    assert set(truth) >= {"population", "intercepts", "weights"}
    assert set(truth["population"]) == {"a0", "sigma_a", "mu", "tau"}


def test_validate_prints_summary(workspace, capsys):
    _, priors, diary, _ = workspace
    assert main(["validate", str(diary), "--priors", str(priors), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["users"] == 5 and summary["rows"] == 300
    assert set(summary["exposure_prevalence"]) == {"screen_hours", "chocolate", "pressure_drop"}


def test_validate_exits_non_zero_on_bad_diary(workspace, tmp_path, capsys):
    _, priors, diary, _ = workspace
    frame = pd.read_csv(diary)
    frame.loc[4, "migraine"] = 7
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    assert main(["validate", str(bad), "--priors", str(priors)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "'migraine'" in err and "line 6" in err


def test_fit_writes_every_export(workspace):
    _, _, _, run = workspace
    for name in io.RUN_FILES:
        assert (run / name).exists(), name
    weights = pd.read_csv(run / "weights.csv")
    assert len(weights) == 5 * 3
    assert pd.read_parquet(run / "weights.parquet").shape == weights.shape
    run_info = json.loads((run / "run.json").read_text())
    assert run_info["nuts_sampler"] == "nutpie" and run_info["seed"] == 3
    assert run_info["command"].startswith("hbm fit")
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    # 150 draws cannot pass the gate: the flag and its reasons travel into every export
    assert diagnostics["reliable"] is False and diagnostics["reasons"]
    assert not weights["reliable"].any()
    assert all(p["reliable"] is False for p in json.loads((run / "profiles.json").read_text()))


def test_strict_exits_non_zero_when_unreliable(workspace, tmp_path, capsys):
    _, priors, diary, _ = workspace
    out = tmp_path / "r"
    code = main(
        [
            "fit",
            str(diary),
            "--priors",
            str(priors),
            "--out",
            str(out),
            "--parameterization",
            "noncentred",
            "--strict",
            *FIT_ARGS,
        ]
    )
    assert code == 3
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    assert diagnostics["reliable"] is False
    assert "fit NOT RELIABLE: " + "; ".join(diagnostics["reasons"]) in capsys.readouterr().out
    # the exports are still written, flagged
    assert not pd.read_csv(out / "users.csv")["reliable"].any()


def test_default_fit_of_a_small_cohort_is_reliable_and_strict_exits_zero(workspace, tmp_path):
    """Smoke fit with the default sampler (4 chains x 1000 draws): a broken gate, sampler or
    export that calls a good fit unreliable (or the reverse) cannot pass silently. Sampler seeds
    1, 2, 3, 5, 7 and 11 all pass here with min bulk ESS 720-1612 and max R-hat <= 1.004."""
    _, priors, diary, _ = workspace
    out = tmp_path / "ok"
    args = ["fit", str(diary), "--priors", str(priors), "--out", str(out), "--seed", "3"]
    assert main([*args, "--no-progress", "--strict"]) == 0
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    assert diagnostics["reliable"] is True and diagnostics["reasons"] == []
    assert diagnostics["chains"] == 4 and diagnostics["draws"] == 1000
    assert diagnostics["max_rhat"] <= 1.01 and diagnostics["min_ess_bulk"] >= 400
    assert diagnostics["divergences"] == 0
    for name in ("population.csv", "weights.csv", "users.csv"):
        assert pd.read_csv(out / name)["reliable"].all(), name
    profiles = json.loads((out / "profiles.json").read_text())
    assert all(p["reliable"] is True and p["reliability_reasons"] == [] for p in profiles)


def test_same_inputs_and_seed_give_byte_identical_weights(workspace, tmp_path):
    _, priors, diary, run = workspace
    again = tmp_path / "again"
    assert main(["fit", str(diary), "--priors", str(priors), "--out", str(again), *FIT_ARGS]) == 0
    assert (again / "weights.csv").read_bytes() == (run / "weights.csv").read_bytes()


@pytest.mark.fits
def test_a_fit_rerun_from_its_recorded_config_gives_byte_identical_weights(workspace, tmp_path):
    _, priors, diary, run = workspace
    recorded = tomllib.loads((run / io.CONFIG_FILE).read_text())
    # the workspace fit's flags (--priors, FIT_ARGS) and every default it left alone
    assert recorded == {
        "diary": str(diary.absolute()),
        "priors": str(priors.absolute()),
        "missing": "error",
        "min-days": 30,
        "backend": "nutpie",
        "chains": 2,
        "tune": 150,
        "draws": 150,
        "target-accept": 0.9,
        "max-treedepth": 8,
        "extend-budget": 300.0,
        "seed": 3,
        "pooling": "partial",
        "parameterization": "auto",
        "clustering": "on",
        "fdr-level": 0.02,
        "ci-prob": 0.9,
        "ci-kind": "eti",
        "strict": False,
        "progress": False,
    }
    again = tmp_path / "again"
    assert main(["fit", "--config", str(run / io.CONFIG_FILE), "--out", str(again)]) == 0
    assert (again / "weights.csv").read_bytes() == (run / "weights.csv").read_bytes()
    # the rerun records the same configuration: a fixed point
    assert (again / io.CONFIG_FILE).read_bytes() == (run / io.CONFIG_FILE).read_bytes()


def test_profile_prints_one_user(workspace, capsys):
    _, _, _, run = workspace
    assert main(["profile", str(run), "u002"]) == 0
    prof = json.loads(capsys.readouterr().out)
    assert prof["user_id"] == "u002"
    assert main(["profile", str(run), "nobody"]) == 2
    assert "user 'nobody' is not in" in capsys.readouterr().err


def test_diagnose_writes_figures(workspace, capsys):
    _, _, _, run = workspace
    assert main(["diagnose", str(run)]) == 0
    out = capsys.readouterr().out
    assert "R-hat" in out
    for name in ("rank.png", "energy.png", "forest.png"):
        assert (run / "figures" / name).stat().st_size > 1000


def test_predict_writes_risks(workspace, tmp_path):
    _, _, diary, run = workspace
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(diary), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 300 and table["known_user"].all()
    assert table["risk_mean"].between(0, 1).all()


def test_missing_run_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["profile", str(tmp_path / "nowhere"), "u1"]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_bad_column_map(workspace, capsys):
    _, priors, diary, _ = workspace
    assert main(["validate", str(diary), "--priors", str(priors), "--map", "oops"]) == 2
    assert "FILE_COLUMN=HBM_COLUMN" in capsys.readouterr().err


def test_shipped_example_validates():
    from ..conftest import REPO

    assert (
        main(
            [
                "validate",
                str(REPO / "data/example_diary.csv"),
                "--priors",
                str(REPO / "priors/migraine_features.json"),
            ]
        )
        == 0
    )


def test_an_error_a_signal_caused_reports_the_signal(monkeypatch, capsys):
    """A library that turns the signal's exception into an error of hbm's (or any other) still
    stops the command as interrupted: exit 130 and one line, not the error."""
    import os
    import signal

    from hbm.app import cli
    from hbm.errors import FitError, Interrupted

    def wraps_the_signal(_args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except Interrupted as exc:
            raise FitError("the sampler failed") from exc
        return 0

    monkeypatch.setitem(cli.COMMANDS, "validate", wraps_the_signal)
    assert main(["validate", "diary.csv"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hbm validate: interrupted by SIGINT"]
