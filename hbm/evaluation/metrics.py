"""Scoring fits against known truth (simulated cohorts).

Held-out prediction metrics and model comparison belong here too (baselines issue); for now:
weight recovery of a weights table against a simulator's truth file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hbm.defaults import ROPE


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


ECE_BINS = 10
BOOTSTRAP = 2000


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Share-weighted mean |observed rate - mean prediction| over equal-width probability bins."""
    from sklearn.calibration import calibration_curve

    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # calibration_curve's bins (right-closed: searchsorted), so that a prediction on an edge is
    # counted in the bin its rate and mean come from (np.histogram's bins are left-closed)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=n_bins)
    rate, pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    return float(np.sum(counts[counts > 0] / len(p) * np.abs(rate - pred)))


def per_user_scores(y: np.ndarray, p: np.ndarray, user_index: np.ndarray) -> pd.DataFrame:
    """Per user: test days, attacks, within-person AUC (NaN without both classes), Brier and
    log-loss sums (for pooled and bootstrapped metrics)."""
    from sklearn.metrics import roc_auc_score

    p = np.clip(p, 1e-12, 1 - 1e-12)
    rows = []
    for u in np.unique(user_index):
        sel = user_index == u
        yu, pu = y[sel], p[sel]
        both = 0 < yu.sum() < len(yu)
        rows.append(
            {
                "user": int(u),
                "n_test": int(sel.sum()),
                "attacks": int(yu.sum()),
                "auc": float(roc_auc_score(yu, pu)) if both else np.nan,
                "sse": float(np.sum((pu - yu) ** 2)),
                "nll": float(-np.sum(yu * np.log(pu) + (1 - yu) * np.log(1 - pu))),
            }
        )
    return pd.DataFrame(rows)


def scores(y: np.ndarray, p: np.ndarray, user_index: np.ndarray) -> dict[str, float]:
    """Held-out metrics of one model (scikit-learn's): within-person AUC median and IQR over users
    with both classes, pooled AUC, Brier, log-loss and expected calibration error."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    per_user = per_user_scores(y, p, user_index)
    auc = per_user["auc"].dropna()
    return {
        "within_auc_median": float(auc.median()) if len(auc) else np.nan,
        "within_auc_q25": float(auc.quantile(0.25)) if len(auc) else np.nan,
        "within_auc_q75": float(auc.quantile(0.75)) if len(auc) else np.nan,
        "within_auc_mean": float(auc.mean()) if len(auc) else np.nan,
        "users_with_auc": float(len(auc)),
        "pooled_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else np.nan,
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
    }


def paired_bootstrap(
    model: pd.DataFrame,
    reference: pd.DataFrame,
    n_boot: int = BOOTSTRAP,
    seed: int = 0,
    ci_prob: float = 0.95,
) -> dict[str, float]:
    """Differences model - reference, resampling users with replacement (paired: the same users).

    ``model`` and ``reference`` are ``per_user_scores`` tables of the same test rows. Returns the
    point difference and interval of: mean within-person AUC (over users with an AUC), Brier and
    log-loss (pooled over the resampled users' days).
    """
    m = model.set_index("user")
    r = reference.set_index("user").reindex(m.index)
    n = m["n_test"].to_numpy(dtype=float)
    d_auc = (m["auc"] - r["auc"]).to_numpy()
    d_sse = (m["sse"] - r["sse"]).to_numpy()
    d_nll = (m["nll"] - r["nll"]).to_numpy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(m), size=(n_boot, len(m)))
    valid = ~np.isnan(d_auc)
    auc_boot = np.nansum(np.where(valid, d_auc, 0.0)[idx], axis=1) / np.maximum(
        valid[idx].sum(axis=1), 1
    )
    if not valid.any():  # no user has an AUC: no interval either (not [0, 0])
        auc_boot = np.full(n_boot, np.nan)
    brier_boot = d_sse[idx].sum(axis=1) / n[idx].sum(axis=1)
    nll_boot = d_nll[idx].sum(axis=1) / n[idx].sum(axis=1)
    lo, hi = 100 * (1 - ci_prob) / 2, 100 * (1 + ci_prob) / 2
    out: dict[str, float] = {"boot_ci_prob": ci_prob, "n_boot": float(n_boot)}
    for name, point, boot in (
        ("within_auc", float(np.nanmean(d_auc)) if valid.any() else np.nan, auc_boot),
        ("brier", float(d_sse.sum() / n.sum()), brier_boot),
        ("log_loss", float(d_nll.sum() / n.sum()), nll_boot),
    ):
        out[f"d_{name}"] = point
        out[f"d_{name}_lb"] = float(np.percentile(boot, lo))
        out[f"d_{name}_ub"] = float(np.percentile(boot, hi))
    return out


def weight_stability(first_half: pd.DataFrame, full: pd.DataFrame) -> dict[str, float]:
    """Per-user posterior mean weights fitted on the first half of the training days against all
    of them: mean absolute change and Pearson correlation over (user, feature)."""
    key = ["user_id", "feature"]
    joined = first_half[[*key, "mean"]].merge(full[[*key, "mean"]], on=key, suffixes=("_h", "_f"))
    a, b = joined["mean_h"].to_numpy(), joined["mean_f"].to_numpy()
    corr = float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else np.nan
    return {"mean_abs_change": float(np.mean(np.abs(a - b))), "correlation": corr}
