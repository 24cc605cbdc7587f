"""The workflows from a diary behind the ``hbm`` commands: load, fit and export, compare, study.

``hbm.app.cli`` parses arguments into a ``FitConfig`` (``hbm.app.config``) or plain values, calls
one of these and prints what they return. They read and write files through ``hbm.results.io``
and print nothing; long steps report through a ``progress`` callback. The workflows over a
written run folder (profile, diagnose, predict, report, serve, decide) are in
``hbm.app.run_workflows``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hbm.app.checks import check_seed, check_simulated_diary
from hbm.app.config import CONFIG_COMMENT, FitConfig, document
from hbm.app.engine import EngineConfig
from hbm.data.diary import Diary, load_diary
from hbm.data.exposures import Design, exposure_prevalence, exposures
from hbm.data.priors import Priors, load_priors, without_clustering
from hbm.defaults import ORIGINS, TEST_FRACTION
from hbm.errors import EXIT_OK, EXIT_UNRELIABLE, ConfigError
from hbm.model.simulation import Cohort, SimulationConfig, simulate
from hbm.results import io
from hbm.results.json_values import json_ready
from hbm.results.tables import build_exports

if TYPE_CHECKING:
    from hbm.inference.fitting import FitResult

if TYPE_CHECKING:
    from hbm.evaluation.compare import Comparison, Split

Progress = Callable[[str], None]


def now() -> str:
    """The current time, UTC, to the second (ISO 8601), as run files record it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Inputs:
    """A validated diary and what was derived from it (``load_inputs``).

    Attributes
    ----------
    priors, diary, design
        The loaded priors, the validated diary and its exposures.
    summary
        ``summarize``'s numbers plus ``load_validate_s``.
    started, t0
        When loading began: ISO time (``now``) and ``time.perf_counter()``.
    """

    priors: Priors
    diary: Diary
    design: Design
    summary: dict[str, Any]
    started: str
    t0: float


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
        "continuing_attack_days": design.continuing_days,
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
        "warnings": list(r.warnings),
        "data_sha256": diary.sha256,
    }


def load_inputs(config: FitConfig) -> Inputs:
    """Load the priors and the diary of a configuration, validate it and build its exposures.

    Raises
    ------
    ConfigError
        When the configuration names no diary.
    PriorsError, DiaryError
        On a bad priors file or diary (the message names the file and the place in it).
    """
    if config.diary is None:
        raise ConfigError('no diary: give DIARY or `diary = "PATH"` in the --config file')
    started, t0 = now(), time.perf_counter()
    priors = load_priors(config.priors)
    if config.clustering == "off":
        priors = without_clustering(priors)
    diary = load_diary(
        config.diary,
        priors,
        column_map=config.columns,
        missing=config.missing,
        min_days=config.min_days,
    )
    design = exposures(diary, priors)
    summary = summarize(diary, design)
    summary["load_validate_s"] = time.perf_counter() - t0
    return Inputs(priors, diary, design, summary, started, t0)


def run_info_of(
    result: FitResult,
    summary: dict[str, Any],
    command: str,
    started: str,
    ci_prob: float,
    ci_kind: str,
    parameterization: str = "auto",
) -> dict[str, Any]:
    """``run.json`` of a fit: command, data summary, sampler, interval choice, versions (numbers
    that are not finite as ``null``, ``hbm.results.tables.json_ready``)."""
    return json_ready(
        {
            "command": command,
            "started": started,
            "priors": {"path": result.priors.path, "sha256": result.priors.sha256},
            "diary": summary,
            "sampler": json.loads(result.tree.attrs["sampler_config"]),
            "nuts_sampler": result.config.backend,
            "seed": result.config.seed,
            "pooling": result.pooling,
            "parameterization": parameterization,
            "centring": result.centring.summary(),
            "ci_prob": ci_prob,
            "ci_kind": ci_kind,
            "reliable": result.diagnostics.reliable,
            "reliability_reasons": list(result.diagnostics.reasons),
            "extension": result.extension or None,
            "versions": json.loads(result.tree.attrs["versions"]),
            "timings": dict(result.timings),
        }
    )


