"""``hbm update``: new days and new users from a fitted run's population, as a complete run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbm.app.cli import main
from hbm.app.run_workflows import load_service_data
from hbm.results import io


def _new_days(diary: Path, tmp_path: Path, seed: int = 9) -> Path:
    """Two new users (``n001``, ``n002``, 30 days each) and 20 later days of ``u001``."""
    priors = diary.parent / "priors.json"
    sim = tmp_path / f"sim{seed}.csv"
    args = ["simulate", "--users", "3", "--days", "30", "--seed", str(seed)]
    assert main([*args, "--priors", str(priors), "--out", str(sim)]) == 0
    frame = pd.read_csv(sim)
    users = sorted(frame["user_id"].unique())
    new = frame[frame["user_id"].isin(users[:2])].copy()
    new["user_id"] = new["user_id"].map({users[0]: "n001", users[1]: "n002"})
    later = frame[frame["user_id"] == users[2]].head(20).copy()
    fitted = pd.read_csv(diary)
    last = pd.Timestamp(fitted.loc[fitted["user_id"] == "u001", "date"].max())
    later["user_id"] = "u001"
    later["date"] = [(last + pd.Timedelta(days=i + 1)).date().isoformat() for i in range(20)]
    out = tmp_path / f"new{seed}.csv"
    pd.concat([new, later]).to_csv(out, index=False)
    return out


@pytest.fixture(scope="module")
def updated(workspace, tmp_path_factory):
    d = tmp_path_factory.mktemp("update")
    _, _, diary, run = workspace
    new = _new_days(diary, d)
    out = d / "updated"
    assert main(["update", str(run), str(new), "--out", str(out), "--seed", "1"]) == 0
    return run, new, out


def test_update_writes_a_complete_run_folder(updated):
    run, _, out = updated
    folder = io.read_run(out)  # manifest verified, tables agree with each other
    users = folder.users.set_index("user_id")
    assert list(users.index) == ["u001", "u002", "u003", "u004", "u005", "n001", "n002"]
    assert users.loc["n001", "days_logged"] == 30
    assert users.loc["u001", "days_logged"] == 60 + 20
    table = pd.read_csv(out / "update_users.csv", dtype={"user_id": str})
    assert sorted(table["user_id"]) == ["n001", "n002", "u001"]
    assert table.set_index("user_id").loc["u001", "days_before"] == 60
    assert (table["khat"] < 0.7).all() and table["ok"].all()
    info = folder.run_info
    assert info["update"]["from_run"] == io.read_run(run).run_info["run_id"]
    assert info["update"]["refit"]["due"]  # 2 users added to 5
    assert "2 users added to 5 fitted" in info["update"]["refit"]["reasons"]
    assert info["update"]["seed"] == 1 and info["command"].startswith("hbm update ")
    assert info["diary"]["users"] == 7 and info["diary"]["rows"] == len(
        io.load_fit(out / io.FIT_FILE)["observed_data"]["y"]
    )
    assert load_service_data(out) is not None  # the service reads it


def test_population_and_other_users_are_the_fits(updated):
    run, _, out = updated
    before = io.load_fit(run / io.FIT_FILE)["posterior"]
    after = io.load_fit(out / io.FIT_FILE)["posterior"]
    for name in ("a0", "sigma_a", "mu", "tau"):
        np.testing.assert_array_equal(after[name].values, before[name].values)
    for user in ("u002", "u005"):
        np.testing.assert_array_equal(after["w"].sel(user=user), before["w"].sel(user=user))
    assert not np.array_equal(after["w"].sel(user="u001"), before["w"].sel(user="u001"))


def test_report_and_profile_work_on_the_updated_run(updated, capsys):
    _, _, out = updated
    assert main(["profile", str(out), "n001"]) == 0
    assert "n001" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert 'id="update"' in page and "a refit is due" in page


def test_a_users_draws_do_not_depend_on_who_else_is_updated(updated, tmp_path):
    run, new, out = updated
    alone = tmp_path / "alone.csv"
    frame = pd.read_csv(new)
    frame[frame["user_id"] == "n002"].to_csv(alone, index=False)
    out2 = tmp_path / "alone"
    assert main(["update", str(run), str(alone), "--out", str(out2), "--seed", "1"]) == 0
    one = io.load_fit(out / io.FIT_FILE)["posterior"]["w"].sel(user="n002")
    two = io.load_fit(out2 / io.FIT_FILE)["posterior"]["w"].sel(user="n002")
    np.testing.assert_array_equal(one.values, two.values)
    info = json.loads((out2 / io.RUN_FILE).read_text())
    assert info["update"]["users_updated"] == 1


def test_days_already_fitted_are_refused(workspace, tmp_path, capsys):
    _, _, diary, run = workspace
    frame = pd.read_csv(diary)
    frame[frame["user_id"] == "u002"].tail(5).to_csv(tmp_path / "old.csv", index=False)
    code = main(["update", str(run), str(tmp_path / "old.csv"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "user u002" in err and "on or before" in err
    assert not (tmp_path / "o").exists()


def test_health_says_whether_a_refit_is_due(updated, workspace):
    from fastapi.testclient import TestClient

    from hbm.app.service import create_app

    _, _, out = updated
    body = TestClient(create_app(load_service_data(out))).get("/health").json()
    assert body["refit"]["due"] and body["refit"]["users_added"] == 2
    fitted = TestClient(create_app(load_service_data(workspace[3]))).get("/health").json()
    assert fitted.get("refit") is None  # null fields are left out


def test_out_may_not_be_the_run_or_inside_it(workspace, updated, capsys):
    _, new, _ = updated
    _, _, _, run = workspace
    before = (run / "manifest.json").read_bytes()
    for out in (run, run / "sub"):
        assert main(["update", str(run), str(new), "--out", str(out)]) == 2
        assert "error:" in capsys.readouterr().err
    assert (run / "manifest.json").read_bytes() == before and not (run / "sub").exists()


@pytest.mark.parametrize("value", ["0", "101"])
def test_proposals_out_of_range_are_refused(updated, tmp_path, value, capsys):
    run, new, _ = updated
    args = ["update", str(run), str(new), "--out", str(tmp_path / "o"), "--proposals", value]
    assert main(args) == 2
    assert "--proposals must be from 1 to 100" in capsys.readouterr().err


def test_updating_an_update_counts_from_the_fit(updated, tmp_path):
    """Two updates of one user each advise like one update of both users."""
    _, new, first = updated
    frame = pd.read_csv(new)
    more = frame[frame["user_id"] == "n001"].assign(user_id="n003")
    more.to_csv(tmp_path / "more.csv", index=False)
    out = tmp_path / "second"
    assert main(["update", str(first), str(tmp_path / "more.csv"), "--out", str(out)]) == 0
    refit = json.loads((out / io.RUN_FILE).read_text())["update"]["refit"]
    assert refit["users_fitted"] == 5 and refit["users_added"] == 3
    assert refit["days_added"] == 30 + 30 + 20 + 30
