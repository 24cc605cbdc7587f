"""The ``hbm`` command: parses arguments (``hbm.app.parser``), calls the workflows
(``hbm.app.workflows``, ``hbm.app.run_workflows``) and prints what they return."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hbm.app.checks import check_at_least
from hbm.app.config import FitConfig
from hbm.app.engine import EngineConfig, TaskRun
from hbm.app.parser import DEMO_DIARY, build_parser, column_map, fit_config
from hbm.app.printing import (
    command_line,
    num,
    print_fit,
    print_report,
    print_summary,
    say,
    warn,
)
from hbm.app.run_workflows import (
    decide_folder,
    find_profile,
    load_service_data,
    predict_days,
    read_diagnostics,
    write_diagnostic_figures,
    write_run_report,
)
from hbm.app.task_workflows import SBCSettings, StudySampler, run_sbc_folder, run_study
from hbm.app.workflows import (
    CompareOptions,
    Inputs,
    compare_and_export,
    fit_and_export,
    load_inputs,
    simulate_cohort,
)
from hbm.defaults import DAYS_NEEDED_USERS
from hbm.errors import HBMError, Interrupted, exit_code
from hbm.interrupts import check, interruptible
from hbm.model.simulation import SimulationConfig
from hbm.results import io

__all__ = ["build_parser", "load_service_data", "main"]


def cmd_validate(args: argparse.Namespace) -> int:
    summary = load_inputs(fit_config(args)).summary
    warn(summary)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
        print("valid")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
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
        clustering_spread=args.clustering_spread,
        attack_days=args.attack_days,
        premonitory=args.premonitory,
        premonitory_share=args.premonitory_share,
        premonitory_shift=args.premonitory_shift,
        premonitory_days=args.premonitory_days,
        missing_days=args.missing_days,
        missing_values=args.missing_values,
    )
    cohort = simulate_cohort(args.priors, cfg, args.out)
    empty = int(cohort.table[list(cohort.diary.columns)].isna().sum().sum())
    print(
        f"wrote {args.out} ({cohort.diary.report.n_rows} rows, {cfg.n_users} users, attack rate "
        f"{cohort.truth['attack_rate_realized']:.1%} of the days at risk"
        + (f", {empty} empty values: fit it with --missing impute or drop" if empty else "")
        + f") and {io.truth_path(args.out)}"
    )
    return 0


def _phase(name: str) -> None:
    print(f"phase: {name}", file=sys.stderr, flush=True)


def _fit(inputs: Inputs, config: FitConfig, out: Path, command: str) -> int:
    s, cfg = inputs.summary, config.sampler()
    warn(s)
    print(
        f"fitting {s['users']} users x {s['rows']} days x {len(inputs.priors.keys)} "
        f"features with {cfg.backend} ({cfg.chains} chains, {cfg.tune} tune + {cfg.draws} "
        "draws)...",
        flush=True,
    )
    run = fit_and_export(inputs, config, out, command, _phase if config.progress else None)
    print_fit(run)
    return run.exit_code


def cmd_fit(args: argparse.Namespace) -> int:
    config = fit_config(args)
    if config.progress:
        _phase("load")
    return _fit(load_inputs(config), config, Path(args.out), command_line(args))


def cmd_demo(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    config = fit_config(args, DEMO_DIARY)
    print(f"[1/3] validate {config.diary}")
    inputs = load_inputs(config)
    print_summary(inputs.summary)
    print(f"[2/3] fit and export to {args.out}")
    code = _fit(inputs, config, Path(args.out), command_line(args))
    print("[3/3] report")
    report = write_run_report(args.out, DAYS_NEEDED_USERS, seed=0)
    print_report(report)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; report: {report.path}")
    return code


def cmd_profile(args: argparse.Namespace) -> int:
    print(json.dumps(find_profile(args.run_dir, args.user_id), indent=2))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    check_at_least(args.origins, 1, "--origins")
    config = fit_config(args)
    inputs = load_inputs(config)
    warn(inputs.summary)
    options = CompareOptions(
        tuple(args.models) if args.models is not None else None,
        args.test_fraction,
        args.split,
        stability=not args.no_stability,
        origins=args.origins,
    )
    out = Path(args.out)
    run = compare_and_export(
        inputs, config, options, out, command_line(args), progress=say, engine=_engine(args)
    )
    result = run.comparison
    show = ["model", "within_auc_median", "pooled_auc", "brier", "ece"]
    show += ["d_within_auc", "d_within_auc_lb", "d_within_auc_ub", "d_brier_lb", "d_brier_ub"]
    print(result.table[show].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for name, extra in (("recovery", result.recovery), ("stability", result.stability)):
        if extra is not None:
            print(f"{name}:")
            print(extra.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    fits = run.info["fits"]
    print(_ran_line(fits["ran"], fits["reused"], fits["where"]))
    files = ", ".join(run.files)
    print(f"wrote {out}/ ({files}, compare.json) in {run.info['total_s']:.0f} s")
    return 0


def _engine(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(args.workers, args.scheduler)


def _tasks_line(run: TaskRun) -> str:
    return _ran_line(len(run.ran), len(run.reused), run.where)


def _ran_line(ran: int, reused: int, where: str) -> str:
    done = f", {reused} {'was' if reused == 1 else 'were'} done already" if reused else ""
    return f"{ran} {'task' if ran == 1 else 'tasks'} ran on {where}{done}"


def cmd_study(args: argparse.Namespace) -> int:
    out = Path(args.out)
    sampler = StudySampler(args.chains, args.tune, args.draws)
    run = run_study(
        out, args.priors, args.quick, args.models, command_line(args), sampler, say, _engine(args)
    )
    print(run.summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(_tasks_line(run.tasks))
    print(f"wrote {out}/study.csv, study_summary.csv and study_timings.csv in {run.seconds:.0f} s")
    return 0


def cmd_sbc(args: argparse.Namespace) -> int:
    out = Path(args.out)
    settings = SBCSettings(
        users=args.users,
        days=args.days,
        simulations=args.simulations,
        seed=args.seed,
        backend=args.backend,
        chains=args.chains,
        tune=args.tune,
        draws=args.draws,
        bins=args.bins,
        max_w=args.max_w,
    )
    run = run_sbc_folder(out, args.priors, settings, command_line(args), say, _engine(args))
    worst = run.tests.nsmallest(5, "p_value")
    print(worst.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"smallest of {len(run.tests)} uniformity p-values: {run.min_p:.4f}")
    if run.expected_per_bin < 5:
        print(
            f"warning: {run.expected_per_bin:.1f} simulations a rank bin; the chi-square tests "
            "need 5 or more (more --simulations or fewer --bins)"
        )
    print(_tasks_line(run.tasks))
    files = "sbc_ranks.csv, sbc_tests.csv, sbc_ecdf.png and sbc.json"
    print(f"wrote {out}/{files} in {run.seconds:.0f} s")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    decision = decide_folder(args.dir)
    print("PERSONALIZE: yes" if decision.personalize else "PERSONALIZE: no")
    for name, ok in decision.checks.items():
        print(f"  [{'x' if ok else ' '}] {name}")
    for reason in decision.reasons:
        print(f"  - {reason}")
    return 0 if decision.personalize else 1


def _print_figure_name(name: str) -> None:
    print(f"figure {name}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    progress = _print_figure_name if args.verbose else None
    print_report(write_run_report(args.run_dir, args.days_users, args.seed, progress))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from hbm.app.service import create_app
    from hbm.app.service_http import bind, run_server

    data = load_service_data(args.run_dir)
    app = create_app(data)
    sock = bind(args.host, args.port)  # a port in use: PortInUseError, exit 5
    print(
        f"serving run '{data.name}' ({len(data.users)} users, reliable={data.reliable}) on "
        f"http://{args.host}:{sock.getsockname()[1]} (OpenAPI docs at /docs)",
        file=sys.stderr,
    )
    run_server(app, sock, args.log_level)
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    run = read_diagnostics(args.run_dir)
    diag = run.diagnostics
    print("reliable" if diag["reliable"] else "NOT RELIABLE: " + "; ".join(diag["reasons"]))
    print(f"{'variable':<10} {'max R-hat':>10} {'min ESS bulk':>13} {'min ESS tail':>13}")
    for name, v in diag["per_variable"].items():
        print(
            f"{name:<10} {num(v['max_rhat'], '.3f'):>10} {num(v['min_ess_bulk'], '.0f'):>13} "
            f"{num(v['min_ess_tail'], '.0f'):>13}"
        )
    print(
        f"divergences {diag['divergences']}; E-BFMI per chain "
        f"{', '.join(num(e, '.2f') for e in diag['ebfmi'])}; draws at the maximum tree depth "
        f"{diag.get('max_treedepth_hits', -1)}"
    )
    print(run.table.to_string(float_format=lambda v: f"{v:.3f}"))
    for path in write_diagnostic_figures(args.run_dir, run.tree):
        print(f"wrote {path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    pairs = column_map(args.map)
    table = predict_days(
        args.run_dir,
        args.diary,
        args.out,
        dict(pairs) if pairs else None,
        args.missing,
        args.ci_prob,
        args.seed,
    )
    n_new = int((~table["known_user"]).sum())
    print(
        f"wrote {args.out} ({len(table)} days; {n_new} of unseen users, predicted from the "
        "population)"
    )
    continuing = int(table.attrs.get("continuing_days", 0))
    if continuing:
        print(
            f"{continuing} day(s) inside an attack that began earlier (migraine_continues) have "
            "no onset risk and no row"
        )
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from hbm.app.update_workflow import UPDATE_USERS_FILE, UpdateOptions, update_and_export

    pairs = column_map(args.map)
    options = UpdateOptions(args.seed, args.proposals, args.missing, dict(pairs) if pairs else None)
    run = update_and_export(args.run_dir, args.diary, args.out, options, command_line(args))
    users = run.users
    if len(users):
        new = int((~users["known_user"]).sum())
        print(
            f"updated {len(users)} {'user' if len(users) == 1 else 'users'} ({new} new, "
            f"{len(users) - new} known) from {args.run_dir}'s population: "
            f"{users['seconds'].sum():.1f} s, 95th percentile "
            f"{users['seconds'].quantile(0.95):.2f} s a user; largest Pareto k-hat "
            f"{users['khat'].max():.2f}"
        )
    refit = run.refit
    print("refit due: " + "; ".join(refit.reasons) if refit.due else "refit not due")
    print(f"wrote {args.out}/ (each user's update and its checks in {UPDATE_USERS_FILE})")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "validate": cmd_validate,
    "simulate": cmd_simulate,
    "fit": cmd_fit,
    "demo": cmd_demo,
    "profile": cmd_profile,
    "diagnose": cmd_diagnose,
    "predict": cmd_predict,
    "update": cmd_update,
    "compare": cmd_compare,
    "study": cmd_study,
    "sbc": cmd_sbc,
    "decide": cmd_decide,
    "report": cmd_report,
    "serve": cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hbm`` command."""
    parser = build_parser()
    process = argv is None  # the hbm command itself, not a call from Python
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        with interruptible(then_ignore=process):
            return _run(args)
    except Interrupted as exc:  # the signals are ignored now in the hbm process (then_ignore)
        print(f"hbm {args.command}: {_stopped(exc, args)}", file=sys.stderr, flush=True)
        return exc.exit_code


def _run(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except HBMError as exc:
        check()  # an error that a signal caused (a library wrapped its exception) is the signal
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)


#: Commands whose output is a folder written whole or not at all: the argument that names it.
WHOLE_OUTPUT = {
    "fit": "out",
    "demo": "out",
    "compare": "out",
    "report": "run_dir",
    "diagnose": "run_dir",
}


def _stopped(exc: Interrupted, args: argparse.Namespace) -> str:
    """What an interrupted command says: the signal and what it left (one line)."""
    if exc.detail or args.command not in WHOLE_OUTPUT:
        return str(exc)
    out = getattr(args, WHOLE_OUTPUT[args.command])
    if io.written_here(out):
        left = f"{out} was written before the signal came"
    elif Path(out).exists():
        left = f"{out} was left as it was"
    else:
        left = f"nothing was written to {out}"
    return str(Interrupted(exc.signum, left))


if __name__ == "__main__":
    sys.exit(main())
