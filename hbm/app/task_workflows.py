"""The workflows of many independent fits behind ``hbm study`` and ``hbm sbc``.

Each builds its command's tasks (``hbm.evaluation.study.study_tasks``,
``hbm.inference.sbc.sbc_tasks``), runs them through ``hbm.app.engine`` (in this process or on
Dask, every finished task stored in ``OUT/tasks/``, a rerun doing only what is missing) and
writes the tables whole at the end. What the tasks compute (settings, priors, hbm's version) is
fingerprinted so that a rerun into the same folder with other settings is refused, not mixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from hbm import __version__
from hbm.app.checks import check_at_least, check_out_folder, check_seed
from hbm.app.engine import EngineConfig, TaskRun, run_tasks
from hbm.data.priors import load_priors
from hbm.inference.provenance import package_versions
from hbm.results import io
from hbm.results.json_values import json_ready
from hbm.tasks import Task

if TYPE_CHECKING:
    from hbm.inference.config import SamplerConfig

Progress = Callable[[str], None]
#: The task store inside a study's or an SBC's output folder.
TASKS_DIR = "tasks"


@dataclass(frozen=True)
class StudyRun:
    """A study written into its folder (``run_study``): the summary table and the seconds taken."""

    summary: pd.DataFrame
    seconds: float
    tasks: TaskRun


@dataclass(frozen=True)
class StudySampler:
    """Overrides of a study grid's sampler; ``None`` keeps the grid's own."""

    chains: int | None = None
    tune: int | None = None
    draws: int | None = None


@dataclass
class EngineRunner:
    """A runner for the evaluation functions: the engine, storing into ``store``; ``runs``
    collects each call's ``TaskRun``."""

    store: Path
    settings: dict[str, Any]
    engine: EngineConfig
    progress: Progress | None
    progressbar: bool = True
    runs: list[TaskRun] = field(default_factory=list)

    def run(self, tasks: Sequence[Task]) -> dict[str, Any]:
        done = run_tasks(
            tasks,
            self.store,
            self.settings,
            self.engine,
            say=self.progress or (lambda _msg: None),
            progressbar=self.progressbar and self.progress is not None,
        )
        self.runs.append(done)
        return done.results


def engine_runner(
    store: Path,
    settings: dict[str, Any],
    engine: EngineConfig,
    progress: Progress | None,
    progressbar: bool = True,
) -> EngineRunner:
    """An ``EngineRunner`` of a checked engine."""
    check_engine(engine)
    return EngineRunner(store, settings, engine, progress, progressbar)


def check_engine(engine: EngineConfig) -> None:
    """``--workers`` at least 1."""
    check_at_least(engine.workers, 1, "--workers")


def task_counts(run: TaskRun, engine: EngineConfig) -> dict[str, Any]:
    """What ran where, and how long: wall seconds, each task's mean, the overhead per task."""
    took = list(run.task_seconds.values())
    local = engine.scheduler is None
    return {
        "tasks": len(run.results),
        "ran": len(run.ran),
        "reused": len(run.reused),
        "where": run.where,
        "tasks_s": run.seconds,
        "task_mean_s": sum(took) / len(took) if took else None,
        # a cluster's worker count is its own; the overhead is known for local workers only
        "overhead_per_task_s": run.overhead_s(engine.workers) if local else None,
    }


def run_study(
    out: Path,
    priors_path: str | None,
    quick: bool,
    models: Sequence[str],
    command: str,
    sampler: StudySampler | None = None,
    progress: Progress | None = None,
    engine: EngineConfig | None = None,
) -> StudyRun:
    """Run the personalization study grid; write ``study.csv``, its summary, the tasks' seconds
    (``study_timings.csv``) and ``study.json``.

    ``quick`` picks the small grid (``QUICK``, else ``FULL``); ``sampler`` overrides the grid's
    ``chains``, ``tune`` and ``draws`` where it sets them; ``engine`` says where the (cell,
    model) tasks run. A rerun of the same command into the same folder runs only the tasks
    that are missing.
    """
    from hbm.evaluation.study import FULL, QUICK, grid_sampler, study, summary_table

    engine = engine or EngineConfig()
    check_out_folder(out, (priors_path,))
    check_engine(engine)
    priors = load_priors(priors_path)
    grid = QUICK if quick else FULL
    if sampler is not None:
        given = {k: getattr(sampler, k) for k in ("chains", "tune", "draws")}
        for name, least in (("chains", 1), ("tune", 0), ("draws", 1)):
            if given[name] is not None:
                check_at_least(given[name], least, f"--{name}")
        grid = replace(grid, **{k: v for k, v in given.items() if v is not None})
    t0 = time.perf_counter()
    grid_doc = {k: getattr(grid, k) for k in grid.__dataclass_fields__}
    grid_doc["tune"] = grid_sampler(grid).tune_steps  # what the fits ran (None: the default)
    grid_doc["nuts_sampler"] = grid_sampler(grid).backend
    # a (cell, model) task does not depend on which other models run: not in the fingerprint
    settings = {
        "command": "study",
        "grid": grid_doc,
        "priors_sha256": priors.sha256,
        "hbm": __version__,
    }
    runner = engine_runner(out / TASKS_DIR, settings, engine, progress)
    result = study(priors, grid, models, runner=runner.run, cores=engine.cores_per_fit())
    runs = runner.runs
    io.write_csv(out / "study.csv", result.results)
    table = summary_table(result.results)
    io.write_csv(out / "study_summary.csv", table)
    io.write_csv(out / "study_timings.csv", result.timings)
    io.write_json(
        out / "study.json",
        json_ready(
            {
                "command": command,
                "grid": grid_doc,
                "models": list(models),
                "workers": None if engine.scheduler else engine.workers,
                "scheduler": engine.scheduler,
                **task_counts(runs[0], engine),
                "total_s": time.perf_counter() - t0,
            }
        ),
    )
    return StudyRun(table, time.perf_counter() - t0, runs[0])


@dataclass(frozen=True)
class SBCSettings:
    """What ``hbm sbc`` checks: the model of a simulated cohort's shape, and each fit."""

    users: int = 5
    days: int = 40
    simulations: int = 100
    seed: int = 0
    backend: str = "pymc"
    chains: int = 2
    tune: int = 300
    draws: int = 200
    bins: int = 10
    max_w: int = 6


@dataclass(frozen=True)
class SBCRun:
    """An SBC written into its folder (``run_sbc_folder``)."""

    tests: pd.DataFrame
    min_p: float
    seconds: float
    tasks: TaskRun
    #: Simulations a rank bin expects (the chi-square tests need 5 or more).
    expected_per_bin: float


def _check_sbc(settings: SBCSettings) -> None:
    for flag, value, least in (
        ("--users", settings.users, 1),
        ("--days", settings.days, 2),
        ("--simulations", settings.simulations, 1),
        ("--chains", settings.chains, 1),
        ("--tune", settings.tune, 0),
        ("--draws", settings.draws, 1),
        ("--bins", settings.bins, 2),
        ("--max-w", settings.max_w, 0),
    ):
        check_at_least(value, least, flag)
    check_seed(settings.seed)


def _sbc_sampler(settings: SBCSettings) -> SamplerConfig:
    """Each SBC fit's NUTS settings, checked."""
    from hbm.inference.config import SamplerConfig

    # each fit's chains run one after another: SBC's parallelism is its simulations (workers),
    # and PyMC's chain processes cost more to start than a small fit takes
    config = SamplerConfig(
        backend=settings.backend,
        chains=settings.chains,
        tune=settings.tune,
        draws=settings.draws,
        seed=settings.seed,
        progressbar=False,
        cores=1,
    )
    config.check()
    return config


def run_sbc_folder(
    out: Path,
    priors_path: str | None,
    settings: SBCSettings,
    command: str,
    progress: Progress | None = None,
    engine: EngineConfig | None = None,
) -> SBCRun:
    """Simulation-based calibration of the default model of ``priors_path``; write the ranks
    (``sbc_ranks.csv``), the uniformity tests (``sbc_tests.csv``), the ECDF figure
    (``sbc_ecdf.png``) and ``sbc.json``. Simulations already in ``out/tasks`` are not rerun.
    """
    from hbm.data.exposures import exposures
    from hbm.inference.sbc import sbc_result, sbc_tasks
    from hbm.model.simulation import SimulationConfig, simulate
    from hbm.results.plots import sbc_ecdf_plot
    from hbm.results.report_figures import pc_png

    engine = engine or EngineConfig()
    check_out_folder(out, (priors_path,))
    check_engine(engine)
    _check_sbc(settings)
    priors = load_priors(priors_path)
    t0 = time.perf_counter()
    config = _sbc_sampler(settings)
    cohort = simulate(
        priors, SimulationConfig(n_users=settings.users, n_days=settings.days, seed=settings.seed)
    )
    design = exposures(cohort.diary, priors)
    doc = {k: getattr(settings, k) for k in settings.__dataclass_fields__}
    # simulation i does not depend on how many there are: a rerun with more extends an SBC
    fingerprint = {
        "command": "sbc",
        **{k: v for k, v in doc.items() if k not in ("bins", "max_w", "simulations")},
        "priors_sha256": priors.sha256,
        "hbm": __version__,
    }
    runner = engine_runner(out / TASKS_DIR, fingerprint, engine, progress)
    tasks = sbc_tasks(design, priors, settings.simulations, config, settings.seed)
    done = runner.run(tasks)
    runs = runner.runs
    result = sbc_result(
        design, priors, [done[t.key] for t in tasks], config, settings.bins, settings.max_w
    )
    io.write_csv(out / "sbc_ranks.csv", _long_ranks(result.ranks))
    io.write_csv(out / "sbc_tests.csv", result.tests)
    io.write_bytes(out / "sbc_ecdf.png", pc_png(sbc_ecdf_plot(result.ranks, result.n_draws)))
    min_p = float(result.tests["p_value"].min())
    per_bin = settings.simulations / settings.bins
    io.write_json(
        out / "sbc.json",
        json_ready(
            {
                "command": command,
                "settings": doc,
                "nuts_sampler": config.backend,
                "n_draws": result.n_draws,
                "min_p_value": min_p,
                "tested": len(result.tests),
                "expected_per_bin": per_bin,
                "priors": {"path": priors.path, "sha256": priors.sha256},
                "versions": package_versions("simuk", "dask"),
                "workers": None if engine.scheduler else engine.workers,
                "scheduler": engine.scheduler,
                **task_counts(runs[0], engine),
                "total_s": time.perf_counter() - t0,
            }
        ),
    )
    return SBCRun(result.tests, min_p, time.perf_counter() - t0, runs[0], per_bin)


def _long_ranks(ranks: Any) -> pd.DataFrame:
    """One row per (simulation, parameter element): its rank among the fit's draws."""
    frames = []
    for name in ranks.data_vars:
        arr = ranks[name]
        other = [d for d in arr.dims if d != "simulation"]
        table = arr.to_dataframe(name="rank").reset_index()
        label = table[other].astype(str).agg(",".join, axis=1) if other else ""
        frames.append(
            pd.DataFrame(
                {
                    "simulation": table["simulation"],
                    "parameter": name + ("[" + label + "]" if other else ""),
                    "rank": table["rank"],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
