"""What the ``hbm`` command prints: the command line, numbers, warnings, and the summaries of a
diary, a fit and a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from hbm.app.run_workflows import WrittenReport
from hbm.app.workflows import FitRun
from hbm.results import io


def command_line(args: argparse.Namespace) -> str:
    return shlex.join(["hbm", *args.argv])


def say(msg: str) -> None:
    print(msg, flush=True)


def num(value: float | None, spec: str) -> str:
    """A diagnostic as text; ``n/a`` for one the draws do not define (NaN, or null in JSON)."""
    return "n/a" if value is None or value != value else format(value, spec)


def warn(summary: dict[str, Any]) -> None:
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)


def print_summary(s: dict[str, Any]) -> None:
    d = s["days_per_user"]
    print(f"diary      {s['file']}")
    print(
        f"rows       {s['rows']}  users {s['users']}  days/user min {d['min']} "
        f"median {d['median']:g} max {d['max']}"
    )
    print(f"attacks    {s['attack_rate']:.1%} of days")
    if s.get("continuing_attack_days"):
        print(
            f"continuing {s['continuing_attack_days']} day(s) inside an attack that began earlier "
            "(not at risk of an onset; the next day's clustering state)"
        )
    print(f"gaps       {s['missing_days_total']} missing day(s) inside users' date ranges")
    print(f"missing    policy '{s['missing_policy']}', dropped rows {s['dropped_rows']}")
    print(f"{'column':<36} {'missing':>8} {'imputed':>8}")
    for col, n in s["missing_values"].items():
        print(f"  {col:<34} {n:>8} {s['imputed_values'].get(col, 0):>8}")
    print(f"{'feature':<36} {'lag-filled':>10} {'exposed (>= 0.5)':>17}")
    for key, prev in s["exposure_prevalence"].items():
        print(f"  {key:<34} {s['lag_filled_exposures'][key]:>10} {prev:>17.1%}")
    if s["users_with_few_days"]:
        print(
            f"few days   {len(s['users_with_few_days'])} user(s) with < {s['min_days']} days "
            f"(kept; their weights stay near the population): "
            f"{', '.join(s['users_with_few_days'][:10])}"
        )
    if s["ignored_columns"]:
        print(f"ignored    columns not in the priors: {', '.join(s['ignored_columns'])}")


def print_fit(run: FitRun) -> None:
    d, ext = run.result.diagnostics, run.result.extension
    if ext:
        print(
            f"first sampling failed the gate ({'; '.join(ext['why'])}): sampled again with "
            f"{ext['tune']} warm-up + {ext['draws']} draws per chain, target acceptance "
            f"{ext['target_accept']} ({ext['sampling_s']:.0f} s)"
        )
    verdict = "reliable" if d.reliable else "NOT RELIABLE: " + "; ".join(d.reasons)
    print(f"fit {verdict}")
    print(
        f"max R-hat {num(d.max_rhat, '.3f')}, min bulk ESS {num(d.min_ess_bulk, '.0f')}, "
        f"min tail ESS {num(d.min_ess_tail, '.0f')}, divergences {d.divergences}, min E-BFMI "
        f"{num(min(d.ebfmi, default=None), '.2f')}, draws at the maximum tree depth "
        f"{d.max_treedepth_hits}"
    )
    files = ", ".join((*io.RUN_FILES, io.CONFIG_FILE, io.MANIFEST_FILE))
    print(f"wrote {run.out}/ ({files}) in {run.run_info['timings']['total_s']:.0f} s")


def print_report(report: WrittenReport) -> None:
    print(
        f"report: {report.path} ({report.size / 1e6:.1f} MB, {report.figures} figures, "
        f"{report.seconds:.0f} s)"
    )
