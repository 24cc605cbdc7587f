"""The figures of the report, as PNG bytes.

Posterior and diagnostic figures come from arviz_plots (rank, energy, forest, posterior
predictive checks); the heatmap, per-user weights, confidence and "days needed" are matplotlib
drawings of the exported tables, so every number shown is one of the exports.
"""

from __future__ import annotations

import io as _bytes_io
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import xarray as xr

from hbm.defaults import CiKind
from hbm.results.io import RunFolder
from hbm.results.plots import energy_plot, forest_plot, rank_plot

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DPI = 80
CLASS_MARK = {
    "trigger": "+",
    "protector": "\u2212",
    "no association": "0",
    "uncertain": "",
    "possible premonitory symptom": "p",
    "clustering": "c",
}
CLASS_COLOUR = {
    "trigger": "#b2182b",
    "protector": "#2166ac",
    "no association": "#4d4d4d",
    "uncertain": "#9e9e9e",
    "possible premonitory symptom": "#e08214",
    "clustering": "#762a83",
}
CONFIDENCE_FIGURE = "confidence_days.png"  # one name whichever of the two drawings it holds


def _png(fig: Any) -> bytes:
    buf = _bytes_io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def pc_png(pc: Any) -> bytes:
    """An arviz_plots ``PlotCollection`` as PNG bytes."""
    return _png(pc.get_viz("figure"))


def heatmap(weights: pd.DataFrame) -> bytes:
    """Users x features, posterior mean log-odds, each cell marked by its class."""
    mean = weights.pivot(index="user_id", columns="feature", values="mean")
    cls = weights.pivot(index="user_id", columns="feature", values="class")
    order = list(dict.fromkeys(weights["feature"]))
    mean, cls = mean[order], cls[order]
    lim = float(np.nanmax(np.abs(mean.to_numpy()))) or 1.0
    fig, ax = plt.subplots(figsize=(1.0 + 0.42 * len(order), 1.5 + 0.22 * len(mean)))
    im = ax.imshow(mean.to_numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(mean.shape[0]):
        for j in range(mean.shape[1]):
            mark = CLASS_MARK[str(cls.iloc[i, j])]
            if mark:
                ax.text(j, i, mark, ha="center", va="center", fontsize=8, color="black")
    ax.set_xticks(range(len(order)), order, rotation=75, fontsize=8)
    ax.set_yticks(range(len(mean)), mean.index, fontsize=7)
    ax.set_title(
        "posterior mean weight (log-odds); + trigger, \u2212 protector, 0 no association, "
        "p possible premonitory symptom, c clustering"
    )
    fig.colorbar(im, ax=ax, shrink=0.6, label="log-odds per unit exposure")
    return _png(fig)


def user_forest(user_rows: pd.DataFrame, population: pd.DataFrame) -> bytes:
    """One user's weights with intervals, beside the population weight ``mu`` (exports only)."""
    rows = user_rows.set_index("feature")
    pop = population.set_index("feature").reindex(rows.index)
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.28 * len(rows)))
    if "mu_mean" in pop:
        ax.errorbar(
            pop["mu_mean"],
            y - 0.18,
            xerr=[pop["mu_mean"] - pop["mu_ci_lb"], pop["mu_ci_ub"] - pop["mu_mean"]],
            fmt="s",
            ms=3,
            color="#999999",
            label="population mu",
        )
    colours = [CLASS_COLOUR[c] for c in rows["class"]]
    ax.hlines(y + 0.12, rows["ci_lb"], rows["ci_ub"], colors=colours)
    ax.scatter(rows["mean"], y + 0.12, c=colours, s=14, zorder=3, label="this user")
    rope = float(rows["rope"].iloc[0])
    ax.axvspan(-rope, rope, color="#eeeeee", zorder=0)
    ax.axvline(0, color="#bbbbbb", lw=0.8)
    ax.set_yticks(y, rows.index, fontsize=8)
    ax.set_xlabel("weight (log-odds); grey band: ROPE")
    ax.legend(loc="lower right", fontsize=7)
    return _png(fig)


def common_days(users: pd.DataFrame) -> int | None:
    """The number of days every user logged, or ``None`` when users logged different numbers."""
    days = users["days_logged"].unique()
    return int(days[0]) if len(days) == 1 else None


def confidence_vs_days(users: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.scatter(users["days_logged"], users["confidence"], s=16)
    ax.set_xlabel("days logged")
    ax.set_ylabel("personalization confidence")
    ax.set_ylim(0, 1)
    ax.set_title("confidence against days logged")
    return _png(fig)


def confidence_histogram(users: pd.DataFrame, days: int) -> bytes:
    """Confidence over users, for a cohort in which every user logged ``days`` days."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.hist(
        users["confidence"], bins=np.linspace(0, 1, 21).tolist(), color="#4477aa", edgecolor="white"
    )
    ax.set_xlabel("personalization confidence")
    ax.set_ylabel("users")
    ax.set_xlim(0, 1)
    ax.set_title(f"confidence of {len(users)} users, each with {days} days logged")
    return _png(fig)


def confidence_figure(users: pd.DataFrame) -> bytes:
    """Confidence against days logged; its histogram when every user logged the same days.

    With one number of days the scatter would be a vertical line of points, which says nothing
    about how confidence grows with days.
    """
    days = common_days(users)
    return confidence_vs_days(users) if days is None else confidence_histogram(users, days)


def days_needed_plot(days: pd.DataFrame) -> bytes:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    a1.plot(days["days"], days["median_ci_width"], "o-")
    a1.set_xlabel("days logged")
    a1.set_ylabel(f"median {days['ci_prob'].iloc[0]:.0%} interval width")
    for col, label in (
        ("decided_share", "class decided"),
        ("class_accuracy", "class correct"),
        ("wrong_class_rate", "class wrong"),
        ("trigger_sensitivity", "true triggers found"),
    ):
        a2.plot(days["days"], days[col], "o-", label=label)
    a2.set_xlabel("days logged")
    a2.set_ylim(0, 1)
    a2.legend(fontsize=7)
    fig.suptitle("a new user drawn from the fitted population")
    return _png(fig)


def _user_rates(tree: xr.DataTree) -> xr.DataTree:
    """Per-user attack rate: observed, and per posterior-predictive draw (for a grouped PPC)."""
    idx = np.asarray(tree["constant_data"]["user_index"].values)
    users = np.asarray(tree["posterior"]["user"].values)
    y = np.asarray(tree["observed_data"]["y"].values, dtype=float)
    yrep = tree["posterior_predictive"]["y"]
    days = np.maximum(np.bincount(idx, minlength=len(users)), 1)
    draws = np.asarray(yrep.values, dtype=float)

    def rates(y_obs: np.ndarray) -> np.ndarray:
        return np.asarray(np.bincount(idx, weights=y_obs, minlength=len(users)) / days)

    obs = xr.DataArray(rates(y), dims=["user"], coords={"user": users})
    per_draw = np.stack([rates(row) for row in draws.reshape(-1, draws.shape[-1])])
    rep = xr.DataArray(
        per_draw.reshape(*draws.shape[:-1], len(users)),
        dims=["chain", "draw", "user"],
        coords={"chain": yrep["chain"], "draw": yrep["draw"], "user": users},
    )
    return xr.DataTree.from_dict(
        {
            "posterior_predictive": rep.to_dataset(name="attack_rate"),
            "observed_data": obs.to_dataset(name="attack_rate"),
        }
    )


def azp_pava(tree: xr.DataTree, ci_prob: float) -> Any:
    import arviz_plots as azp

    with warnings.catch_warnings():
        # arviz_stats keeps the curve's four lines as "chain" and its points as "draw", and
        # warns that chain is longer when a small diary gives fewer than four points
        warnings.filterwarnings("ignore", "Found chain dimension to be longer", UserWarning)
        return azp.plot_ppc_pava(tree, var_names=["y"], ci_prob=ci_prob)


#: Predictive draws drawn in the per-user attack rate check (arviz_plots' own default).
PPC_DRAWS = 50


def azp_ppc_dist(rates: xr.DataTree) -> Any:
    import arviz_plots as azp

    # a fit of fewer draws shows them all (arviz_plots would warn, then do the same)
    sizes = rates["posterior_predictive"].sizes
    shown = min(PPC_DRAWS, int(sizes["chain"]) * int(sizes["draw"]))
    with warnings.catch_warnings():
        # when every user's days are all attacks or none, the rates are all 0 or 1 and look
        # binary to arviz_plots; they are still the per-user rates this check compares
        warnings.filterwarnings("ignore", ".*look binary", UserWarning)
        return azp.plot_ppc_dist(rates, var_names=["attack_rate"], kind="ecdf", num_samples=shown)


def auc_by_model(per_user: pd.DataFrame) -> bytes:
    """Within-person AUC per user, one box per model."""
    models = list(dict.fromkeys(per_user["model"]))
    data = [per_user.loc[per_user["model"] == m, "auc"].dropna() for m in models]
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(models), 3.6))
    ax.boxplot(data, tick_labels=models)
    ax.set_ylabel("within-person AUC")
    ax.tick_params(axis="x", rotation=30)
    return _png(fig)


def draw_figures(
    run: RunFolder,
    tree: xr.DataTree,
    ci_prob: float,
    ci_kind: CiKind,
    days: pd.DataFrame | None = None,
    per_user_metrics: pd.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, bytes]:
    """Every figure the run supports, by file name under ``figures/``.

    Figures a run cannot have are left out: rank and forest without population variables
    (pooling none), rank with one chain, the calibration pair without posterior predictive
    draws, "days needed" without ``days``, AUC by model without per-user metrics.

    Parameters
    ----------
    run, tree
        The run folder and its fit.
    ci_prob, ci_kind
        The run's interval, for the forest and calibration figures.
    days, per_user_metrics
        As for ``hbm.results.report.build_report``.
    progress
        Called with the name of each figure before it is drawn.

    Returns
    -------
    dict[str, bytes]
        PNG bytes by file name (``user_figure`` names the per-user figures).
    """
    say = progress or (lambda _name: None)
    figs: dict[str, bytes] = {}

    def add(name: str, make: Callable[[], bytes]) -> None:  # one place to report progress
        say(name)
        figs[name] = make()

    has_population = "mu" in tree["posterior"].data_vars  # absent without pooling
    if has_population and has_chains_to_compare(tree):
        add("rank.png", lambda: pc_png(rank_plot(tree)))
    add("energy.png", lambda: pc_png(energy_plot(tree)))
    if has_population:
        add("forest.png", lambda: pc_png(forest_plot(tree, ci_prob=ci_prob, ci_kind=ci_kind)))
    add("heatmap.png", lambda: heatmap(run.weights))
    add(CONFIDENCE_FIGURE, lambda: confidence_figure(run.users))
    if {"posterior_predictive", "observed_data", "constant_data"} <= set(tree.children):
        add("calibration.png", lambda: pc_png(azp_pava(tree, ci_prob)))
        add("ppc_user_rates.png", lambda: pc_png(azp_ppc_dist(_user_rates(tree))))
    if days is not None:
        add("days_needed.png", lambda: days_needed_plot(days))
    if per_user_metrics is not None and "auc" in per_user_metrics:
        add("auc_by_model.png", lambda: auc_by_model(per_user_metrics))
    for position, uid in enumerate(run.users["user_id"]):
        rows = run.weights[run.weights["user_id"] == uid]
        add(user_figure(position), partial(user_forest, rows, run.population))
    return figs


def has_chains_to_compare(tree: xr.DataTree) -> bool:
    """Rank plots compare chains: a fit of one chain has none."""
    return int(tree["posterior"].sizes["chain"]) >= 2


def user_figure(position: int) -> str:
    """The file name of the weights figure of the user at ``position`` (from 0) of users.csv.

    Built from the position, never from the id: an id of an older run may hold ``/`` or ``..``,
    be longer than a file name may be, or differ from another only in case.
    """
    return f"users/user-{position + 1:04d}.png"
