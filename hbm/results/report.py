"""One self-contained HTML report of a run folder, and the same figures as PNG.

``build_report`` works in memory (figures as PNG bytes, the page as a string); ``hbm report``
writes them. Posterior and diagnostic figures come from arviz_plots (rank, energy, forest,
posterior predictive checks); the heatmap, per-user weights, confidence and "days needed" are
matplotlib drawings of the exported tables, so every number shown is one of the exports.
"""

from __future__ import annotations

import base64
import html
import io as _bytes_io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import xarray as xr

from hbm.defaults import CI_KINDS, SPREAD_COLUMN, CiKind
from hbm.errors import RunError
from hbm.results.io import RunFolder
from hbm.results.plots import energy_plot, forest_plot, rank_plot

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DPI = 80
CLASS_MARK = {"trigger": "+", "protector": "\u2212", "no association": "0", "uncertain": ""}
CLASS_COLOUR = {
    "trigger": "#b2182b",
    "protector": "#2166ac",
    "no association": "#4d4d4d",
    "uncertain": "#9e9e9e",
}


@dataclass(frozen=True)
class Report:
    """The page (self-contained HTML) and its figures (file name -> PNG bytes)."""

    html: str
    figures: dict[str, bytes]
    seconds: float


def _png(fig: Any) -> bytes:
    buf = _bytes_io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pc_png(pc: Any) -> bytes:
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
    ax.set_title("posterior mean weight (log-odds); + trigger, \u2212 protector, 0 no association")
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


def confidence_vs_days(users: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.scatter(users["days_logged"], users["confidence"], s=16)
    ax.set_xlabel("days logged")
    ax.set_ylabel("personalization confidence")
    ax.set_ylim(0, 1)
    ax.set_title("confidence against days logged")
    return _png(fig)


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


def _table(frame: pd.DataFrame, table_id: str, digits: int = 3, escape: bool = True) -> str:
    return frame.to_html(
        index=False,
        escape=escape,
        table_id=table_id,
        float_format=lambda v: f"{v:.{digits}f}",
        na_rep="",
        border=0,
        classes="t",
    )


def _img(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" data-name="{name}">'


POPULATION_COLUMNS = [
    "feature",
    "group",
    "prior_mean",
    "prior_between_user_sd",
    "mu_mean",
    "mu_ci_lb",
    "mu_ci_ub",
    "tau_mean",
    "tau_ci_lb",
    "tau_ci_ub",
    SPREAD_COLUMN,
    "mu_r_hat",
    "tau_r_hat",
    "mu_ess_bulk",
    "tau_ess_bulk",
]

CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:0 1em;color:#222}
h1{margin-bottom:0}nav a{margin-right:1em}section{margin:2em 0}img{max-width:100%}
table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:2px 8px;
border-bottom:1px solid #ddd;text-align:right}table.t td:first-child{text-align:left}
.ok{color:#1a7f37;font-weight:bold}.bad{color:#b00020;font-weight:bold}
details{margin:.3em 0}summary{cursor:pointer}.small{font-size:12px;color:#555}
"""

JS = """
function goUser(sel){var d=document.getElementById('user-'+sel.value);
if(d){d.open=true;d.scrollIntoView();}}
"""


def build_report(
    run: RunFolder,
    tree: xr.DataTree,
    days: pd.DataFrame | None = None,
    comparison: pd.DataFrame | None = None,
    per_user_metrics: pd.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Build the report of a run folder.

    Parameters
    ----------
    run
        The run's exports (``hbm.results.io.read_run``).
    tree
        Its fit (``hbm.results.io.load_fit``).
    days
        ``hbm.results.days_needed.days_needed`` of the fit, or ``None`` to leave the section out.
    comparison, per_user_metrics
        ``comparison.csv`` and ``per_user_metrics.csv`` of ``hbm compare`` when the folder has them.
    progress
        Called with the name of each figure as it is drawn.

    Returns
    -------
    Report
    """
    t0 = time.perf_counter()
    say = progress or (lambda _name: None)
    info, diag = run.run_info, run.diagnostics
    ci_prob, ci_kind = float(info["ci_prob"]), str(info["ci_kind"])
    if ci_kind not in CI_KINDS:
        raise RunError(f"{run.path}: run.json has ci_kind '{ci_kind}'; expected one of {CI_KINDS}")
    kind: CiKind = "hdi" if ci_kind == "hdi" else "eti"
    figs: dict[str, bytes] = {}

    def add(name: str, make: Callable[[], bytes]) -> None:  # one place to report progress
        say(name)
        figs[name] = make()

    has_population = "mu" in tree["posterior"].data_vars  # absent without pooling
    if has_population:
        add("rank.png", lambda: _pc_png(rank_plot(tree)))
    add("energy.png", lambda: _pc_png(energy_plot(tree)))
    if has_population:
        add(
            "forest.png",
            lambda: _pc_png(forest_plot(tree, ci_prob=ci_prob, ci_kind=kind)),
        )
    add("heatmap.png", lambda: heatmap(run.weights))
    add("confidence_days.png", lambda: confidence_vs_days(run.users))
    has_ppc = {"posterior_predictive", "observed_data", "constant_data"} <= set(tree.children)
    if has_ppc:
        add("calibration.png", lambda: _pc_png(azp_pava(tree, ci_prob)))
        add("ppc_user_rates.png", lambda: _pc_png(azp_ppc_dist(_user_rates(tree))))
    if days is not None:
        add("days_needed.png", lambda: days_needed_plot(days))
    if per_user_metrics is not None and "auc" in per_user_metrics:
        add("auc_by_model.png", lambda: auc_by_model(per_user_metrics))
    users = run.users["user_id"].tolist()
    for uid in users:
        say(f"users/{uid}.png")
        rows = run.weights[run.weights["user_id"] == uid]
        figs[f"users/{uid}.png"] = user_forest(rows, run.population)

    verdict = (
        '<span class="ok">reliable</span>'
        if diag.get("reliable")
        else '<span class="bad">NOT RELIABLE</span>: '
        + html.escape("; ".join(map(str, diag.get("reasons", []))))
    )
    d = info.get("diary", {})
    sampler = info.get("sampler", {})
    timings = info.get("timings", {})
    run_rows = pd.DataFrame(
        [
            ("diary", d.get("file", "")),
            ("users", d.get("users", "")),
            ("rows (user-days)", d.get("rows", "")),
            ("attack rate", f"{d.get('attack_rate', float('nan')):.4f}"),
            ("priors", f"{info.get('priors', {}).get('path', '')}"),
            ("priors sha256", f"{info.get('priors', {}).get('sha256', '')}"),
            ("NUTS sampler", info.get("nuts_sampler", "")),
            (
                "pooling / parameterization",
                f"{info.get('pooling')} / {info.get('parameterization')}",
            ),
            ("chains x (tune + draws)", _chains(sampler)),
            ("seed", info.get("seed", "")),
            ("interval", f"{ci_prob:g} {ci_kind}"),
            ("timings (s)", json.dumps({k: round(float(v), 1) for k, v in timings.items()})),
            ("command", info.get("command", "")),
            ("versions", json.dumps(info.get("versions", {}))),
        ],
        columns=["item", "value"],
    )
    diag_rows = pd.DataFrame(
        [
            {
                "variable": k,
                "max R-hat": v["max_rhat"],
                "min bulk ESS": v["min_ess_bulk"],
                "min tail ESS": v["min_ess_tail"],
            }
            for k, v in diag.get("per_variable", {}).items()
        ]
    )
    pop = run.population[[c for c in POPULATION_COLUMNS if c in run.population]]
    user_table = run.users[
        [
            c
            for c in ("user_id", "days_logged", "attacks", "confidence", "n_triggers")
            if c in run.users
        ]
    ].copy()
    user_table["user_id"] = [
        f'<a href="#user-{html.escape(u)}">{html.escape(u)}</a>' for u in user_table["user_id"]
    ]
    options = "".join(f'<option value="{html.escape(u)}">{html.escape(u)}</option>' for u in users)
    user_sections = []
    for uid in users:
        rows = run.weights[run.weights["user_id"] == uid]
        urow = run.users[run.users["user_id"] == uid].iloc[0]
        table = rows[["feature", "mean", "ci_lb", "ci_ub", "odds_ratio", "p_positive", "class"]]
        user_sections.append(
            f'<details id="user-{html.escape(uid)}"><summary>{html.escape(uid)}: '
            f"{int(urow['days_logged'])} days, confidence {float(urow['confidence']):.3f}, "
            f"{int(urow.get('n_triggers', 0))} trigger(s)</summary>"
            f"{_img(f'users/{uid}.png', figs[f'users/{uid}.png'], f'weights of {uid}')}"
            f"{_table(table, f'weights-{uid}')}</details>"
        )
    sections = [
        f"<h1>hbm report: {html.escape(run.path.name)}</h1>",
        '<nav><a href="#run">run</a><a href="#diagnostics">diagnostics</a>'
        '<a href="#population">population</a><a href="#heatmap">heatmap</a>'
        '<a href="#users">users</a><a href="#calibration">calibration</a>'
        '<a href="#comparison">comparison</a><a href="#days-needed">days needed</a></nav>',
        f'<section id="run"><h2>Run</h2><p>Verdict: {verdict}</p>'
        f"{_table(run_rows, 'run-table')}</section>",
        '<section id="diagnostics"><h2>Diagnostics</h2>'
        f"<p>Gate: {html.escape(json.dumps(diag.get('gate', {})))}; divergences "
        f"{diag.get('divergences')}; E-BFMI per chain "
        f"{', '.join(f'{e:.2f}' for e in diag.get('ebfmi', []))}; draws at the maximum tree "
        f"depth {diag.get('max_treedepth_hits', -1)}.</p>"
        f"{_table(diag_rows, 'diagnostics-table')}"
        + (
            "<h3>Rank plots (population variables)</h3>"
            + _img("rank.png", figs["rank.png"], "rank")
            if "rank.png" in figs
            else "<p>No population variables (pooling none): no rank plots.</p>"
        )
        + f"<h3>Energy</h3>{_img('energy.png', figs['energy.png'], 'energy')}</section>",
        '<section id="population"><h2>Population</h2>'
        f"<p>Population weights <code>mu</code> and between-user SDs <code>tau</code>, {ci_prob:g} "
        f"{ci_kind} intervals (50% inner).</p>"
        + (_img("forest.png", figs["forest.png"], "forest") if "forest.png" in figs else "")
        + f"{_table(pop, 'population-table', digits=4)}</section>",
        '<section id="heatmap"><h2>Trigger heatmap</h2>'
        f"{_img('heatmap.png', figs['heatmap.png'], 'heatmap')}</section>",
        '<section id="users"><h2>Users</h2>'
        '<p>Find a user: <select id="user-select" onchange="goUser(this)">'
        f'<option value="">choose</option>{options}</select></p>'
        f"{_img('confidence_days.png', figs['confidence_days.png'], 'confidence vs days')}"
        f"{_table(user_table, 'users-table', escape=False)}"
        f"{''.join(user_sections)}</section>",
        '<section id="calibration"><h2>Calibration</h2>'
        + (
            "<p>Reliability diagram (PAV-calibrated posterior predictive probability against "
            "observed frequency) and the per-user attack rates against their posterior "
            "predictive distribution.</p>"
            f"{_img('calibration.png', figs['calibration.png'], 'calibration')}"
            f"{_img('ppc_user_rates.png', figs['ppc_user_rates.png'], 'ppc')}"
            if has_ppc
            else "<p>The fit holds no posterior predictive draws.</p>"
        )
        + "</section>",
        '<section id="comparison"><h2>Model comparison</h2>'
        + (
            _table(comparison, "comparison-table")
            + (
                _img("auc_by_model.png", figs["auc_by_model.png"], "AUC by model")
                if "auc_by_model.png" in figs
                else ""
            )
            if comparison is not None
            else "<p>No comparison in this folder (run <code>hbm compare</code>).</p>"
        )
        + "</section>",
        '<section id="days-needed"><h2>Days needed</h2>'
        + (
            "<p>Simulated new users drawn from the fitted population (method in "
            "<code>hbm.results.days_needed</code>).</p>"
            f"{_img('days_needed.png', figs['days_needed.png'], 'days needed')}"
            f"{_table(days, 'days-needed-table')}"
            if days is not None
            else "<p>Not computed for this run.</p>"
        )
        + "</section>",
    ]
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>hbm report: {html.escape(run.path.name)}</title>"
        f"<style>{CSS}</style><script>{JS}</script></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
    return Report(page, figs, time.perf_counter() - t0)


def _chains(sampler: dict[str, Any]) -> str:
    return f"{sampler.get('chains')} x ({sampler.get('tune')} + {sampler.get('draws')})"


def azp_pava(tree: xr.DataTree, ci_prob: float) -> Any:
    import arviz_plots as azp

    return azp.plot_ppc_pava(tree, var_names=["y"], ci_prob=ci_prob)


def azp_ppc_dist(rates: xr.DataTree) -> Any:
    import arviz_plots as azp

    return azp.plot_ppc_dist(rates, var_names=["attack_rate"], kind="ecdf")


def auc_by_model(per_user: pd.DataFrame) -> bytes:
    """Within-person AUC per user, one box per model."""
    models = list(dict.fromkeys(per_user["model"]))
    data = [per_user.loc[per_user["model"] == m, "auc"].dropna() for m in models]
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(models), 3.6))
    ax.boxplot(data, tick_labels=models)
    ax.set_ylabel("within-person AUC")
    ax.tick_params(axis="x", rotation=30)
    return _png(fig)
