"""The service's rules on a run folder written by hand: every served value is a literal here.

No fit runs: population.csv, users.csv, profiles.json, diagnostics.json and run.json hold literal
numbers, and fit.nc holds ten hand-written ``mu`` draws (and a negligible ``tau``) for cold start.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fastapi.exceptions import ResponseValidationError
from fastapi.testclient import TestClient

from hbm import __version__
from hbm.app.cli import load_service_data
from hbm.app.service import _clean, create_app, prepare
from hbm.errors import RunError
from hbm.results import io

from ..conftest import small_priors_doc

LONG_ID = "L" * 128  # the longest id the pattern allows
REASONS = ["r_hat 1.05 > 1.01 for mu", "3 divergences"]
FEATURES = ["screen_hours", "chocolate", "pressure_drop"]

# 2 chains x 5 draws per feature; the two lowest and the two highest draws tie, so every
# quantile method gives the 90% equal-tailed interval [lowest, highest].
CHAIN_0 = [[0.5, -0.9, -0.2], [0.6, -0.8, -0.1], [0.7, -0.7, 0.1], [0.8, -0.6, 0.2]]
CHAIN_0 += [[0.9, -0.5, 0.4]]
MU_DRAWS = np.array([CHAIN_0, CHAIN_0[::-1]])


def _trigger(feature, name, category, group, weight, ci, median, p_pos, cls, p_call):
    return {
        "feature": feature,
        "name": name,
        "category": category,
        "group": group,
        "weight": weight,
        "weight_ci": list(ci),
        "odds_ratio": math.exp(median),
        "odds_ratio_ci": [math.exp(ci[0]), math.exp(ci[1])],
        "p_positive": p_pos,
        "p_call": p_call,
        "class": cls,
        "interval_class": cls,
    }


#: The cold-start profile by hand from MU_DRAWS: means 0.7, -0.7, 0.08; medians 0.7, -0.7, 0.1.
#: Calls: P(w > 0.2) = 1 for screen hours, P(w < -0.2) = 1 for chocolate, and pressure's likelier
#: side has P(w > 0.2) = 3/10 (0.4 twice, and one of the two draws at 0.2, which the negligible
#: tau's noise moves just above it; the other just below); the three together have a mean false
#: probability of 0.7 / 3 > 0.05, the first two 0: two calls, the interval rule's classes.
COLD_TRIGGERS = [
    _trigger(
        "screen_hours", "Screen Time", "Lifestyle", "environmental", 0.7, (0.5, 0.9), 0.7, 1.0,
        "trigger", 1.0,
    ),
    _trigger(
        "pressure_drop", "Pressure Drop", "Environment", "environmental", 0.08, (-0.2, 0.4), 0.1,
        0.6, "uncertain", 0.3,
    ),
    _trigger(
        "chocolate", "Chocolate", "Diet", "lifestyle", -0.7, (-0.9, -0.5), -0.7, 0.0, "protector",
        1.0,
    ),
]  # fmt: skip


def _profile(user_id: str, weight: float, confidence: float, **extra: Any) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "trigger_weights": {"environmental": weight, "lifestyle": -weight},
        "top_triggers": [
            {
                "feature": "screen_hours",
                "name": "Screen Time",
                "category": "Lifestyle",
                "group": "environmental",
                "weight": weight,
                "weight_ci": [weight - 0.5, weight + 0.5],
                "odds_ratio": 1.5,
                "odds_ratio_ci": [0.9, 2.5],
                "p_positive": 0.75,
                "class": "uncertain",
            }
        ],
        "personalization_confidence": confidence,
        "reliable": False,
        "ci_prob": 0.9,
        "ci_kind": "eti",
        **extra,
    }


USERS = pd.DataFrame(
    {
        "user_id": ["u.1", "U-2", "x_~3", LONG_ID],
        "days_logged": [30, 12, 0, 7],
        "attacks": [4, 0, 0, 2],
        "confidence": [0.25, 0.5, 0.0, 0.125],
        "n_triggers": [1, 0, 0, 3],
        "reliable": [False] * 4,
    }
)
PROFILES = [
    # one export predates reliability_reasons; the others carry stale ones: diagnostics.json wins
    _profile("u.1", 0.25, 0.25),
    _profile("U-2", 0.5, 0.5, reliability_reasons=["stale"]),
    _profile("x_~3", 0.0, 0.0, reliability_reasons=[]),
    _profile(LONG_ID, 1.0, 0.125, reliability_reasons=["stale"]),
]
POPULATION = pd.DataFrame(
    {
        "feature": FEATURES,
        "name": ["Screen Time", "Chocolate", "Pressure Drop"],
        "mu_mean": [0.25, -0.5, 0.125],
        "tau_mean": [0.5, np.nan, 0.75],
        "premonitory_confound": [True, False, False],
        "ci_prob": [0.9, 0.9, 0.9],
        "ci_kind": ["eti", "eti", "eti"],
    }
)
POPULATION_FEATURES = [
    {
        "feature": "screen_hours",
        "name": "Screen Time",
        "mu_mean": 0.25,
        "tau_mean": 0.5,
        "premonitory_confound": True,
        "ci_prob": 0.9,
        "ci_kind": "eti",
    },
    {
        "feature": "chocolate",
        "name": "Chocolate",
        "mu_mean": -0.5,
        "tau_mean": None,
        "premonitory_confound": False,
        "ci_prob": 0.9,
        "ci_kind": "eti",
    },
    {
        "feature": "pressure_drop",
        "name": "Pressure Drop",
        "mu_mean": 0.125,
        "tau_mean": 0.75,
        "premonitory_confound": False,
        "ci_prob": 0.9,
        "ci_kind": "eti",
    },
]


def _population_draws() -> xr.DataTree:
    dims = ("chain", "draw", "feature")
    post = xr.Dataset(
        {"mu": (dims, MU_DRAWS), "tau": (dims, np.full(MU_DRAWS.shape, 1e-9))},
        coords={"chain": [0, 1], "draw": np.arange(5), "feature": FEATURES},
    )
    tree = xr.DataTree.from_dict({"posterior": post})
    tree.attrs["priors_json"] = json.dumps(small_priors_doc())
    return tree


def write_run(
    d: Path,
    *,
    users: pd.DataFrame = USERS,
    profiles: list[dict[str, Any]] = PROFILES,
    population: pd.DataFrame = POPULATION,
    diagnostics: dict[str, Any] | None = None,
    pooling: str = "partial",
) -> Path:
    """A run folder with the given exports (fit.nc holds only the population draws)."""
    if diagnostics is None:
        diagnostics = {"reliable": False, "reasons": REASONS}
    io.save_fit(_population_draws(), d / io.FIT_FILE)
    io.write_csv(d / io.POPULATION_FILE, population)
    weights = pd.DataFrame(
        {
            "user_id": ["u.1"],
            "feature": ["screen_hours"],
            "mean": [0.25],
            "ci_lb": [-0.25],
            "ci_ub": [0.75],
            "class": ["uncertain"],
        }
    )
    io.write_csv(d / io.WEIGHTS_CSV, weights)
    (d / io.WEIGHTS_PARQUET).write_bytes(b"")  # never read by the service
    io.write_csv(d / io.USERS_FILE, users)
    io.write_json(d / io.PROFILES_FILE, profiles)
    io.write_json(d / io.DIAGNOSTICS_FILE, diagnostics)
    io.write_json(d / io.RUN_FILE, {"pooling": pooling})
    io.seal_run(d, "run", "test")  # a reader refuses a run folder without its manifest
    return d


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("served") / "run-a"
    d.mkdir()
    return write_run(d)


def serve(run_dir: Path) -> TestClient:
    """Prepare and serve a run folder. Tests call this in their body, not through a fixture:
    mutmut records which tests reach a function only while the test itself runs."""
    return TestClient(create_app(load_service_data(run_dir)))


def _client_for(tmp_path: Path, **kwargs: Any) -> TestClient:
    d = tmp_path / "run-b"
    d.mkdir()
    return serve(write_run(d, **kwargs))


# --- /health -----------------------------------------------------------------------------------


def test_health_is_the_literal_summary(run_a):
    client = serve(run_a)
    assert client.get("/health").json() == {
        "status": "ok",
        "version": __version__,
        "run": "run-a",
        "users": 4,
        "reliable": False,
    }


def test_health_reliable_follows_diagnostics(tmp_path):
    c = _client_for(tmp_path, diagnostics={"reliable": True, "reasons": []})
    assert c.get("/health").json()["reliable"] is True


def test_diagnostics_without_flag_or_reasons_is_unreliable_with_no_reasons(tmp_path):
    c = _client_for(tmp_path, diagnostics={})
    assert c.get("/health").json()["reliable"] is False
    assert c.get("/population").json()["reliability_reasons"] == []
    body = c.get("/users/U-2/trigger_profile").json()
    assert body["reliability_reasons"] == []


# --- /users ------------------------------------------------------------------------------------

SUMMARIES = [
    {
        "user_id": "u.1",
        "days_logged": 30,
        "attacks": 4,
        "personalization_confidence": 0.25,
        "n_triggers": 1,
    },
    {
        "user_id": "U-2",
        "days_logged": 12,
        "attacks": 0,
        "personalization_confidence": 0.5,
        "n_triggers": 0,
    },
    {
        "user_id": "x_~3",
        "days_logged": 0,
        "attacks": 0,
        "personalization_confidence": 0.0,
        "n_triggers": 0,
    },
    {
        "user_id": LONG_ID,
        "days_logged": 7,
        "attacks": 2,
        "personalization_confidence": 0.125,
        "n_triggers": 3,
    },
]


def test_users_default_page(run_a):
    client = serve(run_a)
    assert client.get("/users").json() == {
        "total": 4,
        "offset": 0,
        "limit": 100,
        "users": SUMMARIES,
    }


@pytest.mark.parametrize(
    ("offset", "limit", "first", "last"),
    [(0, 1, 0, 1), (1, 2, 1, 3), (3, 1, 3, 4), (3, 2, 3, 4), (4, 1, 4, 4), (2, 500, 2, 4)],
)
def test_users_page_edges(run_a, offset, limit, first, last):
    client = serve(run_a)
    body = client.get("/users", params={"offset": offset, "limit": limit}).json()
    assert body == {
        "total": 4,
        "offset": offset,
        "limit": limit,
        "users": SUMMARIES[first:last],
    }


@pytest.mark.parametrize("params", [{"limit": 501}, {"limit": 0}, {"offset": -1}])
def test_users_page_out_of_bounds_is_a_422(run_a, params):
    client = serve(run_a)
    r = client.get("/users", params=params)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["query", *params]


def test_users_without_optional_columns_are_null(tmp_path):
    users = USERS.drop(columns=["attacks", "n_triggers"])
    c = _client_for(tmp_path, users=users)
    first = c.get("/users", params={"limit": 1}).json()["users"]
    assert first == [
        {
            "user_id": "u.1",
            "days_logged": 30,
            "attacks": None,
            "personalization_confidence": 0.25,
            "n_triggers": None,
        }
    ]


# --- /users/{id}/trigger_profile ---------------------------------------------------------------


def served(profile: dict[str, Any]) -> dict[str, Any]:
    """A profile as served: the fields a hand-written profiles.json lacks are null."""
    triggers = [{"p_call": None, "interval_class": None, **t} for t in profile["top_triggers"]]
    return {"clustering": None, **profile, "top_triggers": triggers}


@pytest.mark.parametrize("path", ["/users/{}/trigger_profile", "/user/{}/trigger_profile"])
@pytest.mark.parametrize("index", [0, 1, 3])
def test_known_profile_at_both_paths(run_a, path, index):
    client = serve(run_a)
    r = client.get(path.format(PROFILES[index]["user_id"]))
    assert r.status_code == 200
    expected = {**PROFILES[index], "reliability_reasons": REASONS, "cold_start": False}
    assert r.json() == served(expected)


def test_known_profile_ignores_cold_start_flag(run_a):
    client = serve(run_a)
    body = client.get("/users/U-2/trigger_profile", params={"cold_start": "true"}).json()
    assert body == served({**PROFILES[1], "reliability_reasons": REASONS, "cold_start": False})


@pytest.mark.parametrize("path", ["/users/{}/trigger_profile", "/user/{}/trigger_profile"])
@pytest.mark.parametrize("params", [{}, {"cold_start": "false"}])
def test_unknown_user_is_a_404_with_the_literal_body(run_a, path, params):
    client = serve(run_a)
    r = client.get(path.format("nobody"), params=params)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "detail": "user 'nobody' is not in run 'run-a'; "
        "add ?cold_start=true for a population-predictive profile"
    }


@pytest.mark.parametrize("path", ["/users/{}/trigger_profile", "/user/{}/trigger_profile"])
def test_cold_start_profile_by_hand(run_a, path):
    client = serve(run_a)
    r = client.get(path.format("newcomer"), params={"cold_start": "true"})
    assert r.status_code == 200
    body = r.json()
    assert body == {
        "user_id": "newcomer",
        "trigger_weights": pytest.approx({"environmental": 0.39, "lifestyle": -0.7}, abs=1e-7),
        "top_triggers": body["top_triggers"],  # compared below, with tolerance
        "clustering": None,  # the small priors have no clustering term
        "personalization_confidence": 0.0,
        "reliable": False,
        "reliability_reasons": REASONS,
        "ci_prob": 0.9,
        "ci_kind": "eti",
        "cold_start": True,
    }
    assert len(body["top_triggers"]) == len(COLD_TRIGGERS)
    for got, want in zip(body["top_triggers"], COLD_TRIGGERS, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == (value if isinstance(value, str) else pytest.approx(value, abs=1e-7))


def test_cold_start_of_a_reliable_run(tmp_path):
    c = _client_for(tmp_path, diagnostics={"reliable": True, "reasons": []})
    body = c.get("/users/newcomer/trigger_profile", params={"cold_start": True}).json()
    assert body["cold_start"] is True and body["reliable"] is True
    assert body["reliability_reasons"] == []


def test_no_pooling_run_has_no_cold_start(tmp_path):
    d = tmp_path / "run-np"
    d.mkdir()
    data = prepare(io.read_run(write_run(d, pooling="none")), None)
    c = TestClient(create_app(data))
    r = c.get("/users/newcomer/trigger_profile", params={"cold_start": "true"})
    assert r.status_code == 404
    assert r.json() == {"detail": "run 'run-np' has no population (pooling 'none')"}
    r = c.get("/users/newcomer/trigger_profile")
    assert r.status_code == 404 and "add ?cold_start=true" in r.json()["detail"]
    assert c.get("/users/u.1/trigger_profile").json()["cold_start"] is False


@pytest.mark.parametrize(
    "bad", ["L" * 129, "has space", "semi;colon", "a,b", "caf\u00e9", ".x", "-x", "_x"]
)
def test_ids_outside_the_pattern_are_a_422(run_a, bad):
    client = serve(run_a)
    for path in ("/users/{}/trigger_profile", "/user/{}/trigger_profile"):
        r = client.get(path.format(bad), params={"cold_start": "true"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["path", "user_id"]


@pytest.mark.parametrize("good", ["L" * 128, "a", "A-z_0.9~", "a+b", "x@y.org"])
def test_ids_inside_the_pattern_reach_the_lookup(run_a, good):
    client = serve(run_a)
    r = client.get(f"/users/{good}/trigger_profile", params={"cold_start": "true"})
    assert r.status_code == 200
    assert r.json()["user_id"] == good


def test_a_malformed_export_is_not_served(tmp_path):
    """An interval must have exactly two ends: three is a server error, not a served answer."""
    bad = _profile("u.1", 0.25, 0.25)
    bad["top_triggers"][0]["weight_ci"] = [0.0, 0.1, 0.2]
    c = _client_for(tmp_path, profiles=[bad, *PROFILES[1:]])
    with pytest.raises(ResponseValidationError):
        c.get("/users/u.1/trigger_profile")


# --- /population -------------------------------------------------------------------------------


def test_population_literal_with_nan_as_null(run_a):
    client = serve(run_a)
    r = client.get("/population")
    assert r.status_code == 200
    assert r.json() == {
        "reliable": False,
        "reliability_reasons": REASONS,
        "ci_prob": 0.9,
        "ci_kind": "eti",
        "features": POPULATION_FEATURES,
    }
    assert "NaN" not in r.text


def test_population_of_one_feature(tmp_path):
    one = POPULATION.iloc[[1]].assign(ci_prob=0.8, ci_kind="hdi")
    c = _client_for(tmp_path, population=one)
    body = c.get("/population").json()
    assert body["ci_prob"] == 0.8 and body["ci_kind"] == "hdi"
    assert body["features"] == [{**POPULATION_FEATURES[1], "ci_prob": 0.8, "ci_kind": "hdi"}]
    # the run's interval choice carries over to cold-start profiles
    cold = c.get("/users/newcomer/trigger_profile", params={"cold_start": "true"}).json()
    assert (cold["ci_prob"], cold["ci_kind"]) == (0.8, "hdi")


# --- start-up ----------------------------------------------------------------------------------


def test_prepare_takes_the_files_identity_now_unless_given(tmp_path):
    d = tmp_path / "run-f"
    d.mkdir()
    run = io.read_run(write_run(d))
    (d / io.WEIGHTS_CSV).unlink()  # a watched file gone: left out
    data = prepare(run, None)
    kept = ["fit.nc", "run.json", "diagnostics.json", "profiles.json", "users.csv"]
    kept.append("population.csv")
    stats = {n: os.stat(d / n) for n in kept}
    assert data.files == {
        n: (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) for n, st in stats.items()
    }
    given = {"fit.nc": (1, 2, 3, 4)}
    assert prepare(run, None, given).files == given


def test_unservable_ids_are_named_at_start_up(tmp_path):
    bad = ["a b", "c;d", "e/f", "g h", "L" * 129, "i j"]
    users = pd.DataFrame(
        {
            "user_id": ["ok", *bad],
            "days_logged": 1,
            "confidence": 0.5,
            "reliable": False,
        }
    )
    profiles = [_profile(u, 0.0, 0.5) for u in users["user_id"]]
    d = tmp_path / "run-bad"
    d.mkdir()
    run = io.read_run(write_run(d, users=users, profiles=profiles))
    with pytest.raises(RunError) as info:
        prepare(run, None)
    assert str(info.value) == (
        f"{d}: user ids {bad[:5]} cannot be served: ids must match "
        "^[A-Za-z0-9][A-Za-z0-9._~@+-]{0,127}$"
    )


def test_openapi_names_the_run(run_a):
    client = serve(run_a)
    info = client.get("/openapi.json").json()["info"]
    assert info == {
        "title": "hbm trigger profiles",
        "version": __version__,
        "description": "Read-only trigger profiles of run 'run-a'. Weights are log-odds per unit "
        "of exposure; intervals carry their probability and kind.",
    }


def test_served_version_is_hbm_s(run_a, monkeypatch):
    monkeypatch.setattr("hbm.app.service.__version__", "9.8.7")
    client = serve(run_a)
    assert client.get("/health").json()["version"] == "9.8.7"
    assert client.get("/openapi.json").json()["info"]["version"] == "9.8.7"


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (np.int64(3), 3),
        (np.float64(0.25), 0.25),
        (np.bool_(True), True),
        (np.float64("nan"), None),
        (float("nan"), None),
        ("eti", "eti"),
        (None, None),
        (2, 2),
    ],
)
def test_clean_gives_plain_json_scalars(value, want):
    got = _clean(value)
    assert got == want and type(got) is type(want)


# --- /users/{id}/next_day_risk -----------------------------------------------------------------


def test_next_day_risk_is_the_users_tables_by_todays_state(tmp_path):
    users = USERS.assign(
        risk_after_attack_day_mean=[0.30, 0.20, 0.25, 0.40],
        risk_after_attack_day_lb=[0.20, 0.10, 0.05, 0.30],
        risk_after_attack_day_ub=[0.45, 0.35, 0.50, 0.55],
        risk_after_attack_free_day_mean=[0.10, 0.08, 0.12, 0.15],
        risk_after_attack_free_day_lb=[0.05, 0.04, 0.02, 0.10],
        risk_after_attack_free_day_ub=[0.20, 0.15, 0.30, 0.22],
    )
    client = _client_for(tmp_path, users=users)
    after = client.get("/users/U-2/next_day_risk", params={"attack_today": "true"})
    assert after.status_code == 200
    assert after.json() == {
        "user_id": "U-2",
        "attack_today": True,
        "risk_mean": 0.20,
        "risk_ci": [0.10, 0.35],
        "ci_prob": 0.9,
        "ci_kind": "eti",
        "assumes": "every other exposure at the cohort's mean (hbm predict uses the diary's)",
        "reliable": False,
        "reliability_reasons": REASONS,
    }
    free = client.get("/users/U-2/next_day_risk", params={"attack_today": "false"}).json()
    assert (free["risk_mean"], free["risk_ci"]) == (0.08, [0.04, 0.15])
    assert client.get("/users/nobody/next_day_risk?attack_today=1").status_code == 404
    assert client.get("/users/U-2/next_day_risk").status_code == 422  # today's state is needed


def test_next_day_risk_of_a_run_without_clustering_is_a_404(run_a):
    r = serve(run_a).get("/users/U-2/next_day_risk", params={"attack_today": "true"})
    assert r.status_code == 404
    assert r.json() == {
        "detail": "run 'run-a' has no clustering term: tomorrow's risk does not use today"
    }
