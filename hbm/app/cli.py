"""The ``hbm`` command: parses arguments, calls the library's functions and writes files."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hbm.data.diary import MISSING_POLICIES, Diary, load_diary
from hbm.data.exposures import Design, exposure_prevalence, exposures
from hbm.data.priors import Priors, load_priors
from hbm.defaults import CI_KIND, CI_KINDS, CI_PROB, DAYS_NEEDED_USERS, MIN_DAYS, TEST_FRACTION
from hbm.errors import HBMError
from hbm.inference.fitting import BACKENDS, DEFAULT_BACKEND, FitResult, SamplerConfig, fit
from hbm.model.build import PARAMETERIZATIONS, POOLINGS
from hbm.model.simulation import SimulationConfig, simulate
from hbm.results import io
from hbm.results.tables import build_exports

DEMO_DIARY = Path("data/example_diary.csv")
DEMO_OUT = Path("reports/demo")


def _column_map(pairs: Sequence[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise HBMError(f"--map takes FILE_COLUMN=HBM_COLUMN, got '{pair}'")
        src, dst = pair.split("=", 1)
        out[src.strip()] = dst.strip()
    return out


def _load(args: argparse.Namespace) -> tuple[Priors, Diary]:
    priors = load_priors(args.priors)
    diary = load_diary(
        args.diary,
        priors,
        column_map=_column_map(args.map),
        missing=args.missing,
        min_days=args.min_days,
    )
    return priors, diary


def _validated(args: argparse.Namespace) -> tuple[Priors, Diary, Design, dict[str, Any]]:
    t0 = time.perf_counter()
    priors, diary = _load(args)
    design = exposures(diary, priors)
    summary = summarize(diary, design)
    summary["load_validate_s"] = time.perf_counter() - t0
    return priors, diary, design, summary


def summarize(diary: Diary, design: Design) -> dict[str, Any]:
    """The numbers ``hbm validate`` prints (and ``run.json`` records)."""
    r = diary.report
    days = np.array(list(r.days_per_user.values()))
    return {
        "file": diary.source,
        "rows": r.n_rows,
        "users": r.n_users,
        "days_per_user": {
            "min": int(days.min()),
            "median": float(np.median(days)),
            "max": int(days.max()),
        },
        "attack_rate": float(diary.data["migraine"].mean()),
        "missing_days_total": int(sum(r.missing_days_per_user.values())),
        "missing_values": dict(r.missing_values),
        "missing_policy": r.missing_policy,
        "imputed_values": dict(r.imputed_values),
        "dropped_rows": r.dropped_rows,
        "lag_filled_exposures": dict(design.lag_filled),
        "exposure_prevalence": exposure_prevalence(design),
        "users_with_few_days": list(r.short_users),
        "min_days": r.min_days,
        "ignored_columns": list(r.extra_columns),
        "data_sha256": diary.sha256,
    }


def _print_summary(s: dict[str, Any]) -> None:
    d = s["days_per_user"]
    print(f"diary      {s['file']}")
    print(
        f"rows       {s['rows']}  users {s['users']}  days/user min {d['min']} "
        f"median {d['median']:g} max {d['max']}"
    )
    print(f"attacks    {s['attack_rate']:.1%} of days")
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


def cmd_validate(args: argparse.Namespace) -> int:
    *_, summary = _validated(args)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
        print("valid")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    priors = load_priors(args.priors)
    cfg = SimulationConfig(
        n_users=args.users,
        n_days=args.days,
        heterogeneity=args.heterogeneity,
        seed=args.seed,
        attack_rate=args.attack_rate,
        sigma_a=args.sigma_a,
        menstruating_share=args.menstruating_share,
        n_locations=args.locations,
        clustering=args.clustering,
    )
    cohort = simulate(priors, cfg)
    out = io.write_cohort(args.out, cohort.diary.data, cohort.truth)
    print(
        f"wrote {out} ({cohort.diary.report.n_rows} rows, {cfg.n_users} users, attack rate "
        f"{cohort.diary.data['migraine'].mean():.1%}) and {io.truth_path(out)}"
    )
    return 0


def run_info_of(
    result: FitResult,
    summary: dict[str, Any],
    args: argparse.Namespace,
    started: str,
    parameterization: str = "auto",
) -> dict[str, Any]:
    """``run.json`` of a fit: command, data summary, sampler, interval choice, versions."""
    return {
        "command": shlex.join(["hbm", *args.argv]),
        "started": started,
        "priors": {"path": result.priors.path, "sha256": result.priors.sha256},
        "diary": summary,
        "sampler": json.loads(result.tree.attrs["sampler_config"]),
        "nuts_sampler": result.config.backend,
        "seed": result.config.seed,
        "pooling": result.pooling,
        "parameterization": parameterization,
        "centring": result.centring.summary(),
        "ci_prob": args.ci_prob,
        "ci_kind": args.ci_kind,
        "reliable": result.diagnostics.reliable,
        "reliability_reasons": list(result.diagnostics.reasons),
        "versions": json.loads(result.tree.attrs["versions"]),
        "timings": dict(result.timings),
    }


def sampler_config(args: argparse.Namespace) -> SamplerConfig:
    """The sampler settings of the fit options (``_add_fit_options``)."""
    return SamplerConfig(
        backend=args.backend,
        chains=args.chains,
        tune=args.tune,
        draws=args.draws,
        target_accept=args.target_accept,
        max_treedepth=args.max_treedepth,
        seed=args.seed,
        progressbar=not args.no_progress,
    )


def _fit_and_export(
    args: argparse.Namespace,
    out: Path,
    loaded: tuple[Priors, Diary, Design, dict[str, Any]] | None = None,
) -> tuple[int, dict[str, Any]]:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    priors, diary, design, summary = loaded if loaded is not None else _validated(args)
    cfg = sampler_config(args)
    print(
        f"fitting {summary['users']} users x {summary['rows']} days x {len(priors.keys)} "
        f"features with {cfg.backend} ({cfg.chains} chains, {cfg.tune} tune + {cfg.draws} "
        "draws)...",
        flush=True,
    )
    result = fit(design, priors, cfg, args.pooling, args.parameterization, diary.sha256)
    t_exp = time.perf_counter()
    exports = build_exports(result, args.ci_prob, args.ci_kind, args.min_days)
    timings = {"load_validate_s": summary["load_validate_s"], **result.timings}
    run_info = run_info_of(result, summary, args, started, args.parameterization)
    run_info["timings"] = timings
    io.write_run(out, result.tree, exports, run_info)
    timings["export_s"] = time.perf_counter() - t_exp
    timings["total_s"] = time.perf_counter() - t0
    run_info["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    io.write_json(out / io.RUN_FILE, run_info)
    d = result.diagnostics
    verdict = "reliable" if d.reliable else "NOT RELIABLE: " + "; ".join(d.reasons)
    print(f"fit {verdict}")
    print(
        f"max R-hat {d.max_rhat:.3f}, min bulk ESS {d.min_ess_bulk:.0f}, min tail ESS "
        f"{d.min_ess_tail:.0f}, divergences {d.divergences}, min E-BFMI {min(d.ebfmi):.2f}, "
        f"draws at the maximum tree depth {d.max_treedepth_hits}"
    )
    print(f"wrote {out}/ ({', '.join(io.RUN_FILES)}) in {timings['total_s']:.0f} s")
    code = 3 if (args.strict and not d.reliable) else 0
    return code, run_info


def cmd_fit(args: argparse.Namespace) -> int:
    code, _ = _fit_and_export(args, Path(args.out))
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    print(f"[1/3] validate {args.diary}")
    loaded = _validated(args)
    _print_summary(loaded[3])
    print(f"[2/3] fit and export to {args.out}")
    code, _ = _fit_and_export(args, Path(args.out), loaded)
    print("[3/3] report")
    path = write_run_report(args.out, days_users=40, seed=0)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; report: {path}")
    return code


def cmd_profile(args: argparse.Namespace) -> int:
    d = io.check_run_dir(args.run_dir)
    profiles = io.read_json(d / io.PROFILES_FILE)
    for p in profiles:
        if p["user_id"] == args.user_id:
            print(json.dumps(p, indent=2))
            return 0
    ids = [p["user_id"] for p in profiles]
    raise HBMError(
        f"user '{args.user_id}' is not in {d / io.PROFILES_FILE} ({len(ids)} users, e.g. "
        f"{', '.join(ids[:5])})"
    )


def load_service_data(run_dir: str | Path) -> Any:
    """Read and check a run folder for ``hbm serve`` (``hbm.app.service.ServiceData``)."""
    from hbm.app import service

    run = io.read_run(run_dir)
    pooling = run.run_info.get("pooling", "partial")
    draws = None
    if pooling != "none":
        names = ("mu", "tau") if pooling == "partial" else ("mu",)
        draws = io.load_fit(run.path / io.FIT_FILE, posterior_vars=names)
    return service.prepare(run, draws)


def write_run_report(
    run_dir: str | Path, days_users: int = DAYS_NEEDED_USERS, seed: int = 0, verbose: bool = False
) -> Path:
    """Build a run folder's report (with "days needed" for partial pooling) and write it."""
    from hbm.results.days_needed import days_needed
    from hbm.results.report import build_report

    t0 = time.perf_counter()
    run = io.read_run(run_dir)
    tree = io.load_fit(run.path / io.FIT_FILE)
    days = None
    if run.run_info.get("pooling", "partial") == "partial":
        days = days_needed(tree, n_users=days_users, seed=seed)
    report = build_report(
        run,
        tree,
        days,
        io.read_optional_csv(run.path / io.COMPARISON_FILE),
        io.read_optional_csv(run.path / io.PER_USER_METRICS_FILE),
        progress=lambda name: print(f"figure {name}", file=sys.stderr) if verbose else None,
    )
    path = io.write_report(run.path, report.html, report.figures)
    print(
        f"report: {path} ({path.stat().st_size / 1e6:.1f} MB, {len(report.figures)} figures, "
        f"{time.perf_counter() - t0:.0f} s)"
    )
    return path


