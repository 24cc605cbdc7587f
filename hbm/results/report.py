"""One self-contained HTML report of a run folder, and the same figures as PNG.

``build_report`` works in memory (figures as PNG bytes, the page as a string); ``hbm report``
writes them. The figures are drawn by ``hbm.results.report_figures``; each section of the page is
one function here (``SECTIONS``, in page order). Every table is a two-dimensional grid of plain
values (nested settings as one row per key) inside its own horizontally scrolling box.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import xarray as xr

from hbm.defaults import CI_KINDS, SPREAD_COLUMN, CiKind
from hbm.errors import RunError
from hbm.results.io import RunFolder
from hbm.results.report_figures import (
    CONFIDENCE_FIGURE,
    common_days,
    draw_figures,
    user_figure,
)
from hbm.results.report_html import html_table, img_tag, nested_rows, number_text


@dataclass(frozen=True)
class Report:
    """The page (self-contained HTML) and its figures (file name -> PNG bytes)."""

    html: str
    figures: dict[str, bytes]
    seconds: float


@dataclass(frozen=True)
class Page:
    """What the sections are written from: the run, its figures and the optional tables."""

    run: RunFolder
    figs: dict[str, bytes]
    ci_prob: float
    ci_kind: str
    days: pd.DataFrame | None = None
    comparison: pd.DataFrame | None = None


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

#: Sampler settings the "chains x (tune + draws)" and "seed" rows already show.
SUMMARISED_SAMPLER_KEYS = frozenset({"chains", "tune", "draws", "seed"})

CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:0 1em;color:#222}
h1{margin-bottom:0}nav a{margin-right:1em}section{margin:2em 0}img{max-width:100%}
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0}
table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:2px 8px;
border-bottom:1px solid #ddd;text-align:right}table.t td:first-child{text-align:left}
.ok{color:#1a7f37;font-weight:bold}.bad{color:#b00020;font-weight:bold}
details{margin:.3em 0}summary{cursor:pointer}.small{font-size:12px;color:#555}
"""

JS = """
function goUser(sel){var d=document.getElementById('user-'+sel.value);
if(d){d.open=true;d.scrollIntoView();}}
"""

NAV = (
    '<nav><a href="#run">run</a><a href="#diagnostics">diagnostics</a>'
    '<a href="#population">population</a><a href="#heatmap">heatmap</a>'
    '<a href="#users">users</a><a href="#calibration">calibration</a>'
    '<a href="#comparison">comparison</a><a href="#days-needed">days needed</a></nav>'
)


def _chains(sampler: dict[str, Any]) -> str:
    return f"{sampler.get('chains')} x ({sampler.get('tune')} + {sampler.get('draws')})"


def run_rows(info: dict[str, Any], diag: dict[str, Any]) -> pd.DataFrame:
    """The run table: data, priors, sampler, interval, centring, timings, command, versions."""
    d, priors = info.get("diary", {}), info.get("priors", {})
    sampler = info.get("sampler", {})
    rest = {k: v for k, v in sampler.items() if k not in SUMMARISED_SAMPLER_KEYS}
    rows: list[tuple[str, Any]] = [
        ("diary", d.get("file", "")),
        ("users", d.get("users", "")),
        ("rows (user-days)", d.get("rows", "")),
        ("attack rate", f"{d.get('attack_rate', float('nan')):.4f}"),
        ("priors", priors.get("path", "")),
        ("priors sha256", priors.get("sha256", "")),
        ("NUTS sampler", info.get("nuts_sampler", "")),
        ("pooling / parameterization", f"{info.get('pooling')} / {info.get('parameterization')}"),
        ("chains x (tune + draws)", _chains(sampler)),
        *nested_rows("sampler", rest),
        ("seed", info.get("seed", "")),
        ("interval", f"{float(info['ci_prob']):g} {info['ci_kind']}"),
        *nested_rows("centring", info.get("centring", {})),
        *([("centring rule", diag["centring_rule"])] if "centring_rule" in diag else []),
        *nested_rows("timings (s)", info.get("timings", {}), lambda v: f"{float(v):.1f}"),
        ("command", info.get("command", "")),
        *nested_rows("versions", info.get("versions", {})),
    ]
    return pd.DataFrame([(what, str(v)) for what, v in rows], columns=["item", "value"])


def run_section(p: Page) -> str:
    """Verdict and reasons, then the run table."""
    diag = p.run.diagnostics
    verdict = (
        '<span class="ok">reliable</span>'
        if diag.get("reliable")
        else '<span class="bad">NOT RELIABLE</span>: '
        + html.escape("; ".join(map(str, diag.get("reasons", []))))
    )
    return (
        f'<section id="run"><h2>Run</h2><p>Verdict: {verdict}</p>'
        f"{extension_sentence(p.run.run_info.get('extension'))}"
        f"{update_sentence(p.run.run_info.get('update'))}"
        f"{html_table(run_rows(p.run.run_info, diag), 'run-table')}</section>"
    )


def extension_sentence(extension: dict[str, Any] | None) -> str:
    """What the gate's second try did (``hbm.inference.fitting``), or nothing when none ran."""
    if not extension:
        return ""
    why = html.escape("; ".join(map(str, extension["why"])))
    return (
        f'<p id="extension">The first sampling failed the gate ({why}), so the fit was sampled '
        f"again with {extension['tune']} warm-up and {extension['draws']} draws per chain and "
        f"target acceptance {extension.get('target_accept', 'as before')} "
        f"(seed {extension['seed']}, {float(extension['sampling_s']):.0f} s, within its budget "
        f"of {float(extension['budget_s']):g} s); these are its draws.</p>"
    )


def update_sentence(update: dict[str, Any] | None) -> str:
    """What ``hbm update`` did to the run it came from, or nothing for a fitted run."""
    if not update:
        return ""
    refit = update.get("refit", {})
    advice = (
        "a refit is due (" + html.escape("; ".join(map(str, refit.get("reasons", [])))) + ")"
        if refit.get("due")
        else "no refit is due"
    )
    return (
        f'<p id="update">This run was updated from run {html.escape(str(update.get("from_run")))} '
        f"by <code>hbm update</code>: {update.get('users_updated')} users' posteriors from its "
        f"population and their own days ({html.escape(str(update.get('method')))}, largest "
        f"Pareto k-hat {number_text(update.get('max_khat'), '.2f')}); the population is that "
        "run's. "
        f"By the refit rule {advice}.</p>"
    )


def diagnostics_section(p: Page) -> str:
    """Gate, sampler checks, R-hat / ESS per variable, rank plots and energy."""
    diag = p.run.diagnostics
    gate = ", ".join(f"{what} {v}" for what, v in nested_rows("", diag.get("gate", {})))
    per_variable = pd.DataFrame(
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
    rank = (
        "<h3>Rank plots (population variables)</h3>"
        + img_tag("rank.png", p.figs["rank.png"], "rank")
        if "rank.png" in p.figs
        else "<p>One chain: rank plots compare chains, so there are none.</p>"
        if "mu_mean" in p.run.population
        else "<p>No population variables (pooling none): no rank plots.</p>"
    )
    return (
        '<section id="diagnostics"><h2>Diagnostics</h2>'
        f"<p>Gate: {html.escape(gate)}; divergences {diag.get('divergences')}; E-BFMI per chain "
        f"{', '.join(number_text(e, '.2f') for e in diag.get('ebfmi', []))}; draws at the "
        f"maximum tree depth {diag.get('max_treedepth_hits', -1)}.</p>"
        f"{html_table(per_variable, 'diagnostics-table')}{rank}"
        f"<h3>Energy</h3>{img_tag('energy.png', p.figs['energy.png'], 'energy')}</section>"
    )


def clustering_sentence(population: pd.DataFrame) -> str:
    """What the clustering term says, from the population table (empty when the run has none)."""
    rows = population[population.get("role", pd.Series(dtype=str)) == "clustering"]
    if rows.empty or "mu_mean" not in rows:
        return ""
    r = rows.iloc[0]
    spread = f"; between-user SD {number_text(r['tau_mean'], '.2f')}" if "tau_mean" in r else ""
    return (
        "<p>Attack clustering (<code>attack_yesterday</code>): a day after an attack day has "
        f"log-odds {number_text(r['mu_mean'], '.2f')} ({number_text(r['mu_ci_lb'], '.2f')} to "
        f"{number_text(r['mu_ci_ub'], '.2f')}) above a day after an attack-free day in the "
        f"population{spread}. It is no trigger: it says attacks come in runs, and every trigger "
        "weight is estimated beside it.</p>"
    )


def calls_sentence(run_info: Mapping[str, Any]) -> str:
    """The rule behind the ``class`` column and this run's figures."""
    calls = run_info.get("trigger_calls")
    if not calls:
        return ""
    return (
        f"<p>Trigger and protector calls (<code>class</code>): {html.escape(str(calls['rule']))}."
        f" Level {number_text(calls['fdr_level'], '.0%')}: {calls['n_calls']} calls "
        f"({calls['n_triggers']} triggers, {calls['n_protectors']} protectors) at posterior "
        f"probability >= {number_text(calls['threshold'], '.3f')}, expected false-discovery "
        f"proportion {number_text(calls['expected_fdr'], '.1%')}. <code>interval_class</code> "
        "keeps the earlier rule (the interval outside the ROPE) for comparison.</p>"
    )


def population_section(p: Page) -> str:
    """Forest of ``mu`` and ``tau`` (when the run has them) and the population table."""
    pop = p.run.population[[c for c in POPULATION_COLUMNS if c in p.run.population]]
    forest = img_tag("forest.png", p.figs["forest.png"], "forest") if "forest.png" in p.figs else ""
    return (
        '<section id="population"><h2>Population</h2>'
        f"<p>Population weights <code>mu</code> and between-user SDs <code>tau</code>, "
        f"{p.ci_prob:g} {p.ci_kind} intervals (50% inner).</p>"
        f"{clustering_sentence(p.run.population)}{calls_sentence(p.run.run_info)}"
        f"{forest}{html_table(pop, 'population-table', digits=4)}</section>"
    )


def heatmap_section(p: Page) -> str:
    """Users x features heatmap of posterior mean weights."""
    return (
        '<section id="heatmap"><h2>Trigger heatmap</h2>'
        f"{img_tag('heatmap.png', p.figs['heatmap.png'], 'heatmap')}</section>"
    )


def confidence_block(users: pd.DataFrame, png: bytes) -> str:
    """The confidence figure; when every user logged the same days, a sentence saying so first.

    ``png`` is ``report_figures.confidence_figure`` of ``users``: a histogram of confidence in
    that case, a scatter against days logged otherwise.
    """
    days = common_days(users)
    if days is None:
        return img_tag(CONFIDENCE_FIGURE, png, "confidence vs days")
    return (
        f"<p>Every user logged {days} days, so confidence cannot be plotted against days; the "
        "distribution of confidence over users is shown instead.</p>"
        + img_tag(CONFIDENCE_FIGURE, png, "confidence distribution")
    )


def user_details(p: Page, position: int, uid: str) -> str:
    """One user's folding section (the ``position``-th of users.csv, from 0): summary line,
    weights figure and weights table."""
    weights = p.run.weights
    rows = weights[weights["user_id"] == uid]
    urow = p.run.users[p.run.users["user_id"] == uid].iloc[0]
    columns = ["feature", "mean", "ci_lb", "ci_ub", "odds_ratio", "p_positive", "p_call"]
    table = rows[[c for c in [*columns, "class", "interval_class"] if c in rows]]
    name = user_figure(position)
    return (
        f'<details id="user-{html.escape(uid)}"><summary>{html.escape(uid)}: '
        f"{int(urow['days_logged'])} days, confidence {float(urow['confidence']):.3f}, "
        f"{int(urow.get('n_triggers', 0))} trigger(s)</summary>"
        f"{img_tag(name, p.figs[name], f'weights of {uid}')}"
        f"{html_table(table, f'weights-{uid}')}</details>"
    )


def users_section(p: Page) -> str:
    """User picker, confidence, the users table (linked) and one folding section per user."""
    users = p.run.users
    ids = users["user_id"].tolist()
    columns = ("user_id", "days_logged", "attacks", "confidence", "n_triggers")
    user_table = users[[c for c in columns if c in users]].copy()
    user_table["user_id"] = [f'<a href="#user-{html.escape(u)}">{html.escape(u)}</a>' for u in ids]
    options = "".join(f'<option value="{html.escape(u)}">{html.escape(u)}</option>' for u in ids)
    return (
        '<section id="users"><h2>Users</h2>'
        '<p>Find a user: <select id="user-select" onchange="goUser(this)">'
        f'<option value="">choose</option>{options}</select></p>'
        f"{confidence_block(users, p.figs[CONFIDENCE_FIGURE])}"
        f"{html_table(user_table, 'users-table', escape=False)}"
        f"{''.join(user_details(p, i, uid) for i, uid in enumerate(ids))}</section>"
    )


def calibration_section(p: Page) -> str:
    """PAV reliability diagram and per-user attack rates, when the fit has predictive draws."""
    if "calibration.png" not in p.figs:
        body = "<p>The fit holds no posterior predictive draws.</p>"
    else:
        body = (
            "<p>Reliability diagram (PAV-calibrated posterior predictive probability against "
            "observed frequency) and the per-user attack rates against their posterior "
            "predictive distribution.</p>"
            f"{img_tag('calibration.png', p.figs['calibration.png'], 'calibration')}"
            f"{img_tag('ppc_user_rates.png', p.figs['ppc_user_rates.png'], 'ppc')}"
        )
    return f'<section id="calibration"><h2>Calibration</h2>{body}</section>'


def comparison_section(p: Page) -> str:
    """``hbm compare``'s table and AUC boxes, when the folder holds them."""
    if p.comparison is None:
        body = "<p>No comparison in this folder (run <code>hbm compare</code>).</p>"
    else:
        auc = p.figs.get("auc_by_model.png")
        body = html_table(p.comparison, "comparison-table") + (
            img_tag("auc_by_model.png", auc, "AUC by model") if auc is not None else ""
        )
    return f'<section id="comparison"><h2>Model comparison</h2>{body}</section>'


def days_needed_section(p: Page) -> str:
    """How a simulated new user's intervals and classes change with days logged."""
    if p.days is None:
        body = "<p>Not computed for this run.</p>"
    else:
        body = (
            "<p>Simulated new users drawn from the fitted population (method in "
            "<code>hbm.results.days_needed</code>).</p>"
            f"{img_tag('days_needed.png', p.figs['days_needed.png'], 'days needed')}"
            f"{html_table(p.days, 'days-needed-table')}"
        )
    return f'<section id="days-needed"><h2>Days needed</h2>{body}</section>'


#: The sections of the page, in order (the links of ``NAV`` follow the same order).
SECTIONS: tuple[Callable[[Page], str], ...] = (
    run_section,
    diagnostics_section,
    population_section,
    heatmap_section,
    users_section,
    calibration_section,
    comparison_section,
    days_needed_section,
)


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
    info = run.run_info
    ci_prob, ci_kind = float(info["ci_prob"]), str(info["ci_kind"])
    if ci_kind not in CI_KINDS:
        raise RunError(f"{run.path}: run.json has ci_kind '{ci_kind}'; expected one of {CI_KINDS}")
    kind: CiKind = "hdi" if ci_kind == "hdi" else "eti"
    figs = draw_figures(run, tree, ci_prob, kind, days, per_user_metrics, progress)
    page = Page(run, figs, ci_prob, ci_kind, days, comparison)
    title = f"hbm report: {html.escape(run.path.name)}"
    sections = [f"<h1>{title}</h1>", NAV, *(section(page) for section in SECTIONS)]
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{CSS}</style><script>{JS}</script></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
    return Report(document, figs, time.perf_counter() - t0)
