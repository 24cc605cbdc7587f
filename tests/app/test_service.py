"""The read-only trigger-profile service: every route, every error, and the OpenAPI contract."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from hbm.app.cli import load_service_data, main
from hbm.app.service import MAX_PAGE, create_app
from hbm.errors import RunError
from hbm.results import io


@pytest.fixture(scope="module")
def run_dir(workspace):
    return workspace[3]


@pytest.fixture(scope="module")
def client(run_dir):
    return TestClient(create_app(load_service_data(run_dir)))


def test_health(client, run_dir):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["users"] == 5 and body["run"] == run_dir.name
    diagnostics = json.loads((run_dir / io.DIAGNOSTICS_FILE).read_text())
    assert body["reliable"] is diagnostics["reliable"]


def test_users_are_paginated(client, run_dir):
    users = pd.read_csv(run_dir / io.USERS_FILE, dtype={"user_id": str})
    page = client.get("/users", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == 5 and page["offset"] == 1 and page["limit"] == 2
    assert [u["user_id"] for u in page["users"]] == users["user_id"].tolist()[1:3]
    first = client.get("/users").json()["users"][0]
    assert first["days_logged"] == users["days_logged"].iloc[0]
    assert first["personalization_confidence"] == pytest.approx(users["confidence"].iloc[0])
    assert client.get("/users", params={"offset": 99}).json()["users"] == []


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": MAX_PAGE + 1}, {"offset": -1}, {"limit": "ten"}]
)
def test_users_rejects_bad_paging(client, params):
    r = client.get("/users", params=params)
    assert r.status_code == 422 and "detail" in r.json()


def test_trigger_profile_matches_the_export_at_both_paths(client, run_dir):
    exported = io.read_json(run_dir / io.PROFILES_FILE)[0]
    uid = exported["user_id"]
    new = client.get(f"/users/{uid}/trigger_profile")
    old = client.get(f"/user/{uid}/trigger_profile")
    assert new.status_code == old.status_code == 200
    assert new.json() == old.json()
    body = new.json()
    assert body["cold_start"] is False
    assert body["trigger_weights"] == exported["trigger_weights"]
    assert body["personalization_confidence"] == exported["personalization_confidence"]
    top = body["top_triggers"][0]
    assert set(top) >= {"name", "category", "weight", "odds_ratio", "odds_ratio_ci", "class"}
    assert top == exported["top_triggers"][0]
    assert body["reliable"] == json.loads((run_dir / io.DIAGNOSTICS_FILE).read_text())["reliable"]


def test_unknown_user_is_a_json_404(client):
    for path in ("/users/nobody/trigger_profile", "/user/nobody/trigger_profile"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/json"
        assert "nobody" in r.json()["detail"] and "cold_start=true" in r.json()["detail"]


@pytest.mark.parametrize("bad", ["has space", "semi;colon", "x" * 129, "caf\u00e9"])
def test_malformed_user_id_is_a_422(client, bad):
    r = client.get(f"/users/{bad}/trigger_profile")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["path", "user_id"]


@pytest.mark.parametrize(
    "path",
    [
        "/users/..%2F..%2Fetc%2Fpasswd/trigger_profile",
        "/users/%2E%2E/trigger_profile",
        "/user/..%5Cfit.nc/trigger_profile",
        "/users/fit.nc/trigger_profile",
    ],
)
def test_no_request_reaches_a_file(client, path):
    r = client.get(path)
    assert r.status_code in (404, 422)
    assert "root:" not in r.text and "HDF" not in r.text


def test_cold_start_only_when_asked(client):
    assert client.get("/users/newcomer/trigger_profile").status_code == 404
    r = client.get("/users/newcomer/trigger_profile", params={"cold_start": "true"})
    assert r.status_code == 200
    body = r.json()
    assert body["cold_start"] is True and body["user_id"] == "newcomer"
    assert body["personalization_confidence"] < 0.1
    assert all(t["class"] in {"trigger", "protector", "uncertain"} for t in body["top_triggers"])
    known = client.get("/users").json()["users"][0]["user_id"]
    own = client.get(f"/users/{known}/trigger_profile", params={"cold_start": "true"}).json()
    assert own["cold_start"] is False


def test_population_equals_population_csv(client, run_dir):
    table = pd.read_csv(run_dir / io.POPULATION_FILE)
    body = client.get("/population").json()
    served = pd.DataFrame(body["features"])
    assert served["feature"].tolist() == table["feature"].tolist()
    for col in ("mu_mean", "mu_ci_lb", "mu_ci_ub", "tau_mean", "p_tau_above_0.3"):
        assert served[col].to_numpy() == pytest.approx(table[col].to_numpy(), rel=1e-12)
    assert body["ci_prob"] == table["ci_prob"].iloc[0] and body["ci_kind"] == "eti"


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    assert {
        "/health",
        "/users",
        "/users/{user_id}/trigger_profile",
        "/user/{user_id}/trigger_profile",
        "/population",
    } <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def _copy(run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


def test_missing_export_stops_start_up(run_dir, tmp_path):
    d = _copy(run_dir, tmp_path)
    (d / io.USERS_FILE).unlink()
    with pytest.raises(RunError, match=r"lacks.*users\.csv"):
        load_service_data(d)


def test_mixed_run_folder_stops_start_up(run_dir, tmp_path):
    d = _copy(run_dir, tmp_path)
    profiles = io.read_json(d / io.PROFILES_FILE)
    profiles[0]["user_id"] = "someone_else"
    io.write_json(d / io.PROFILES_FILE, profiles)
    with pytest.raises(RunError, match=r"profiles\.json: does not match .*manifest\.json"):
        load_service_data(d)
    io.seal_run(d, "run", "test")  # sealed as it is: the tables still disagree
    with pytest.raises(RunError, match=r"different users.*someone_else"):
        load_service_data(d)


def test_unservable_user_id_stops_start_up(run_dir, tmp_path):
    d = _copy(run_dir, tmp_path)
    users = pd.read_csv(d / io.USERS_FILE, dtype={"user_id": str})
    profiles = io.read_json(d / io.PROFILES_FILE)
    users.loc[0, "user_id"] = profiles[0]["user_id"] = "has space"
    io.write_csv(d / io.USERS_FILE, users)
    io.write_json(d / io.PROFILES_FILE, profiles)
    io.seal_run(d, "run", "test")
    with pytest.raises(RunError, match=r"'has space'.*must match"):
        load_service_data(d)


def test_serve_command_reports_a_bad_folder(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "absent")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_corrupt_table_names_the_file(run_dir, tmp_path):
    d = _copy(run_dir, tmp_path)
    (d / io.POPULATION_FILE).write_text("nothing,useful\n1,2\n")
    with pytest.raises(RunError, match=r"population\.csv: does not match .*manifest\.json"):
        load_service_data(d)
    io.seal_run(d, "run", "test")
    with pytest.raises(RunError, match=r"population\.csv: lacks columns"):
        load_service_data(d)


@pytest.mark.ci_stat
def test_openapi_contract(run_dir):
    """Property-based (schemathesis + hypothesis): every route, generated requests, no server
    error, and each response matches the OpenAPI schema. (Schemathesis' pytest plugin breaks on
    this pytest, so the operations are driven through hypothesis directly.)"""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(load_service_data(run_dir)))
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == 6  # next_day_risk is the sixth
    for op in operations:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case):
            case.call_and_validate()

        check()


def test_latency_harness_smoke(run_dir):
    """The loopback harness (benchmarks/service_latency.py) against a real uvicorn server."""
    from benchmarks.service_latency import run

    result = run(str(run_dir), 40)
    assert result["requests"] == 40 and result["errors"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_no_pooling_run_serves_without_cold_start(no_pooling_run):
    c = TestClient(create_app(load_service_data(no_pooling_run)))
    assert c.get("/population").status_code == 200
    r = c.get("/users/newcomer/trigger_profile", params={"cold_start": "true"})
    assert r.status_code == 404 and "pooling 'none'" in r.json()["detail"]
    uid = c.get("/users").json()["users"][0]["user_id"]
    assert c.get(f"/users/{uid}/trigger_profile").status_code == 200
