"""Scoring fits against known truth (simulated cohorts).

Held-out prediction metrics and model comparison belong here too (baselines issue); for now:
weight recovery of a weights table against a simulator's truth file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hbm.posterior import ROPE


def weight_recovery(weights: pd.DataFrame, truth: dict[str, Any]) -> dict[str, Any]:
    """How well per-user weights recover the simulated truth.

    Parameters
    ----------
    weights
        ``weights.csv`` of a run (user_id, feature, mean, ci_lb, ci_ub, class).
    truth
        The simulator's truth (``<diary>.truth.json``).

    Returns
    -------
    dict
        ``rmse`` of posterior means, ``coverage`` of the intervals (their probability is in the
        table), ``sign_accuracy`` where the true weight lies outside the ROPE, and
        ``false_trigger_rate``: the share of cells called "trigger" whose true weight is <= ROPE;
        ``coverage_by_feature`` breaks the coverage down by feature.
    """
    true = np.array(
        [
            truth["weights"][u][f]
            for u, f in zip(weights["user_id"], weights["feature"], strict=True)
        ]
    )
    mean = weights["mean"].to_numpy()
    covered = (weights["ci_lb"].to_numpy() <= true) & (true <= weights["ci_ub"].to_numpy())
    clear = np.abs(true) > ROPE
    called = (weights["class"] == "trigger").to_numpy()
    return {
        "n_cells": float(len(true)),
        "rmse": float(np.sqrt(np.mean((mean - true) ** 2))),
        "coverage": float(covered.mean()),
        "ci_prob": float(weights["ci_prob"].iloc[0]),
        "sign_accuracy": float((np.sign(mean[clear]) == np.sign(true[clear])).mean())
        if clear.any()
        else float("nan"),
        "false_trigger_rate": float((true[called] <= ROPE).mean()) if called.any() else 0.0,
        "n_triggers_called": float(called.sum()),
        "coverage_by_feature": {
            str(k): float(v)
            for k, v in pd.Series(covered).groupby(weights["feature"].to_numpy()).mean().items()
        },
    }