def cmd_compare(args: argparse.Namespace) -> int:
    from hbm.evaluation.compare import compare

    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    priors, diary, _, summary = _validated(args)
    truth_file = io.truth_path(args.diary)
    truth = io.read_json(truth_file) if truth_file.exists() else None
    cfg = sampler_config(args)
    result = compare(
        diary,
        priors,
        args.models,
        args.test_fraction,
        args.split,
        cfg,
        truth,
        stability=not args.no_stability,
        seed=args.seed,
        progress=lambda msg: print(msg, flush=True),
    )
    out = Path(args.out)
    tables = {
        io.COMPARISON_FILE: result.table,
        "differences.csv": result.differences,
        io.PER_USER_METRICS_FILE: result.per_user,
    }
    if result.recovery is not None:
        tables["recovery.csv"] = result.recovery
    if result.stability is not None:
        tables["stability.csv"] = result.stability
    for name, table in tables.items():
        io.write_csv(out / name, table)
    info = {
        "command": shlex.join(["hbm", *args.argv]),
        "started": started,
        "diary": summary,
        "truth": str(truth_file) if truth else None,
        **result.info,
        "total_s": time.perf_counter() - t0,
    }
    io.write_json(out / "compare.json", info)
    if "hbm" in result.fits and result.fits["hbm"].result is not None:
        fitted = result.fits["hbm"].result
        run_dir = out / "hbm"
        exports = build_exports(fitted, args.ci_prob, args.ci_kind, args.min_days)
        io.write_run(run_dir, fitted.tree, exports, run_info_of(fitted, summary, args, started))
        for name in (io.COMPARISON_FILE, io.PER_USER_METRICS_FILE):
            io.write_csv(run_dir / name, tables[name])
    show = ["model", "within_auc_median", "pooled_auc", "brier", "ece"]
    show += ["d_within_auc", "d_within_auc_lb", "d_within_auc_ub", "d_brier_lb", "d_brier_ub"]
    print(result.table[show].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for name, extra in (("recovery", result.recovery), ("stability", result.stability)):
        if extra is not None:
            print(f"{name}:")
            print(extra.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {out}/ ({', '.join(tables)}, compare.json) in {info['total_s']:.0f} s")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from hbm.evaluation.study import FULL, QUICK, study, summary_table

    priors = load_priors(args.priors)
    grid = QUICK if args.quick else FULL
    overrides = {
        k: getattr(args, k) for k in ("chains", "tune", "draws") if getattr(args, k) is not None
    }
    grid = replace(grid, **overrides)
    t0 = time.perf_counter()
    results = study(priors, grid, args.models, progress=lambda msg: print(msg, flush=True))
    out = Path(args.out)
    io.write_csv(out / "study.csv", results)
    table = summary_table(results)
    io.write_csv(out / "study_summary.csv", table)
    io.write_json(
        out / "study.json",
        {
            "command": shlex.join(["hbm", *args.argv]),
            "grid": {k: getattr(grid, k) for k in grid.__dataclass_fields__},
            "total_s": time.perf_counter() - t0,
        },
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out}/study.csv and study_summary.csv in {time.perf_counter() - t0:.0f} s")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from hbm.evaluation.decide import decide

    d = Path(args.dir)
    run_dir = d / "hbm" if (d / "hbm" / io.POPULATION_FILE).exists() else d
    run = io.read_run(run_dir)
    comparison = io.read_optional_csv(d / io.COMPARISON_FILE)
    if comparison is None:
        comparison = io.read_optional_csv(run_dir / io.COMPARISON_FILE)
    decision = decide(run.population, run.users, comparison)
    print("PERSONALIZE: yes" if decision.personalize else "PERSONALIZE: no")
    for name, ok in decision.checks.items():
        print(f"  [{'x' if ok else ' '}] {name}")
    for reason in decision.reasons:
        print(f"  - {reason}")
    return 0 if decision.personalize else 1


def cmd_report(args: argparse.Namespace) -> int:
    write_run_report(args.run_dir, args.days_users, args.seed, args.verbose)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hbm.app.service import create_app

    data = load_service_data(args.run_dir)
    print(
        f"serving run '{data.name}' ({len(data.users)} users, reliable={data.reliable}) on "
        f"http://{args.host}:{args.port} (OpenAPI docs at /docs)",
        file=sys.stderr,
    )
    uvicorn.run(create_app(data), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    import arviz as az

    from hbm.results.plots import DIAGNOSTIC_FIGURES

    d = io.check_run_dir(args.run_dir)
    diag = io.read_json(d / io.DIAGNOSTICS_FILE)
    tree = io.load_fit(d / io.FIT_FILE)
    print("reliable" if diag["reliable"] else "NOT RELIABLE: " + "; ".join(diag["reasons"]))
    print(f"{'variable':<10} {'max R-hat':>10} {'min ESS bulk':>13} {'min ESS tail':>13}")
    for name, v in diag["per_variable"].items():
        print(
            f"{name:<10} {v['max_rhat']:>10.3f} {v['min_ess_bulk']:>13.0f} "
            f"{v['min_ess_tail']:>13.0f}"
        )
    print(
        f"divergences {diag['divergences']}; E-BFMI per chain "
        f"{', '.join(f'{e:.2f}' for e in diag['ebfmi'])}; draws at the maximum tree depth "
        f"{diag.get('max_treedepth_hits', -1)}"
    )
    names = [n for n in ("a0", "sigma_a", "mu", "tau") if n in tree["posterior"].data_vars]
    table = az.summary(tree, var_names=names, kind="diagnostics", round_to="none")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    fig_dir = d / "figures"
    for fname, plot in DIAGNOSTIC_FIGURES.items():
        pc = plot(tree)
        with io.atomic_path(fig_dir / fname) as tmp:
            pc.savefig(tmp, format="png", dpi=90)
        print(f"wrote {fig_dir / fname}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from hbm.results.prediction import fit_priors, predict

    d = io.check_run_dir(args.run_dir)
    tree = io.load_fit(d / io.FIT_FILE)
    priors = fit_priors(tree)
    diary = load_diary(args.diary, priors, column_map=_column_map(args.map), missing=args.missing)
    table = predict(tree, diary, ci_prob=args.ci_prob, seed=args.seed)
    table["date"] = table["date"].dt.strftime("%Y-%m-%d")
    io.write_csv(args.out, table)
    n_new = int((~table["known_user"]).sum())
    print(
        f"wrote {args.out} ({len(table)} days; {n_new} of unseen users, predicted from the "
        "population)"
    )
    return 0


def _add_diary_options(p: argparse.ArgumentParser, diary_default: Path | None = None) -> None:
    if diary_default is None:
        p.add_argument("diary", help="diary file (.csv or .parquet)")
    else:
        p.add_argument("--diary", default=str(diary_default), help="diary file")
    p.add_argument("--priors", default=None, help="priors JSON (default: the shipped clinical one)")
    p.add_argument(
        "--map",
        action="append",
        metavar="FILE_COL=HBM_COL",
        help="rename a diary column (repeatable), e.g. --map patient=user_id",
    )
    p.add_argument(
        "--missing",
        choices=MISSING_POLICIES,
        default="error",
        help="missing feature values: error (default), impute (user median) or drop",
    )
    p.add_argument(
        "--min-days",
        type=int,
        default=MIN_DAYS,
        help="report users with fewer logged days (default %(default)s)",
    )


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    p.add_argument("--chains", type=int, default=SamplerConfig.chains)
    p.add_argument(
        "--tune", type=int, default=None, help="warm-up per chain (nutpie 300, others 1000)"
    )
    p.add_argument("--draws", type=int, default=SamplerConfig.draws)
    p.add_argument("--target-accept", type=float, default=SamplerConfig.target_accept)
    p.add_argument(
        "--max-treedepth",
        type=int,
        default=SamplerConfig.max_treedepth,
        help="longest trajectory 2^depth - 1 steps (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=SamplerConfig.seed)
    p.add_argument("--pooling", choices=POOLINGS, default="partial")
    p.add_argument("--parameterization", choices=PARAMETERIZATIONS, default="auto")
    p.add_argument("--ci-prob", type=float, default=CI_PROB)
    p.add_argument("--ci-kind", choices=CI_KINDS, default=CI_KIND)
    p.add_argument(
        "--strict", action="store_true", help="exit 3 when the fit fails the diagnostics gate"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hbm", description="Hierarchical Bayesian migraine-trigger model."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a diary against a priors file and summarize it")
    _add_diary_options(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("simulate", help="write a synthetic diary and its truth file")
    p.add_argument("--users", type=int, default=SimulationConfig.n_users)
    p.add_argument("--days", type=int, default=SimulationConfig.n_days)
    p.add_argument(
        "--heterogeneity",
        type=float,
        default=None,
        help="between-user SD of every weight (default: the priors' own SDs)",
    )
    p.add_argument("--seed", type=int, default=SimulationConfig.seed)
    p.add_argument("--priors", default=None)
    p.add_argument("--attack-rate", type=float, default=SimulationConfig.attack_rate)
    p.add_argument("--sigma-a", type=float, default=SimulationConfig.sigma_a)
    p.add_argument("--menstruating-share", type=float, default=SimulationConfig.menstruating_share)
    p.add_argument("--locations", type=int, default=SimulationConfig.n_locations)
    p.add_argument(
        "--clustering",
        type=float,
        default=SimulationConfig.clustering,
        help="log-odds added the day after an attack (0 = off)",
    )
    p.add_argument("--out", required=True, help="diary path (.csv or .parquet)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("fit", help="fit the model and export tables into a run folder")
    _add_diary_options(p)
    _add_fit_options(p)
    p.add_argument("--out", required=True, help="run folder")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("demo", help="validate, fit and export the shipped example diary")
    _add_diary_options(p, DEMO_DIARY)
    _add_fit_options(p)
    p.add_argument("--out", default=str(DEMO_OUT), help="run folder (default %(default)s)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("profile", help="print one user's trigger profile")
    p.add_argument("run_dir")
    p.add_argument("user_id")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("diagnose", help="print diagnostics and write rank, energy, forest plots")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("predict", help="risk for the days of a diary (known and unseen users)")
    p.add_argument("run_dir")
    p.add_argument("diary")
    p.add_argument("--out", required=True, help="predictions CSV")
    p.add_argument("--map", action="append", metavar="FILE_COL=HBM_COL")
    p.add_argument("--missing", choices=MISSING_POLICIES, default="error")
    p.add_argument("--ci-prob", type=float, default=CI_PROB)
    p.add_argument("--seed", type=int, default=0, help="seed of unseen users' draws")
    p.set_defaults(func=cmd_predict)

    from hbm.evaluation.baselines import MODELS

    p = sub.add_parser("compare", help="held-out comparison of hbm with its baselines")
    _add_diary_options(p)
    _add_fit_options(p)
    p.add_argument("--out", required=True, help="comparison folder")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--test-fraction", type=float, default=TEST_FRACTION)
    p.add_argument("--split", choices=("temporal", "users"), default="temporal")
    p.add_argument("--no-stability", action="store_true", help="skip the half-data refits")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("study", help="the personalization study over simulated cohorts")
    p.add_argument("--out", required=True)
    p.add_argument("--priors", default=None)
    p.add_argument("--quick", action="store_true", help="the small grid CI runs")
    p.add_argument("--chains", type=int, default=None, help="NUTS chains (default: the grid's)")
    p.add_argument("--tune", type=int, default=None)
    p.add_argument("--draws", type=int, default=None)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("decide", help="go / no-go for personalization (exit 0 yes, 1 no)")
    p.add_argument("dir", help="an hbm run folder or an `hbm compare` folder")
    p.set_defaults(func=cmd_decide)

    p = sub.add_parser("report", help="write RUN_DIR/report.html (self-contained) and figures")
    p.add_argument("run_dir")
    p.add_argument("--days-users", type=int, default=40, help="simulated users for days needed")
    p.add_argument("--seed", type=int, default=0, help="seed of the days-needed simulation")
    p.add_argument("--verbose", action="store_true", help="name each figure as it is drawn")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="read-only HTTP API over a run folder (FastAPI)")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info"))
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hbm`` command."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        code: int = args.func(args)
    except HBMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
