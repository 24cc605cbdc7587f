"""``hbm simulate``'s arguments: the cohort's shape and the options that break the model as
real diaries do (``hbm.model.realism``), all off by default."""

from __future__ import annotations

import argparse
from typing import Any

from hbm.model.simulation import SimulationConfig


def add_simulate_parser(sub: Any) -> None:
    """``hbm simulate``: the cohort's shape and the realism options."""
    p = sub.add_parser("simulate", help="write a synthetic diary and its truth file")
    p.add_argument("--users", type=int, default=SimulationConfig.n_users)
    p.add_argument("--days", type=int, default=SimulationConfig.n_days)
    p.add_argument(
        "--heterogeneity",
        type=float,
        default=None,
        help="between-user SD of every trigger's weight (default: the priors' own SDs); the "
        "clustering coefficient's is --clustering-spread, a premonitory feature's 0",
    )
    p.add_argument("--seed", type=int, default=SimulationConfig.seed)
    p.add_argument("--priors", default=None)
    p.add_argument("--attack-rate", type=float, default=SimulationConfig.attack_rate)
    p.add_argument("--sigma-a", type=float, default=SimulationConfig.sigma_a)
    p.add_argument("--menstruating-share", type=float, default=SimulationConfig.menstruating_share)
    p.add_argument("--locations", type=int, default=SimulationConfig.n_locations)
    _add_realism_options(p)
    p.add_argument("--out", required=True, help="diary path (.csv or .parquet)")


def feature_keys(text: str) -> tuple[str, ...]:
    """``--premonitory fatigue,neck_pain``: comma-separated feature keys, each once, none empty."""
    keys = tuple(k.strip() for k in text.split(","))
    if not all(keys):
        raise argparse.ArgumentTypeError(
            f"{text!r} has an empty feature key; give keys separated by commas, e.g. "
            "fatigue,neck_pain"
        )
    if len(set(keys)) != len(keys):
        raise argparse.ArgumentTypeError(f"{text!r} names a feature more than once")
    return keys


def _add_realism_options(p: argparse.ArgumentParser) -> None:
    """``hbm simulate``'s options that break the model as real diaries do (all off by default)."""
    c = SimulationConfig
    p.add_argument(
        "--clustering",
        type=float,
        default=c.clustering,
        help="log-odds added the day after an attack day: the population mean of each user's "
        "clustering coefficient when the priors have a clustering block, else a common boost "
        "(default %(default)s)",
    )
    p.add_argument(
        "--clustering-spread",
        type=float,
        default=c.clustering_spread,
        help="between-user SD of the clustering coefficient (with a clustering block; "
        "default %(default)s)",
    )
    p.add_argument(
        "--attack-days",
        type=float,
        default=c.attack_days,
        help="mean attack length in days, 1 + Poisson(attack-days - 1); above 1 the diary gets "
        "a migraine_continues column (default %(default)s)",
    )
    p.add_argument(
        "--premonitory",
        type=feature_keys,
        default=c.premonitory,
        metavar="KEY,KEY",
        help="features with no causal weight whose raw values rise before attacks",
    )
    p.add_argument(
        "--premonitory-share",
        type=float,
        default=c.premonitory_share,
        help="share of users with premonitory symptoms (default %(default)s)",
    )
    p.add_argument(
        "--premonitory-shift",
        type=float,
        default=c.premonitory_shift,
        help="the rise, as a share of the column's range; a 0/1 column turns 1 with this "
        "chance (default %(default)s)",
    )
    p.add_argument(
        "--premonitory-days",
        type=int,
        default=c.premonitory_days,
        help="days before an onset whose exposure rises, with the onset day (default %(default)s)",
    )
    p.add_argument(
        "--missing-days",
        type=float,
        default=c.missing_days,
        help="share of days not logged: holidays (runs of about 7 days) and users who stop "
        "(default %(default)s)",
    )
    p.add_argument(
        "--missing-values",
        type=float,
        default=c.missing_values,
        help="share of single values left empty; fit such a diary with --missing impute or "
        "drop (default %(default)s)",
    )
