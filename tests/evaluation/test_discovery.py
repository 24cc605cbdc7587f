"""Trigger discovery against a truth, on a weights table written by hand (counts worked out below).

Cells (ROPE 0.2, odds ratio 2 at |w| >= ln 2 = 0.693):

====  ====  ===============  =====  ============  ============  =============  ===========
cell  user  feature (kind)   true   interval      class         interval_class  covered
====  ====  ===============  =====  ============  ============  =============  ===========
1     u1    f1 (causal)      0.9    [0.3, 1.5]    trigger       trigger         yes
2     u2    f1 (causal)      -0.8   [-1.2, 0.1]   protector     uncertain       yes
3     u1    f2 (null)        0.1    [0.25, 0.9]   trigger       trigger         no
4     u2    f2 (causal)      0.5    [-0.6, 0.3]   protector     uncertain       no
5     u1    pm (premon.)     1.0    [0.4, 1.6]    possible ...  trigger         yes
6     u2    pm (premon.)     0.0    [-0.3, 0.3]   no assoc.     no assoc.       yes
7     u1    attack_yest.     0.7    [0.2, 0.6]    clustering    trigger         no
8     u2    attack_yest.     0.5    [0.1, 0.9]    clustering    trigger         yes
====  ====  ===============  =====  ============  ============  =============  ===========

False calls: cell 3 (true weight inside the ROPE, both rules) and cell 4 (a protector call on a
positive weight, ``class`` only). Cells 7 and 8 are never calls.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hbm.errors import HBMError
from hbm.evaluation.discovery import KINDS, discovery_table

CELLS = [
    ("u1", "f1", 0.9, 0.3, 1.5, "trigger", "trigger", "trigger"),
    ("u2", "f1", -0.8, -1.2, 0.1, "protector", "uncertain", "trigger"),
    ("u1", "f2", 0.1, 0.25, 0.9, "trigger", "trigger", "trigger"),
    ("u2", "f2", 0.5, -0.6, 0.3, "protector", "uncertain", "trigger"),
    ("u1", "pm", 1.0, 0.4, 1.6, "possible premonitory symptom", "trigger", "trigger"),
    ("u2", "pm", 0.0, -0.3, 0.3, "no association", "no association", "trigger"),
    ("u1", "attack_yesterday", 0.7, 0.2, 0.6, "clustering", "trigger", "clustering"),
    ("u2", "attack_yesterday", 0.5, 0.1, 0.9, "clustering", "trigger", "clustering"),
]
KINDS_OF = {"f1": "causal", "f2": "causal", "pm": "premonitory", "attack_yesterday": "clustering"}


def _weights_and_truth() -> tuple[pd.DataFrame, dict]:
    weights = pd.DataFrame(
        [
            {
                "user_id": u,
                "feature": f,
                "mean": (lb + ub) / 2,
                "ci_lb": lb,
                "ci_ub": ub,
                "ci_prob": 0.9,
                "class": cls,
                "interval_class": icls,
                "p_call": 0.5,
                "role": role,
            }
            for u, f, _, lb, ub, cls, icls, role in CELLS
        ]
    )
    truth: dict = {"weights": {"u1": {}, "u2": {}}, "kinds": KINDS_OF}
    for u, f, w, *_ in CELLS:
        truth["weights"][u][f] = w
    return weights, truth


def test_discovery_counts_by_hand():
    weights, truth = _weights_and_truth()
    table = discovery_table(weights, truth).set_index("kind")
    assert list(table.index) == list(KINDS)
    nan = math.nan
    expected = {
        # kind: n_cells, n_or2, coverage,
        #   class: calls, trigger, protector, false, fdp, power,
        #   interval_class: calls, trigger, protector, false, fdp, power
        "causal": (3, 2, 2 / 3, 3, 1, 2, 1, 1 / 3, 1.0, 1, 1, 0, 0, 0.0, 0.5),
        "negligible": (1, 0, 0.0, 1, 1, 0, 1, 1.0, nan, 1, 1, 0, 1, 1.0, nan),
        "premonitory": (2, 1, 1.0, 0, 0, 0, 0, 0.0, 0.0, 1, 1, 0, 0, 0.0, 1.0),
        "all": (6, 3, 4 / 6, 4, 2, 2, 2, 0.5, 2 / 3, 3, 3, 0, 1, 1 / 3, 2 / 3),
        "clustering": (2, 1, 0.5, 0, 0, 0, 0, 0.0, nan, 0, 0, 0, 0, 0.0, nan),
    }
    columns = ["n_cells", "n_or2", "coverage"]
    for rule in ("class", "interval_class"):
        columns += [f"{rule}_{c}" for c in ("calls", "trigger_calls", "protector_calls")]
        columns += [f"{rule}_{c}" for c in ("false_calls", "fdp", "power")]
    for kind, values in expected.items():
        got = table.loc[kind, columns].to_numpy(dtype=float)
        np.testing.assert_allclose(got, np.array(values, dtype=float), err_msg=kind)
    assert (table["ci_prob"] == 0.9).all() and (table["rope"] == 0.2).all()


def test_a_call_at_the_rope_edge():
    """|w| = 0.2 is causal and a call in its direction is right; just inside, or the other
    direction, is false."""
    weights = pd.DataFrame(
        {
            "user_id": ["u"] * 3,
            "feature": ["a", "b", "c"],
            "ci_lb": [0.3] * 3,
            "ci_ub": [0.9] * 3,
            "ci_prob": 0.9,
            "class": ["trigger", "trigger", "protector"],
            "interval_class": ["trigger", "trigger", "protector"],
            "role": "trigger",
        }
    )
    truth = {"weights": {"u": {"a": 0.2, "b": 0.19999, "c": 0.2}}}  # no kinds: no premonitory
    table = discovery_table(weights, truth).set_index("kind")
    assert table.loc["causal", "n_cells"] == 2 and table.loc["negligible", "n_cells"] == 1
    assert table.loc["premonitory", "n_cells"] == 0
    assert table.loc["causal", "class_false_calls"] == 1  # c: protector on +0.2
    assert table.loc["negligible", "class_false_calls"] == 1  # b: inside the ROPE
    assert table.loc["all", "class_fdp"] == pytest.approx(2 / 3)
    assert table.loc["clustering", "n_cells"] == 0
    assert np.isnan(table.loc["clustering", "coverage"])


def test_a_cell_missing_from_the_truth_is_named():
    weights, truth = _weights_and_truth()
    del truth["weights"]["u2"]["pm"]
    with pytest.raises(HBMError, match="the truth file has no weight for 'pm'"):
        discovery_table(weights, truth)