@dataclass(frozen=True)
class FitRun:
    """A fit written into its run folder (``fit_and_export``).

    Attributes
    ----------
    out
        The run folder.
    result
        The fit.
    run_info
        What ``run.json`` holds.
    exit_code
        3 when the configuration is strict and the fit fails the diagnostics gate, else 0.
    """

    out: Path
    result: FitResult
    run_info: dict[str, Any]
    exit_code: int


def fit_and_export(
    inputs: Inputs, config: FitConfig, out: Path, command: str, progress: Progress | None = None
) -> FitRun:
    """Fit, export and write the run folder ``out`` as a whole, its ``config.toml`` included.

    ``out`` is checked first (``io.check_out``: writable, and absent, empty or a run folder);
    the folder is built beside it and swapped in complete, with its manifest (``io.staged_run``),
    so a failure or an interrupt leaves ``out`` as it was. ``run.json`` is written with the
    exports, then again with the export time, the total time (from ``inputs.t0``) and
    ``finished``. ``progress`` is called with each phase's name as it starts (the fit's, then
    ``export`` and ``write``).
    """
    given = [p for p in (config.diary, config.priors) if p is not None]
    io.check_out(out, inputs=given)
    from hbm.inference.fitting import fit  # PyMC loads only when a command fits

    result = fit(
        inputs.design,
        inputs.priors,
        config.sampler(),
        config.pooling,
        config.parameterization,
        inputs.diary.sha256,
        progress=progress,
    )
    if progress is not None:
        progress("export")
    t_exp = time.perf_counter()
    exports = build_exports(
        result, config.ci_prob, config.ci_kind, config.min_days, config.fdr_level
    )
    timings = {"load_validate_s": inputs.summary["load_validate_s"], **result.timings}
    run_info = run_info_of(
        result,
        inputs.summary,
        command,
        inputs.started,
        config.ci_prob,
        config.ci_kind,
        config.parameterization,
    )
    run_info["timings"] = timings
    with io.staged_run(out, "run", "hbm fit", inputs=given) as stage:
        if progress is not None:
            progress("write")
        io.write_run(stage, result.tree, exports, run_info)
        io.write_toml(stage / io.CONFIG_FILE, document(config), CONFIG_COMMENT)
        timings["export_s"] = time.perf_counter() - t_exp
        timings["total_s"] = time.perf_counter() - inputs.t0
        run_info["finished"] = now()
        io.write_json(stage / io.RUN_FILE, run_info)
    code = EXIT_UNRELIABLE if (config.strict and not result.diagnostics.reliable) else EXIT_OK
    return FitRun(out, result, run_info, code)


def simulate_cohort(priors_path: str | None, config: SimulationConfig, out: str | Path) -> Cohort:
    """Simulate a cohort and write its diary to ``out`` with the truth file beside it (empty
    values as empty cells)."""
    check_simulated_diary(out, priors_path)
    check_seed(config.seed)
    cohort = simulate(load_priors(priors_path), config)
    io.write_cohort(out, cohort.table, cohort.truth)
    return cohort


@dataclass(frozen=True)
class CompareOptions:
    """What ``hbm compare`` sets beyond a fit: models (``None``: the priors' default list,
    ``hbm.evaluation.baselines.default_models``), test share, split, stability refits, and the
    rolling split's origins."""

    models: tuple[str, ...] | None = None
    test_fraction: float = TEST_FRACTION
    split: Split = "temporal"
    stability: bool = True
    origins: int = ORIGINS


@dataclass(frozen=True)
class CompareRun:
    """A comparison written into its folder (``compare_and_export``).

    Attributes
    ----------
    out
        The comparison folder.
    comparison
        The tables and the fitted models.
    files
        The tables written, by file name (``compare.json`` besides).
    info
        What ``compare.json`` holds.
    """

    out: Path
    comparison: Comparison
    files: tuple[str, ...]
    info: dict[str, Any]


def _comparison_tables(comparison: Comparison) -> dict[str, pd.DataFrame]:
    tables = {
        io.COMPARISON_FILE: comparison.table,
        "differences.csv": comparison.differences,
        io.PER_USER_METRICS_FILE: comparison.per_user,
    }
    if comparison.recovery is not None:
        tables["recovery.csv"] = comparison.recovery
    if comparison.discovery is not None:
        tables["discovery.csv"] = comparison.discovery
    if comparison.stability is not None:
        tables["stability.csv"] = comparison.stability
    return tables


