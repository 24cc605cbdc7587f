"""The ``hbm`` command's arguments: one ``_add_<command>_parser`` per subcommand, and the fit
flags resolved with a ``--config`` file into a ``FitConfig`` (``fit_config``).

The fit and diary flags default to ``None`` ("not given"), so that ``fit_config`` can tell a flag
given on the command line (it overrides the file) from a default (the file's value wins).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hbm.app.checks import check_fit
from hbm.app.config import CLUSTERING_CHOICES, KEYS, FitConfig, read_config, resolve
from hbm.app.parser_simulate import add_simulate_parser
from hbm.data.diary import MISSING_POLICIES
from hbm.defaults import CI_KINDS, CI_PROB, DAYS_NEEDED_USERS, ORIGINS, TEST_FRACTION
from hbm.errors import ArgumentError, ConfigError, FitError, HBMError
from hbm.inference.config import BACKENDS
from hbm.model.options import PARAMETERIZATIONS, POOLINGS

#: The shipped example diary, in the checkout hbm runs from: ``hbm demo`` works from any folder.
DEMO_DIARY = Path(__file__).resolve().parents[2] / "data" / "example_diary.csv"
DEMO_OUT = Path("reports/demo")
DEFAULTS = FitConfig()

Sub = Any  # argparse's subparsers action (its class is private)


def column_map(pairs: Sequence[str] | None) -> tuple[tuple[str, str], ...] | None:
    """``--map A=B`` pairs; ``None`` when none was given."""
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise HBMError(f"--map takes FILE_COLUMN=HBM_COLUMN, got '{pair}'")
        src, dst = pair.split("=", 1)
        out[src.strip()] = dst.strip()
    return tuple(out.items())


def fit_config(args: argparse.Namespace, diary_default: Path | None = None) -> FitConfig:
    """The configuration of a command: defaults, then ``--config FILE``, then the flags given;
    its values and ``args.out``, when the command has one, checked (``checks.check_fit``)."""
    flags = {key.field: getattr(args, key.field, None) for key in KEYS}
    flags["column_map"] = column_map(flags["column_map"])
    given = {field: value for field, value in flags.items() if value is not None}
    config_file = getattr(args, "config", None)
    from_file = read_config(config_file) if config_file is not None else {}
    base = {"diary": str(diary_default)} if diary_default is not None else {}
    config = resolve(base, from_file, given)
    from_file_only = {key: value for key, value in from_file.items() if key not in given}
    if from_file_only:  # a bad value the file gave (not a flag) is an error naming the file
        try:
            check_fit(resolve(base, from_file_only, {}))
        except (ArgumentError, FitError) as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
    check_fit(config, getattr(args, "out", None), config_file)  # before anything is read
    return config


def _add_diary_options(p: argparse.ArgumentParser) -> None:
    """``--priors --map --missing --min-days`` (``None`` when not given: see ``fit_config``)."""
    p.add_argument("--priors", help="priors JSON (default: the shipped clinical one)")
    p.add_argument(
        "--map",
        dest="column_map",
        action="append",
        metavar="FILE_COL=HBM_COL",
        help="rename a diary column (repeatable), e.g. --map patient=user_id",
    )
    p.add_argument(
        "--missing",
        choices=MISSING_POLICIES,
        help="missing feature values: error, impute (user median) or drop "
        f"(default {DEFAULTS.missing})",
    )
    p.add_argument(
        "--min-days",
        type=int,
        help=f"report users with fewer logged days (default {DEFAULTS.min_days})",
    )


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    """The sampler and export flags (``None`` when not given: see ``fit_config``)."""
    d = DEFAULTS
    p.add_argument("--backend", choices=BACKENDS, help=f"NUTS backend (default {d.backend})")
    p.add_argument("--chains", type=int, help=f"(default {d.chains})")
    p.add_argument("--tune", type=int, help="warm-up per chain (nutpie 600, others 1000)")
    p.add_argument("--draws", type=int, help=f"draws per chain (default {d.draws})")
    p.add_argument("--target-accept", type=float, help=f"(default {d.target_accept})")
    p.add_argument(
        "--max-treedepth",
        type=int,
        help=f"longest trajectory 2^depth - 1 steps (default {d.max_treedepth})",
    )
    p.add_argument(
        "--extend-budget",
        type=float,
        metavar="SECONDS",
        help="when the fit fails the diagnostics gate, sample once more with twice the warm-up "
        "and draws and target acceptance 0.95 if that should take at most SECONDS (three "
        "times the first sampling's time); "
        f"0: never (default {d.extend_budget:g})",
    )
    p.add_argument("--seed", type=int, help=f"(default {d.seed})")
    p.add_argument("--pooling", choices=POOLINGS, help=f"(default {d.pooling})")
    p.add_argument(
        "--parameterization", choices=PARAMETERIZATIONS, help=f"(default {d.parameterization})"
    )
    p.add_argument(
        "--clustering",
        choices=CLUSTERING_CHOICES,
        help="the priors file's attack-clustering term (previous day's attack state), on or off "
        f"(default {d.clustering})",
    )
    p.add_argument(
        "--fdr-level",
        type=float,
        help="expected false-discovery proportion of the trigger/protector calls "
        f"(default {d.fdr_level})",
    )
    p.add_argument("--ci-prob", type=float, help=f"interval probability (default {d.ci_prob})")
    p.add_argument("--ci-kind", choices=CI_KINDS, help=f"interval kind (default {d.ci_kind})")
    p.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        help="exit 3 when the fit fails the diagnostics gate (default: off)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="the sampler's progress bar (default: on; --no-progress turns it off)",
    )


def _add_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="run configuration: one key per flag (a run folder's config.toml reruns its fit); "
        "flags given override it",
    )


def _add_validate_parser(sub: Sub) -> None:
    p = sub.add_parser("validate", help="check a diary against a priors file and summarize it")
    p.add_argument("diary", help="diary file (.csv or .parquet)")
    _add_diary_options(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _add_fit_parser(sub: Sub) -> None:
    p = sub.add_parser("fit", help="fit the model and export tables into a run folder")
    p.add_argument(
        "diary",
        nargs="?",
        help="diary file (.csv or .parquet); may be left to the --config file's `diary`",
    )
    _add_config_option(p)
    _add_diary_options(p)
    _add_fit_options(p)
    p.add_argument("--out", required=True, help="run folder")


def _add_demo_parser(sub: Sub) -> None:
    p = sub.add_parser("demo", help="validate, fit and export the shipped example diary")
    p.add_argument("--diary", help=f"diary file (default {DEMO_DIARY})")
    _add_config_option(p)
    _add_diary_options(p)
    _add_fit_options(p)
    p.add_argument("--out", default=str(DEMO_OUT), help="run folder (default %(default)s)")


def _add_profile_parser(sub: Sub) -> None:
    p = sub.add_parser("profile", help="print one user's trigger profile")
    p.add_argument("run_dir")
    p.add_argument("user_id")


def _add_diagnose_parser(sub: Sub) -> None:
    p = sub.add_parser("diagnose", help="print diagnostics and write rank, energy, forest plots")
    p.add_argument("run_dir")


def _add_predict_parser(sub: Sub) -> None:
    p = sub.add_parser("predict", help="risk for the days of a diary (known and unseen users)")
    p.add_argument("run_dir")
    p.add_argument("diary")
    p.add_argument("--out", required=True, help="predictions CSV")
    p.add_argument("--map", action="append", metavar="FILE_COL=HBM_COL")
    p.add_argument("--missing", choices=MISSING_POLICIES, default=DEFAULTS.missing)
    p.add_argument("--ci-prob", type=float, default=CI_PROB)
    p.add_argument("--seed", type=int, default=0, help="seed of unseen users' draws")


def _add_update_parser(sub: Sub) -> None:
    p = sub.add_parser("update", help="update users from new days, no refit (a new run folder)")
    p.add_argument("run_dir", help="a run folder of a partial-pooling fit")
    p.add_argument("diary", help="new days of known users and days of new users")
    p.add_argument("--out", required=True, help="the updated run folder (written whole)")
    p.add_argument("--seed", type=int, default=0, help="seed of the users' draws")
    p.add_argument("--proposals", type=int, default=4, help="Laplace proposals a draw (1-100)")
    p.add_argument("--map", action="append", metavar="FILE_COL=HBM_COL")
    p.add_argument("--missing", choices=MISSING_POLICIES, default=None, help="default: the fit's")


def _add_compare_parser(sub: Sub) -> None:
    from hbm.evaluation.baselines import MODELS

    p = sub.add_parser("compare", help="held-out comparison of hbm with its baselines")
    p.add_argument("diary", help="diary file (.csv or .parquet)")
    _add_diary_options(p)
    _add_fit_options(p)
    p.add_argument("--out", required=True, help="comparison folder")
    p.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=None,
        help="default: every model (hbm-no-clustering only when the priors have clustering)",
    )
    p.add_argument("--test-fraction", type=float, default=TEST_FRACTION)
    p.add_argument("--split", choices=("temporal", "users", "rolling"), default="temporal")
    p.add_argument(
        "--origins",
        type=int,
        default=ORIGINS,
        help=f"rolling split: fits per model, at 1 - TF * (N - i) / N of each user's days "
        f"(default {ORIGINS})",
    )
    p.add_argument("--no-stability", action="store_true", help="skip the half-data refits")
    _add_engine_arguments(p)


def _add_study_parser(sub: Sub) -> None:
    from hbm.evaluation.baselines import MODELS

    p = sub.add_parser("study", help="the personalization study over simulated cohorts")
    p.add_argument("--out", required=True)
    p.add_argument("--priors", default=None)
    p.add_argument("--quick", action="store_true", help="the small grid CI runs")
    p.add_argument("--chains", type=int, default=None, help="NUTS chains (default: the grid's)")
    p.add_argument("--tune", type=int, default=None)
    p.add_argument("--draws", type=int, default=None)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    _add_engine_arguments(p)


def _add_engine_arguments(p: argparse.ArgumentParser) -> None:
    from hbm.app.engine import usable_cores

    cores = usable_cores()
    p.add_argument(
        "--workers",
        type=int,
        default=cores,
        help="local Dask worker processes, the fits running at once (default: this machine's "
        f"{cores} cores); 1 runs every fit in this process, without Dask",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run the fits on an existing Dask cluster (tcp://host:8786) instead",
    )


def _add_sbc_parser(sub: Sub) -> None:
    from hbm.app.task_workflows import SBCSettings

    d = SBCSettings()
    p = sub.add_parser("sbc", help="simulation-based calibration of the model (simuk), on Dask")
    p.add_argument("--out", required=True)
    p.add_argument("--priors", default=None)
    for flag, help_ in (
        ("--simulations", "data sets simulated and fitted"),
        ("--users", "users a data set"),
        ("--days", "days a user"),
        ("--seed", "seed of the cohort and the simulations"),
        ("--chains", "chains a fit"),
        ("--tune", "warm-up per chain"),
        ("--draws", "draws per chain"),
        ("--bins", "rank bins of the chi-square tests"),
        ("--max-w", "per-user weights tested"),
    ):
        default = getattr(d, flag[2:].replace("-", "_"))
        p.add_argument(flag, type=int, default=default, help=f"{help_} (default {default})")
    p.add_argument("--backend", choices=BACKENDS, default=d.backend, help="(default %(default)s)")
    _add_engine_arguments(p)


def _add_decide_parser(sub: Sub) -> None:
    p = sub.add_parser("decide", help="go / no-go for personalization (exit 0 yes, 1 no)")
    p.add_argument("dir", help="an hbm run folder or an `hbm compare` folder")


def _add_report_parser(sub: Sub) -> None:
    p = sub.add_parser("report", help="write RUN_DIR/report.html (self-contained) and figures")
    p.add_argument("run_dir")
    p.add_argument(
        "--days-users",
        type=int,
        default=DAYS_NEEDED_USERS,
        help="simulated users for days needed (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the days-needed simulation")
    p.add_argument("--verbose", action="store_true", help="name each figure as it is drawn")


def _port(text: str) -> int:
    """A TCP port number for ``--port`` (argparse exits 2 on anything else)."""
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def _add_serve_parser(sub: Sub) -> None:
    p = sub.add_parser("serve", help="read-only HTTP API over a run folder (FastAPI)")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8000, help="0-65535 (0: any free port)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info"))


SUBCOMMANDS = (
    _add_validate_parser,
    add_simulate_parser,
    _add_fit_parser,
    _add_demo_parser,
    _add_profile_parser,
    _add_diagnose_parser,
    _add_predict_parser,
    _add_update_parser,
    _add_compare_parser,
    _add_study_parser,
    _add_sbc_parser,
    _add_decide_parser,
    _add_report_parser,
    _add_serve_parser,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``hbm`` argument parser, one subcommand per ``SUBCOMMANDS`` entry."""
    parser = argparse.ArgumentParser(
        prog="hbm", description="Hierarchical Bayesian migraine-trigger model."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser
