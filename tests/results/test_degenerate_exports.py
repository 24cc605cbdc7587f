"""Exports of degenerate fits (issue 22, case 6): a finished fit never fails while writing its
files. Numbers that are not finite (an R-hat one chain cannot have, an odds ratio exp(800) that
no float holds) are ``null`` in the JSON exports, with a reason beside them.

Expected values come from hand arithmetic: exp(800) is beyond the largest float (about
exp(709.78)), so it is infinite.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from hbm.inference.diagnostics import Diagnostics
from hbm.results import io
from hbm.results import tables as tb
from hbm.results.json_values import NULL_REASONS, finite_or_null, json_ready
from hbm.results.tables import build_exports

from .test_posterior_rules import by_feature, cell, fit_result, tree

ONE_CHAIN = "it needs at least 2 chains and this fit has 1, so convergence cannot be checked"
INFINITE = "infinite: too large to represent (a weight too large to exponentiate?)"


def test_finite_or_null_replaces_every_non_finite_number_and_says_where():
    obj = {
        "a": 1.5,
        "b": [float("nan"), 2, (np.float64(np.inf), "x")],
        "c": {"d": -float("inf"), "e": np.int64(3), "f": None, "g": True},
    }
    clean, nulls = finite_or_null(obj)
    assert clean == {
        "a": 1.5,
        "b": [None, 2, (None, "x")],
        "c": {"d": None, "e": 3, "f": None, "g": True},
    }
    assert type(clean["c"]["e"]) is int and isinstance(clean["b"][2], tuple)
    assert nulls == {"b.0": "nan", "b.2.0": "inf", "c.d": "-inf"}


def test_summary_silences_numpy_s_runtime_warnings_only(monkeypatch):
    """A summary of draws that never change divides by zero (RuntimeWarning, silenced); any
    other warning ArviZ gives still reaches the user."""
    real = tb.az.summary

    def summary_that_warns(*args, **kwargs):
        warnings.warn("from numpy", RuntimeWarning, stacklevel=1)
        warnings.warn("from arviz", UserWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tb.az, "summary", summary_that_warns)
    dt = tree(mu=by_feature({"f1": cell(0.1, 0.5), "f2": np.full(20, 0.3)}))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        table = tb._summary(dt, "mu", 0.9, "eti")
    assert [(w.category, str(w.message)) for w in seen] == [(UserWarning, "from arviz")]
    assert table.loc["f2", "mean"] == pytest.approx(0.3) and table.loc["f1", "ci_lb"] == 0.1


def test_finite_or_null_places_keep_their_last_character():
    """Only the trailing "." separator is stripped from a place: a key ending in "X" stays whole."""
    obj = {"X": float("nan"), "rhat_MAX": float("inf")}
    assert finite_or_null(obj)[1] == {"X": "nan", "rhat_MAX": "inf"}


def test_json_ready_takes_the_reason_of_the_first_key_before_the_last():
    obj = {"per_variable": {"mu": {"max_rhat": float("nan")}}, "ess": float("nan")}
    got = json_ready(obj, {"per_variable": "not sampled", "max_rhat": "one chain"})
    assert got["null_reasons"] == {
        "per_variable.mu.max_rhat": "not sampled",
        "ess": NULL_REASONS["nan"],
    }
    only_first = json_ready(obj, {"per_variable": "not sampled"})["null_reasons"]
    assert only_first["per_variable.mu.max_rhat"] == "not sampled"


def test_json_ready_gives_each_null_its_reason():
    obj = {
        "max_rhat": float("nan"),
        "per_variable": {"mu": {"max_rhat": float("nan")}},
        "x": [np.inf],
    }
    assert json_ready(obj, {"max_rhat": "one chain"}) == {
        "max_rhat": None,
        "per_variable": {"mu": {"max_rhat": None}},
        "x": [None],
        "null_reasons": {
            "max_rhat": "one chain",
            "per_variable.mu.max_rhat": "one chain",
            "x.0": INFINITE,
        },
    }
    assert json_ready({"a": 1.0}) == {"a": 1.0}  # no nulls: no null_reasons entry
    assert NULL_REASONS["nan"].startswith("not a number")


def _degenerate(small_priors):
    """A hand-made fit of one chain's diagnostics whose user u1 has a weight of 800 on
    screen_hours: every odds ratio of that cell is exp(800), infinite."""
    result = fit_result(small_priors)
    w = result.tree["posterior"]["w"].copy()
    w.loc[{"user": "u1", "feature": "screen_hours"}] += 800.0
    posterior = result.tree["posterior"].to_dataset().assign(w=w)
    tree = result.tree.copy()
    tree["posterior"] = posterior
    diag = Diagnostics(
        reliable=False,
        reasons=(f"R-hat not available: {ONE_CHAIN}",),
        max_rhat=float("nan"),
        min_ess_bulk=10.0,
        min_ess_tail=12.0,
        divergences=0,
        ebfmi=(1.0,),
        per_variable={"w": {"max_rhat": float("nan"), "min_ess_bulk": 10.0, "min_ess_tail": 12.0}},
        not_available={"max_rhat": ONE_CHAIN},
    )
    return dataclasses.replace(result, tree=tree, diagnostics=diag)


def test_degenerate_values_are_null_with_a_reason_in_the_exports(small_priors):
    ex = build_exports(_degenerate(small_priors))
    json.dumps([ex.profiles, ex.diagnostics], allow_nan=False)  # what write_json requires
    d = ex.diagnostics
    assert d["max_rhat"] is None and d["per_variable"]["w"]["max_rhat"] is None
    assert d["null_reasons"] == {"max_rhat": ONE_CHAIN, "per_variable.w.max_rhat": ONE_CHAIN}
    assert d["not_available"] == {"max_rhat": ONE_CHAIN}
    u1 = next(p for p in ex.profiles if p["user_id"] == "u1")
    top = u1["top_triggers"][0]
    assert top["feature"] == "screen_hours" and top["weight"] > 800
    assert top["odds_ratio"] is None and top["odds_ratio_ci"] == [None, None]
    assert u1["null_reasons"] == {
        "top_triggers.0.odds_ratio": INFINITE,
        "top_triggers.0.odds_ratio_ci.0": INFINITE,
        "top_triggers.0.odds_ratio_ci.1": INFINITE,
    }
    assert all("null_reasons" not in p for p in ex.profiles if p["user_id"] != "u1")
    # the CSV tables keep the number itself
    row = ex.weights[(ex.weights["user_id"] == "u1") & (ex.weights["feature"] == "screen_hours")]
    assert np.isinf(row["odds_ratio"].iloc[0])


def test_a_degenerate_fit_writes_every_file_of_its_run_folder(small_priors, tmp_path):
    result = _degenerate(small_priors)
    ex = build_exports(result)
    run_info = json_ready({"reliable": False, "nan": float("nan")})
    io.write_run(tmp_path / "run", result.tree, ex, run_info)
    for name in io.RUN_FILES:
        assert (tmp_path / "run" / name).exists(), name
    back = json.loads((tmp_path / "run" / io.DIAGNOSTICS_FILE).read_text())
    assert back["max_rhat"] is None and back["null_reasons"]["max_rhat"] == ONE_CHAIN


@pytest.mark.parametrize("value", [709.0, -800.0])
def test_odds_ratios_that_a_float_holds_stay_numbers(small_priors, value):
    # exp(709) is about 8.2e307, below the largest float; exp(-800) underflows to 0, a number
    result = fit_result(small_priors)
    w = result.tree["posterior"]["w"].copy()
    w.loc[{"user": "u2", "feature": "chocolate"}] = value
    tree = result.tree.copy()
    tree["posterior"] = result.tree["posterior"].to_dataset().assign(w=w)
    ex = build_exports(dataclasses.replace(result, tree=tree))
    assert all("null_reasons" not in p for p in ex.profiles)