def _write_compared_run(
    run_dir: Path,
    fitted: FitResult,
    inputs: Inputs,
    config: FitConfig,
    command: str,
    tables: dict[str, pd.DataFrame],
) -> None:
    """The hbm fit of a comparison as a sealed run folder, with the comparison tables."""
    exports = build_exports(
        fitted, config.ci_prob, config.ci_kind, config.min_days, config.fdr_level
    )
    run_info = run_info_of(
        fitted, inputs.summary, command, inputs.started, config.ci_prob, config.ci_kind
    )
    io.write_run(run_dir, fitted.tree, exports, run_info)
    for name in (io.COMPARISON_FILE, io.PER_USER_METRICS_FILE):
        io.write_csv(run_dir / name, tables[name])
    io.seal_run(run_dir, "run", "hbm compare")


def compare_and_export(
    inputs: Inputs,
    config: FitConfig,
    options: CompareOptions,
    out: Path,
    command: str,
    progress: Progress | None = None,
    engine: EngineConfig | None = None,
) -> CompareRun:
    """Compare hbm with its baselines; write the tables, ``compare.json`` and ``out/hbm/``.

    A truth file beside the diary (``io.truth_path``) adds weight recovery (``recovery.csv``)
    and trigger discovery (``discovery.csv``). The hbm fit of the training days (the rolling
    split's last origin) is written as a run folder ``out/hbm/`` (without ``config.toml``: it is
    not a fit of the whole diary) with the comparison tables, for ``hbm report``. ``out`` is
    written as a whole (``io.staged_run``); its manifest records the run id of ``out/hbm/``.
    The fits run through ``engine``, each stored as it finishes in ``.<out>.tasks`` beside
    ``out`` (a rerun after an interruption does only the missing ones; removed when ``out`` is
    written).
    """
    from hbm import __version__
    from hbm.app.task_workflows import check_engine, engine_runner, task_counts
    from hbm.evaluation.compare import compare

    given = [p for p in (config.diary, config.priors) if p is not None]
    io.check_out(out, inputs=given)
    engine = engine or EngineConfig()
    check_engine(engine)
    sampler = config.sampler()
    if not engine.in_process:  # each worker's fit on its share of the cores
        sampler = replace(sampler, cores=engine.cores_per_fit())
    store = out.parent / f".{out.name}.tasks"
    settings = {
        "command": "compare",
        "data_sha256": inputs.diary.sha256,
        "priors_sha256": inputs.priors.sha256,
        "options": options,
        "sampler": replace(sampler, progressbar=False, cores=None),
        "seed": config.seed,
        "hbm": __version__,
    }
    runner = engine_runner(store, settings, engine, progress, config.progress)
    truth_file = io.truth_path(str(config.diary))
    truth = io.read_json(truth_file) if truth_file.exists() else None
    comparison = compare(
        inputs.diary,
        inputs.priors,
        options.models,
        options.test_fraction,
        options.split,
        sampler,
        truth,
        stability=options.stability,
        seed=config.seed,
        progress=progress,
        origins=options.origins,
        runner=runner.run,
    )
    tables = _comparison_tables(comparison)
    info = {
        "command": command,
        "run_id": io.new_run_id(),
        "started": inputs.started,
        "diary": inputs.summary,
        "truth": str(truth_file) if truth else None,
        **comparison.info,
        "fits": task_counts(runner.runs[0], engine),
        "total_s": time.perf_counter() - inputs.t0,
    }
    with io.staged_run(out, "comparison", "hbm compare", inputs=given) as stage:
        for name, table in tables.items():
            io.write_csv(stage / name, table)
        io.write_json(stage / "compare.json", json_ready(info))
        fitted = comparison.fits.get("hbm")
        if fitted is not None:
            _write_compared_run(stage / "hbm", fitted, inputs, config, command, tables)
    io.remove_tree(store)
    return CompareRun(out, comparison, tuple(tables), info)
