"""When a refit is due: the rule ``hbm update`` applies after updating users from a fit.

Updated users are drawn from the fitted population, which does not learn from them. That is
sound while they are few and look like the fitted users; the rule says a refit is due once
the users or days added reach ``REFIT_SHARE`` of the fitted ones, once a user's update fails its
Pareto k-hat check, or once a user's posterior mean lies far outside the population.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from hbm.inference.update import K_HAT_LIMIT, Updated, stack_users
from hbm.model.population import Population, population_of

#: When an update says a refit is due: the population was fitted without too much of the data.
REFIT_SHARE = 0.10
#: A user disagrees with the population when their posterior mean's distance from the
#: population's predictive mean, in predictive SDs (sum of squares over intercept and weights),
#: passes this quantile of its chi-square distribution: under the model it happens to fewer than
#: 1% of users (less still, since posterior means shrink towards the population).
DISAGREE_QUANTILE = 0.99


@dataclass(frozen=True)
class RefitAdvice:
    """Whether the population should be refitted, and the figures behind it."""

    due: bool
    reasons: tuple[str, ...]
    users_fitted: int
    users_added: int
    days_fitted: int
    days_added: int
    flagged_users: tuple[str, ...]
    disagreeing_users: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "reasons": list(self.reasons),
            "rule": (
                f"refit when users or days added since the fit reach {REFIT_SHARE:.0%} of the "
                f"fitted ones, when a user's update has Pareto k-hat > {K_HAT_LIMIT}, or when a "
                f"user's posterior mean lies beyond the population's {DISAGREE_QUANTILE:.0%} "
                "predictive region"
            ),
            "users_fitted": self.users_fitted,
            "users_added": self.users_added,
            "days_fitted": self.days_fitted,
            "days_added": self.days_added,
            "flagged_users": list(self.flagged_users),
            "disagreeing_users": list(self.disagreeing_users),
        }


def disagreeing(pop: Population, a: np.ndarray, w: np.ndarray, users: list[str]) -> list[str]:
    """Users whose posterior mean is outside the population's predictive region.

    ``a (S, U)``, ``w (S, U, K)``; the distance of ``E[beta_u]`` from the population's mean in
    predictive SDs, summed in squares, against ``chi2(K + 1)`` at ``DISAGREE_QUANTILE``.
    """
    m = np.column_stack([pop.a_loc, pop.w_loc])
    sd = np.sqrt(m.var(0) + (np.column_stack([pop.a_scale, pop.w_scale]) ** 2).mean(0))
    beta = np.concatenate([a.mean(0)[:, None], w.mean(0)], axis=1)
    dist = (((beta - m.mean(0)) / sd) ** 2).sum(1)
    limit = stats.chi2.ppf(DISAGREE_QUANTILE, m.shape[1])
    return [u for u, value in zip(users, dist, strict=True) if value > limit]


def refit_advice(
    tree: xr.DataTree, updated: Updated, previous: Mapping[str, Any] | None = None
) -> RefitAdvice:
    """The refit rule (``RefitAdvice.to_dict()["rule"]``) applied to an update of ``tree``.

    ``previous`` is the advice recorded when ``tree`` was itself written by an update: users and
    days are then counted from the fit the updates started from, so that a chain of small
    updates reaches the rule's share like one large update.
    """
    users_fitted = tree["posterior"].sizes["user"]
    days_fitted = tree["constant_data"].sizes["obs"]
    table = updated.users
    users_added = int((~table["known_user"]).sum()) if len(table) else 0
    days_added = int(table["days_added"].sum()) if len(table) else 0
    if previous:
        users_fitted, days_fitted = int(previous["users_fitted"]), int(previous["days_fitted"])
        users_added += int(previous["users_added"])
        days_added += int(previous["days_added"])
    flagged = tuple(table.loc[~table["ok"].astype(bool), "user_id"]) if len(table) else ()
    post = updated.tree["posterior"].to_dataset()
    names = list(table["user_id"]) if len(table) else []
    sub = post[["a", "w"]].sel(user=names)
    far = disagreeing(population_of(post), stack_users(sub["a"]), stack_users(sub["w"]), names)
    reasons = []
    if users_added >= REFIT_SHARE * users_fitted:
        reasons.append(f"{_count(users_added, 'user')} added to {users_fitted} fitted")
    if days_added >= REFIT_SHARE * days_fitted:
        reasons.append(f"{_count(days_added, 'day')} added to {days_fitted} fitted")
    if flagged:
        reasons.append(
            f"{_count(len(flagged), 'user')} with an update's Pareto k-hat > {K_HAT_LIMIT}"
        )
    if far:
        reasons.append(f"{_count(len(far), 'user')} far from the population")
    return RefitAdvice(
        bool(reasons),
        tuple(reasons),
        users_fitted,
        users_added,
        days_fitted,
        days_added,
        tuple(str(u) for u in flagged),
        tuple(far),
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
