"""Shared fixtures: the shipped priors, a small custom priors file and diary writers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hbm.data.priors import Priors, load_priors

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PRIORS = REPO / "priors" / "migraine_features.json"


@pytest.fixture(scope="session")
def priors() -> Priors:
    return load_priors(DEFAULT_PRIORS)


def small_priors_doc() -> dict[str, Any]:
    """Three features with their own names: none of them is in the default file."""
    return {
        "intercept": {"base_rate": 0.15, "a0_sd": 1.0, "sigma_a_scale": 1.5},
        "variables": [
            {
                "key": "screen_hours",
                "name": "Screen Time",
                "category": "Lifestyle",
                "group": "environmental",
                "unit": "hours",
                "range": [0, 16],
                "levels": [0, 4, 10],
                "migraine_impact_pattern": [1.0, 1.0, 1.5],
                "weight_prior": 0.3,
                "log_odds_prior": {"mean": 0.1, "sd": 0.3, "between_user_sd": 0.5},
                "lag_days": 0,
                "transform": "level",
                "source": "test fixture",
                "simulation": {"kind": "continuous", "mean": 5, "sd": 2.5, "autocorr": 0.3},
            },
            {
                "key": "chocolate",
                "name": "Chocolate",
                "category": "Diet",
                "group": "lifestyle",
                "unit": "1 if eaten",
                "range": [0, 1],
                "levels": [0, 1],
                "migraine_impact_pattern": [1.0, 1.3],
                "weight_prior": 0.2,
                "lag_days": 1,
                "transform": "level",
                "source": "test fixture (derived prior)",
                "simulation": {"kind": "binary", "prevalence": 0.3, "user_sd": 0.3},
            },
            {
                "key": "pressure_drop",
                "name": "Pressure Drop",
                "category": "Environment",
                "group": "environmental",
                "column": "pressure",
                "unit": "hPa change",
                "range": [900, 1100],
                "levels": [-8, 0],
                "migraine_impact_pattern": [1.4, 1.0],
                "weight_prior": 0.4,
                "log_odds_prior": {"mean": 0.1, "sd": 0.3, "between_user_sd": 0.5},
                "lag_days": 0,
                "transform": "change",
                "source": "test fixture",
                "simulation": {"kind": "location", "mean": 1013, "sd": 6, "autocorr": 0.7},
            },
        ],
    }


@pytest.fixture()
def small_priors_path(tmp_path: Path) -> Path:
    p = tmp_path / "small_priors.json"
    p.write_text(json.dumps(small_priors_doc()))
    return p


@pytest.fixture()
def small_priors(small_priors_path: Path) -> Priors:
    return load_priors(small_priors_path)


def write_priors(tmp_path: Path, doc: dict[str, Any], name: str = "p.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def small_diary_frame(n_users: int = 2, n_days: int = 5) -> pd.DataFrame:
    """A valid raw diary for the small priors (strings, as a CSV would hold them)."""
    rows = []
    for u in range(n_users):
        for d in range(n_days):
            rows.append(
                {
                    "user_id": f"p{u}",
                    "date": f"2025-03-{d + 1:02d}",
                    "migraine": str((u + d) % 2),
                    "screen_hours": str(2.0 + d),
                    "chocolate": str(d % 2),
                    "pressure": str(1010.0 - d),
                }
            )
    return pd.DataFrame(rows)


def write_csv(tmp_path: Path, frame: pd.DataFrame, name: str = "diary.csv") -> Path:
    p = tmp_path / name
    frame.to_csv(p, index=False)
    return p


FIT_ARGS = ["--chains", "2", "--tune", "150", "--draws", "150", "--seed", "3", "--no-progress"]


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """5 users of the small priors, simulated and fitted by the CLI: (dir, priors, diary, run)."""
    from hbm.app.cli import main

    d = tmp_path_factory.mktemp("cli")
    priors = write_priors(d, small_priors_doc(), "priors.json")
    diary = d / "diary.csv"
    assert (
        main(
            [
                "simulate",
                "--users",
                "5",
                "--days",
                "60",
                "--seed",
                "4",
                "--priors",
                str(priors),
                "--out",
                str(diary),
            ]
        )
        == 0
    )
    run = d / "run"
    assert main(["fit", str(diary), "--priors", str(priors), "--out", str(run), *FIT_ARGS]) == 0
    return d, priors, diary, run


@pytest.fixture(scope="session")
def no_pooling_run(workspace, tmp_path_factory):
    """The workspace cohort fitted without pooling (no mu, tau): a run folder."""
    from hbm.app.cli import main

    _, priors, diary, _ = workspace
    run = tmp_path_factory.mktemp("nopool") / "run"
    args = ["fit", str(diary), "--priors", str(priors), "--out", str(run), "--pooling", "none"]
    assert main([*args, *FIT_ARGS]) == 0
    return run


#: Fixtures that run NUTS: every test using one is marked ``fits`` (left out of mutation runs).
FIT_FIXTURES = frozenset(
    {"workspace", "no_pooling_run", "small_fit", "reported", "run_dir", "client", "fused_model"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if FIT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.fits)
