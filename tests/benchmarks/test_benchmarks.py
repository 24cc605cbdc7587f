"""Smoke test of the fit-speed harness on its tiny size (no timing is asserted)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.fit_speed import agreement, agreements, main, size_priors
from benchmarks.scaling import DAYS, cohorts, plot, slope
from benchmarks.table import markdown
from hbm.inference.backends import available_cores

# Every test here compiles a model or samples: left out of mutation runs.
pytestmark = pytest.mark.fits


def test_large_size_has_24_distinct_features():
    priors = size_priors(24)
    assert len(set(priors.keys)) == 24
    assert priors.keys[-1].endswith("_lag2")


@pytest.mark.heavy
def test_fit_speed_harness_smoke(tmp_path):
    out = tmp_path / "results.json"
    assert main(["--sizes", "tiny", "--backends", "nutpie", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    (run,) = doc["runs"]
    assert run["size"] == "tiny" and run["backend"] == "nutpie" and run["rows"] == 240
    for key in ("wall_s", "min_ess_bulk", "min_ess_tail", "max_rhat", "grad_numba_ms"):
        assert run[key] > 0
    # nutpie's floor also from its own callback's time (no Python call around it)
    parallel = min(run["chains"], available_cores())
    strict = run["grad_nutpie_callback_ms"] / 1000 * run["gradient_evaluations"] / parallel
    assert run["callback_floor_s"] == pytest.approx(strict)
    assert run["wall_over_callback_floor"] == pytest.approx(run["wall_s"] / run["callback_floor_s"])
    assert run["leapfrog_steps"] > 0 and run["divergences"] >= 0
    assert run["gradient_evaluations"] == sum(run["leapfrog"].values())
    assert run["floor_counts"] == "pilot+warmup+draws" and run["compile_s"] > 0
    assert len(run["posterior"]["mean"]) == len(run["posterior"]["names"]) > 0
    assert doc["versions"]["pymc"]
    table = markdown(doc).splitlines()
    assert len(table) == 3 and table[2].startswith("| tiny | 240 | nutpie |")
    # other chain seeds on the same cohort go to seed_runs, beside (not over) the run above
    args = ["--sizes", "tiny", "--backends", "nutpie", "--sampler-seeds", "11", "--out", str(out)]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert [r["sampler_seed"] for r in doc["runs"]] == [run["sampler_seed"]]
    (seeded,) = doc["seed_runs"]
    assert seeded["sampler_seed"] == 11 and seeded["rows"] == 240 and "posterior" not in seeded
    assert markdown(doc).splitlines()[-1].startswith("| tiny | nutpie | 11 |")


def test_scaling_grows_users_or_days():
    assert cohorts([10, 500], None, 100) == [(10, DAYS), (500, DAYS)]
    # --days: the parameters stay fixed while the rows grow
    assert cohorts([10, 500], [100, 5000], 100) == [(100, 100), (100, 5000)]


def test_scaling_slope_and_plot():
    rows = np.array([1e4, 1e5, 5e5])
    assert slope(rows, 3e-3 * rows) == pytest.approx(1.0)
    assert slope(rows, 2e-9 * rows**2) == pytest.approx(2.0)
    runs = [
        {"rows": r, "wall_s": 1e-3 * r, "sampling_s": 5e-4 * r, "peak_rss_mib": 300 + r / 1e3}
        for r in rows
    ]
    png = plot(runs, 1.0)
    assert png.startswith(b"\x89PNG")


def test_agreement_flags_a_shifted_posterior():
    names = ["mu[0]", "mu[1]", "tau[0]"]
    a = {
        "size": "s",
        "backend": "nutpie",
        "posterior": {"names": names, "mean": [0.0, 1.0, 0.5], "mcse": [0.01, 0.01, 0.01]},
    }
    same = {**a, "backend": "pymc", "posterior": {**a["posterior"], "mean": [0.01, 0.99, 0.5]}}
    moved = {**a, "backend": "numpyro", "posterior": {**a["posterior"], "mean": [0.2, 1.0, 0.5]}}
    assert agreement(a, same)["max_abs_z"] == pytest.approx(0.01 / np.hypot(0.01, 0.01))
    bad = agreement(a, moved)
    assert bad["worst"] == "mu[0]" and bad["share_abs_z_over_3"] == pytest.approx(1 / 3)
    assert [r["backends"] for r in agreements([a, same, moved])] == [
        ["nutpie", "pymc"],
        ["nutpie", "numpyro"],
    ]


def test_command_wall_summary_takes_median_and_worst_over_seeds():
    from benchmarks.command_wall import markdown, summary

    def row(seed, wall, ess, reliable, rhat=1.005):
        timings = {"sampling_s": wall / 2, "export_s": 1.0}
        return {"seed": seed, "wall_s": wall, "exit": 0, "peak_rss_mib": 700, "reliable": reliable,
                "reasons": [], "min_ess_bulk": ess, "min_ess_tail": ess, "max_rhat": rhat,
                "ess_per_s": ess / wall, "fit_nc_mb": 12.0, "timings": timings}  # fmt: skip

    rows = [row(1, 30.0, 600.0, True), row(2, 50.0, 300.0, False, 1.02), row(3, 40.0, 800.0, True)]
    rows[2]["extension"] = {"why": ["max R-hat 1.012 > 1.01 (worst: tau)"]}
    rows[2]["timings"]["extension_sampling_s"] = 30.0
    rows.append({"seed": 4, "wall_s": 3.0, "exit": 2, "peak_rss_mib": 100, "error": "bad"})
    s = summary(rows)
    assert (s["seeds"], s["failed_commands"], s["gate_passed"]) == (4, 1, 2)
    assert s["wall_s"] == {"median": 40.0, "worst": 50.0}
    assert s["ess_per_s"] == {"median": 20.0, "worst": 6.0}
    assert s["max_rhat"] == {"median": 1.005, "worst": 1.02}
    assert s["sampling_s"] == {"median": 25.0, "worst": 50.0}  # both tries of seed 3
    assert s["extended"] == 1
    table = markdown({"rows": rows, "summary": s}).splitlines()
    assert table[3].startswith("| 2 | 50.0 | FAIL | no | 300 | 6.0 | 1.0200 | 25.0 |")
    assert table[4].startswith("| 3 | 40.0 | pass | yes | 800 | 20.0 | 1.0050 | 50.0 |")
    assert table[5] == "| 4 | 3.0 | exit 2 | | | | | | | | |"
    assert table[-1] == (
        "median (worst): wall 40.0 s (50.0), ESS/s of wall 20.0 (6.0), gate passed 2/4 "
        "(1 after a second try)"
    )
