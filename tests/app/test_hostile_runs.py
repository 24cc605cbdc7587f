"""Real fits of issue 22's cases 3, 6 and 11: ids of real apps fit, report and serve; a report
never builds a path from an id; one chain and one draw finish with every export."""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid

import pandas as pd
import pytest

from hbm.app.cli import main
from hbm.results import io
from hbm.results.report import build_report

from ..conftest import small_diary_frame, small_priors_doc, write_csv, write_priors
from .run_checks import TINY_FIT, check_report, check_run_folder, check_serves, strict_json

ONE_CHAIN = "it needs at least 2 chains and this fit has 1, so convergence cannot be checked"


@pytest.mark.fits
def test_ids_of_real_apps_fit_report_and_serve(tmp_path):
    """Case 11: every id the diary accepts is served (emails, UUIDs, 128 characters, ids that
    differ only in case)."""
    ids = ["jane.doe+migraine@example.org", str(uuid.UUID(int=7)), "L" * 128, "A", "a"]
    frame = small_diary_frame(n_users=len(ids), n_days=8)
    frame["user_id"] = frame["user_id"].map({f"p{i}": u for i, u in enumerate(ids)})
    diary = write_csv(tmp_path, frame)
    priors = write_priors(tmp_path, small_priors_doc())
    run = tmp_path / "run"
    assert main(["fit", str(diary), "--priors", str(priors), "--out", str(run), *TINY_FIT]) == 0
    check_run_folder(run)
    check_serves(run)
    check_report(run)
    names = sorted(p.name for p in (run / "figures" / "users").iterdir())
    assert names == [f"user-{i:04d}.png" for i in range(1, 6)]


@pytest.mark.fits
def test_report_figure_paths_are_never_built_from_ids(workspace, tmp_path):
    """Case 3: a run whose ids climb out of the folder or are too long for a file name (as an
    older hbm accepted) gets its figures inside figures/, named by position."""
    _, _, _, run_dir = workspace
    run = io.read_run(run_dir)
    hostile = ["../../../../x", "L" * 300, "a/b", "A", "a"]
    rename = dict(zip(run.users["user_id"], hostile, strict=True))
    odd = dataclasses.replace(
        run,
        users=run.users.assign(user_id=run.users["user_id"].map(rename)),
        weights=run.weights.assign(user_id=run.weights["user_id"].map(rename)),
        profiles=[{**p, "user_id": rename[p["user_id"]]} for p in run.profiles],
    )
    report = build_report(odd, io.load_fit(run_dir / io.FIT_FILE), None, None, None)
    users = sorted(name for name in report.figures if name.startswith("users/"))
    assert users == [f"users/user-{i:04d}.png" for i in range(1, 6)]
    out = tmp_path / "a" / "b" / "c" / "d" / "run"
    shutil.copytree(run_dir, out)  # a sealed run folder: reports are added through its manifest
    io.write_report(out, report.html, report.figures)
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert all(p.startswith("a/b/c/d/run/") for p in written), written
    assert 'id="user-../../../../x"' in report.html  # the id itself is still shown, escaped


@pytest.mark.fits
def test_one_chain_fits_with_r_hat_not_available(workspace, tmp_path, capsys):
    """Case 6: --chains 1 finishes, says R-hat is not available, and marks the fit unreliable."""
    _, priors, diary, _ = workspace
    run = tmp_path / "one"
    args = ["fit", str(diary), "--priors", str(priors), "--out", str(run)]
    assert main([*args, "--chains", "1", "--tune", "30", "--draws", "30", "--no-progress"]) == 0
    assert "max R-hat n/a" in capsys.readouterr().out
    check_run_folder(run)
    diagnostics = strict_json(run / io.DIAGNOSTICS_FILE)
    assert isinstance(diagnostics, dict)
    assert diagnostics["reliable"] is False and diagnostics["max_rhat"] is None
    assert diagnostics["reasons"][0] == f"R-hat not available: {ONE_CHAIN}"
    assert diagnostics["null_reasons"]["max_rhat"] == ONE_CHAIN
    run_info = json.loads((run / io.RUN_FILE).read_text())
    assert run_info["reliability_reasons"][0] == f"R-hat not available: {ONE_CHAIN}"
    population = pd.read_csv(run / io.POPULATION_FILE)
    assert population["mu_r_hat"].isna().all()
    check_serves(run)
    check_report(run)
    assert not (run / "figures" / "rank.png").exists()  # rank plots compare chains
    assert main(["diagnose", str(run)]) == 0
    assert "n/a" in capsys.readouterr().out


@pytest.mark.fits
def test_one_draw_with_huge_prior_sds_writes_every_file(workspace, tmp_path):
    """Case 6: --chains 1 --draws 1 with sd 1e9 priors used to stop after 5-6 of 8 files."""
    _, _, diary, _ = workspace
    doc = small_priors_doc()
    doc["intercept"] = {"base_rate": 0.15, "a0_sd": 1e9, "sigma_a_scale": 1e9}
    for var in doc["variables"]:
        var["log_odds_prior"] = {"mean": 0.0, "sd": 1e9, "between_user_sd": 1e9}
    priors = write_priors(tmp_path, doc, "huge.json")
    run = tmp_path / "huge"
    args = ["fit", str(diary), "--priors", str(priors), "--out", str(run), "--no-progress"]
    assert main([*args, "--chains", "1", "--tune", "10", "--draws", "1"]) == 0
    check_run_folder(run)
    diagnostics = strict_json(run / io.DIAGNOSTICS_FILE)
    assert isinstance(diagnostics, dict)
    assert set(diagnostics["not_available"]) == {
        "max_rhat",
        "min_ess_bulk",
        "min_ess_tail",
        "ebfmi",
    }
    assert all(isinstance(v, str) and v for v in diagnostics["null_reasons"].values())
    check_serves(run)
