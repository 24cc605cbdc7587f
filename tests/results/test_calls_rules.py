"""The FDR-controlled trigger calls (``hbm.results.calls``) against answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from hbm.defaults import FDR_LEVEL
from hbm.results.calls import (
    CLUSTERING,
    NO_ASSOCIATION,
    PREMONITORY,
    PROTECTOR,
    TRIGGER,
    UNCERTAIN,
    call_classes,
    fdr_calls,
)

ALL = np.ones(6, dtype=bool)


def test_the_default_level_is_two_percent():
    assert FDR_LEVEL == 0.02


def test_calls_the_largest_set_whose_mean_false_probability_is_within_the_level():
    # ranked p: 0.99, 0.97, 0.95, 0.90, 0.80, 0.50 -> 1-p: .01 .03 .05 .10 .20 .50
    # running means: .01, .02, .03, .0475, .078, .148 -> the first four (mean .0475 <= .05)
    p_up = np.array([0.50, 0.99, 0.90, 0.95, 0.80, 0.97])
    calls = fdr_calls(p_up, np.zeros(6), ALL, 0.05)
    assert calls.direction.tolist() == [0, 1, 1, 1, 0, 1]
    assert calls.threshold == pytest.approx(0.90)
    assert calls.expected_fdr == pytest.approx(0.0475)
    assert calls.n_calls == 4
    # a stricter level stops earlier: .01, .02, .03 <= .031 < .0475
    assert fdr_calls(p_up, np.zeros(6), ALL, 0.031).direction.tolist() == [0, 1, 0, 1, 0, 1]


def test_at_five_percent_every_cell_of_095_or_more_is_called():
    p_up = np.array([0.95, 0.96, 0.999, 0.2, 0.1, 0.0])
    calls = fdr_calls(p_up, np.zeros(6), ALL, 0.05)
    assert calls.direction[:3].tolist() == [1, 1, 1]


def test_direction_is_the_likelier_side_and_protectors_count_alike():
    p_up = np.array([0.0, 0.99, 0.01, 0.0, 0.4, 0.0])
    p_down = np.array([0.98, 0.0, 0.97, 0.0, 0.5, 0.0])
    calls = fdr_calls(p_up, p_down, ALL, 0.05)
    # ranked 0.99 (up), 0.98 (down), 0.97 (down), then 0.5: means .01 .015 .02 .14
    assert calls.direction.tolist() == [-1, 1, -1, 0, 0, 0]
    assert calls.p_call.tolist() == [0.98, 0.99, 0.97, 0.0, 0.5, 0.0]
    assert calls.summary()["n_protectors"] == 2
    assert calls.summary()["n_triggers"] == 1


def test_cells_that_may_not_be_called_are_not_ranked():
    p_up = np.array([0.99, 0.99, 0.91, 0.0, 0.0, 0.0])
    may_call = np.array([False, True, True, True, True, True])
    calls = fdr_calls(p_up, np.zeros(6), may_call, 0.05)
    # without cell 0 the ranking is .99, .91: mean .05 -> both; with it, .99 .99 .91: .0367
    assert calls.direction.tolist() == [0, 1, 1, 0, 0, 0]
    assert calls.expected_fdr == pytest.approx(0.05)


def test_ties_at_the_threshold_are_called_together_or_not_at_all():
    # .99 then three cells at .92: with all three the mean is (.01 + .24) / 4 = .0625 > .05, so
    # none of the tied cells is called, although one or two alone would fit the level
    p_up = np.array([0.99, 0.92, 0.92, 0.92, 0.0, 0.0])
    calls = fdr_calls(p_up, np.zeros(6), ALL, 0.05)
    assert calls.direction.tolist() == [1, 0, 0, 0, 0, 0]
    assert calls.threshold == pytest.approx(0.99)


def test_nothing_called():
    calls = fdr_calls(np.full(6, 0.5), np.zeros(6), ALL, 0.05)
    assert calls.n_calls == 0
    assert calls.expected_fdr == 0.0
    assert calls.threshold == pytest.approx(0.95)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1])
def test_level_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match="FDR level"):
        fdr_calls(np.zeros(2), np.zeros(2), np.ones(2, bool), bad)


def test_classes_of_calls_premonitory_and_clustering_cells():
    p_up = np.array([0.99, 0.99, 0.10, 0.50, 0.60, 0.99, 0.0])
    p_down = np.array([0.0, 0.0, 0.97, 0.0, 0.0, 0.0, 0.0])
    role = np.array(["trigger"] * 5 + ["clustering", "trigger"])
    premonitory = np.array([False, True, True, False, True, False, False])
    interval = np.array(
        [TRIGGER, TRIGGER, PROTECTOR, "no association", "uncertain", TRIGGER, "no association"]
    )
    trigger = role == "trigger"
    calls = fdr_calls(p_up, p_down, trigger & ~premonitory, 0.05)
    classes = call_classes(calls, p_up, interval, role, premonitory)
    assert classes.tolist() == [
        TRIGGER,  # called
        PREMONITORY,  # would be called a trigger, but the feature is premonitory-flagged
        UNCERTAIN,  # premonitory features are never called, protectors neither
        NO_ASSOCIATION,  # not called, interval inside the ROPE
        UNCERTAIN,  # premonitory, p_up below the threshold
        CLUSTERING,  # never called
        NO_ASSOCIATION,
    ]


def test_weights_table_classes_p_call_and_calls_summary_by_hand():
    """One user: screen hours clearly above the ROPE (called), chocolate flagged premonitory and
    as clear (never called: possible premonitory symptom), pressure near 0, and the clustering
    term (its own class, no p_call)."""
    import json

    import pandas as pd
    import xarray as xr

    from hbm.data.priors import parse_priors
    from hbm.results.tables import weights_calls

    from ..conftest import small_priors_doc

    doc = small_priors_doc()
    doc["variables"][1]["premonitory_confound"] = True
    doc["clustering"] = {
        "log_odds_prior": {"mean": 0.7, "sd": 0.5, "between_user_sd": 0.5},
        "source": "test",
    }
    priors = parse_priors(json.dumps(doc))
    ramp = np.linspace(0.0, 1.0, 20)
    draws = np.stack([1.0 + ramp, 1.0 + ramp, -0.1 + 0.2 * ramp, 1.0 + ramp], axis=-1)
    post = xr.Dataset(
        {"w": (("chain", "draw", "user", "feature"), draws.reshape(2, 10, 1, 4))},
        coords={
            "chain": [0, 1],
            "draw": np.arange(10),
            "user": ["u"],
            "feature": list(priors.keys),
        },
    )
    table, calls = weights_calls(xr.DataTree.from_dict({"posterior": post}), priors)
    table = table.set_index("feature")
    assert table["class"].tolist() == [
        "trigger",
        "possible premonitory symptom",
        "no association",
        "clustering",
    ]
    assert table.loc["chocolate", "p_call"] == 1.0  # shown, though never called
    assert table.loc["pressure_drop", "p_call"] == 0.0  # no draw beyond +-0.2
    assert pd.isna(table.loc["attack_yesterday", "p_call"])
    assert table.loc["attack_yesterday", "interval_class"] == "clustering"
    assert calls.summary()["n_calls"] == 1 and calls.expected_fdr == 0.0
