"""Smoke test of the fit-speed harness on its tiny size (no timing is asserted)."""

from __future__ import annotations

import json

from benchmarks.fit_speed import main, size_priors
from benchmarks.table import markdown


def test_large_size_has_24_distinct_features():
    priors = size_priors(24)
    assert len(set(priors.keys)) == 24
    assert priors.keys[-1].endswith("_lag2")


def test_fit_speed_harness_smoke(tmp_path):
    out = tmp_path / "results.json"
    assert main(["--sizes", "tiny", "--backends", "nutpie", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    (run,) = doc["runs"]
    assert run["size"] == "tiny" and run["backend"] == "nutpie" and run["rows"] == 240
    for key in ("wall_s", "min_ess_bulk", "min_ess_tail", "max_rhat", "grad_numba_ms"):
        assert run[key] > 0
    assert run["leapfrog_steps"] > 0 and run["divergences"] >= 0
    assert doc["versions"]["pymc"]
    table = markdown(doc).splitlines()
    assert len(table) == 3 and table[2].startswith("| tiny | 240 | nutpie |")
