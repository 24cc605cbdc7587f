"""Go / no-go for personalization on a user's own data, by the earlier study's unblock criteria.

Personalization (per-user weights) is recommended only when all hold:

1. enough data: at least ``MIN_USERS`` users and a median of at least ``MIN_MEDIAN_DAYS`` days;
2. users differ: for at least one trigger feature, P(tau > ``SPREAD``) >= ``SPREAD_PROB`` in the
   hierarchical fit (between-user SD on the log-odds scale, from ``population.csv``); features
   flagged premonitory and the clustering term do not count (``spread_features``);
3. it predicts better: on held-out days (``hbm compare``), the paired-bootstrap interval of the
   mean within-person AUC difference ``hbm - global`` lies above zero, and the interval of the
   Brier difference does not lie above zero.

Without a comparison, criterion 3 is unmet (``hbm compare`` must be run first).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from hbm.defaults import SPREAD, SPREAD_COLUMN

MIN_USERS = 20
MIN_MEDIAN_DAYS = 90
SPREAD_PROB = 0.95


@dataclass(frozen=True)
class Decision:
    """The verdict, each criterion's result and the reasons in words."""

    personalize: bool
    checks: dict[str, bool]
    reasons: tuple[str, ...]


def spread_features(population: pd.DataFrame) -> pd.DataFrame:
    """The rows whose spread may show that users differ in their triggers: role ``trigger`` and
    not flagged ``premonitory_confound``. A premonitory symptom's spread follows each user's
    attacks, not a trigger (issue 21: on a simulated cohort the only feature to pass was the
    no-effect premonitory one), and the clustering term is no trigger."""
    keep = pd.Series(True, index=population.index)
    if "role" in population:
        keep &= population["role"] == "trigger"
    if "premonitory_confound" in population:
        keep &= ~population["premonitory_confound"].astype(bool)
    return population[keep]


def decide(
    population: pd.DataFrame, users: pd.DataFrame, comparison: pd.DataFrame | None
) -> Decision:
    """Apply the criteria of the module doc to an hbm run's tables and a comparison table."""
    reasons = []
    n_users, median_days = len(users), float(users["days_logged"].median())
    enough = n_users >= MIN_USERS and median_days >= MIN_MEDIAN_DAYS
    reasons.append(
        f"data: {n_users} users, median {median_days:g} days "
        f"(needs >= {MIN_USERS} users and >= {MIN_MEDIAN_DAYS} days): "
        + ("enough" if enough else "not enough")
    )
    col = SPREAD_COLUMN
    if col in population:
        eligible = spread_features(population)
        strong = eligible.loc[eligible[col] >= SPREAD_PROB, ["feature", col]]
        differ = len(strong) > 0
        top = eligible.sort_values(col, ascending=False).head(3)
        reasons.append(
            f"spread: {len(strong)} feature(s) with P(tau > {SPREAD:g}) >= {SPREAD_PROB:g}"
            + (f" ({', '.join(strong['feature'])})" if differ else "")
            + "; highest: "
            + ", ".join(f"{f} {p:.2f}" for f, p in zip(top["feature"], top[col], strict=True))
        )
    else:
        differ = False
        reasons.append("spread: the run has no between-user SD (not a partial-pooling fit)")
    better = False
    if comparison is None:
        reasons.append("held-out: no comparison (run `hbm compare`), so no evidence of gain")
    else:
        row = comparison.loc[comparison["model"] == "hbm"]
        if row.empty:
            reasons.append("held-out: the comparison has no 'hbm' row")
        else:
            r = row.iloc[0]
            better = bool(r["d_within_auc_lb"] > 0 and not r["d_brier_lb"] > 0)
            reasons.append(
                f"held-out: within-person AUC hbm - global {r['d_within_auc']:+.4f} "
                f"[{r['d_within_auc_lb']:+.4f}, {r['d_within_auc_ub']:+.4f}], Brier "
                f"{r['d_brier']:+.5f} [{r['d_brier_lb']:+.5f}, {r['d_brier_ub']:+.5f}] "
                f"({r['boot_ci_prob']:.0%} paired bootstrap over users): "
                + ("better" if better else "not shown better")
            )
    checks = {"enough_data": enough, "users_differ": differ, "predicts_better": better}
    return Decision(all(checks.values()), checks, tuple(reasons))
