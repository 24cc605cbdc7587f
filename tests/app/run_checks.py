"""What "a run that fits, reports and serves" means in the tests of issue 22: one place."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from hbm.app.cli import load_service_data, main
from hbm.app.service import create_app
from hbm.results import io

#: The smallest sampler settings that still give every export (seconds per fit).
TINY_FIT = ["--chains", "2", "--tune", "20", "--draws", "10", "--seed", "1", "--no-progress"]


def strict_json(path: Path) -> object:
    """A JSON file read as JSON itself is: NaN or Infinity anywhere fails."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{path}: {token} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def check_run_folder(run: Path) -> None:
    """Every export of a fit is there, and every JSON export is strict JSON."""
    for name in io.RUN_FILES:
        assert (run / name).exists(), name
    for name in (io.PROFILES_FILE, io.DIAGNOSTICS_FILE, io.RUN_FILE):
        strict_json(run / name)


def check_report(run: Path) -> None:
    """``hbm report`` writes the page and only figures inside the run folder."""
    assert main(["report", str(run), "--days-users", "2"]) == 0
    assert (run / io.REPORT_FILE).stat().st_size > 0
    figures = run / "figures"
    for png in figures.rglob("*.png"):
        assert png.resolve().is_relative_to(figures.resolve()), png


def check_serves(run: Path) -> None:
    """``hbm serve`` loads the run and answers every user's profile, the users and the
    population."""
    data = load_service_data(run)
    client = TestClient(create_app(data))
    assert client.get("/health").status_code == 200
    users = client.get("/users", params={"limit": 500}).json()["users"]
    assert [u["user_id"] for u in users] == list(data.profiles)
    for user_id in data.profiles:
        for path in ("/users/{}/trigger_profile", "/user/{}/trigger_profile"):
            r = client.get(path.format(user_id))
            assert r.status_code == 200, (user_id, r.text[:200])
            assert r.json()["user_id"] == user_id
    assert client.get("/population").status_code == 200
