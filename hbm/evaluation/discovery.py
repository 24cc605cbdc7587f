"""Trigger discovery against a simulator's truth: calls, false calls, FDP, power and coverage.

``discovery_table(weights, truth)`` scores one per-user weights table (``weights.csv``:
``user_id``, ``feature``, ``ci_lb``, ``ci_ub``, ``ci_prob``, ``class``, ``interval_class``,
``role``) against the true weights ``truth["weights"][user][feature]``. Each (user, feature) cell
has a kind:

* ``clustering``: the ``attack_yesterday`` row (``role == "clustering"``, or the truth's kind
  ``"clustering"``). It is never a call; only its coverage is reported.
* ``premonitory``: a feature whose truth kind (``truth["kinds"][feature]``, when the truth
  records kinds) is ``"premonitory"``.
* ``causal``: any other cell with ``|true weight| >= rope``.
* ``negligible``: any other cell with ``|true weight| < rope``.

``all`` is every cell but the clustering row. For each rule, ``class`` (the default call) and
``interval_class`` (the interval outside the ROPE), a *call* is a cell classed ``trigger`` or
``protector`` (``possible premonitory symptom``, ``no association`` and ``uncertain`` are not
calls). A call is *false* when the true weight lies inside the ROPE (``|w| < rope``; a weight of
exactly ``rope`` is causal) or has the other sign than the call. Per kind and rule:
``<rule>_calls`` (and its ``_trigger_calls``, ``_protector_calls``), ``<rule>_false_calls``,
``<rule>_fdp`` = false calls / max(calls, 1) (the realized false-discovery proportion, 0 without
calls, the convention of the false discovery rate; the ``all`` row is over every call of the
rule), ``<rule>_power`` = the share of the kind's cells with ``|w| >= ln 2`` (odds ratio at
least 2; ``n_or2``) called in their true direction (NaN without such cells). ``coverage`` is the
share of the kind's cells whose interval (``ci_prob``) holds the true weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hbm.defaults import ROPE
from hbm.errors import HBMError

RULES = ("class", "interval_class")
KINDS = ("causal", "negligible", "premonitory", "all", "clustering")
CALLS = {"trigger": 1.0, "protector": -1.0}
#: |true weight| from which a cell counts towards power: an odds ratio of at least 2.
STRONG = float(np.log(2.0))


def true_weights(weights: pd.DataFrame, truth: dict[str, Any]) -> np.ndarray:
    """The truth's weight of every (user_id, feature) row of a weights table."""
    try:
        return np.array(
            [
                float(truth["weights"][str(u)][str(f)])
                for u, f in zip(weights["user_id"], weights["feature"], strict=True)
            ],
            dtype=float,
        )
    except KeyError as exc:
        raise HBMError(f"the truth file has no weight for {exc}") from None


def cell_kinds(
    weights: pd.DataFrame, true: np.ndarray, truth: dict[str, Any], rope: float = ROPE
) -> np.ndarray:
    """Each cell's kind (module doc): causal, negligible, premonitory or clustering."""
    kinds = truth.get("kinds") or {}
    of_feature = np.array([kinds.get(str(f), "") for f in weights["feature"]], dtype=object)
    clustering = (weights["role"].to_numpy() == "clustering") | (of_feature == "clustering")
    out = np.where(np.abs(true) >= rope, "causal", "negligible").astype(object)
    out[of_feature == "premonitory"] = "premonitory"
    out[clustering] = "clustering"
    return out


def _rule_columns(
    rule: str, calls: np.ndarray, true: np.ndarray, sel: np.ndarray, rope: float
) -> dict[str, float]:
    """Calls, false calls, FDP and power of one rule over the cells ``sel``."""
    direction = np.array([CALLS.get(c, 0.0) for c in calls])
    called = sel & (direction != 0)
    false = called & ((np.abs(true) < rope) | (np.sign(true) != direction))
    strong = sel & (np.abs(true) >= STRONG)
    right = called & (np.sign(true) == direction)
    n_calls = int(called.sum())
    return {
        f"{rule}_calls": n_calls,
        f"{rule}_trigger_calls": int((called & (direction > 0)).sum()),
        f"{rule}_protector_calls": int((called & (direction < 0)).sum()),
        f"{rule}_false_calls": int(false.sum()),
        f"{rule}_fdp": float(false.sum() / max(n_calls, 1)),
        f"{rule}_power": float(right[strong].mean()) if strong.any() else float("nan"),
    }


def discovery_table(
    weights: pd.DataFrame, truth: dict[str, Any], rope: float = ROPE
) -> pd.DataFrame:
    """One row per kind of cell (``KINDS``): calls and false calls of each rule, FDP, power and
    coverage (module doc). ``weights`` is ``hbm.results.tables.weights_table``'s (``class``,
    ``interval_class`` and ``role``)."""
    true = true_weights(weights, truth)
    kind = cell_kinds(weights, true, truth, rope)
    covered = (weights["ci_lb"].to_numpy() <= true) & (true <= weights["ci_ub"].to_numpy())
    ci_prob = float(weights["ci_prob"].iloc[0]) if len(weights) else float("nan")
    rows = []
    for k in KINDS:
        sel = kind != "clustering" if k == "all" else kind == k
        row: dict[str, Any] = {
            "kind": k,
            "n_cells": int(sel.sum()),
            "n_or2": int((sel & (np.abs(true) >= STRONG)).sum()),
            "coverage": float(covered[sel].mean()) if sel.any() else float("nan"),
            "ci_prob": ci_prob,
            "rope": rope,
        }
        for rule in RULES:
            cols = _rule_columns(rule, weights[rule].to_numpy(), true, sel, rope)
            if k == "clustering":  # never a call, so no power either
                cols = {c: (float("nan") if c.endswith("_power") else 0) for c in cols}
            row.update(cols)
        rows.append(row)
    return pd.DataFrame(rows)
