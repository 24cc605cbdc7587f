"""The personalization study: simulated cohorts over heterogeneity x days per user, every model.

Each cell simulates a cohort (``hbm.model.simulation``) with the shipped priors' features. Every
(cell, model) pair is a task (``study_tasks``): it simulates the cell's cohort again (the same in
any process), fits the model on the temporal split's training days and returns its held-out
forecast (``hbm.evaluation.compare.forecast``). The tasks run through a runner (one after
another here; on Dask with a resumable store in ``hbm.app.engine``), and each cell is then scored
as ``compare`` scores a comparison: held-out metrics, paired-bootstrap differences to ``global``
and weight recovery against the cohort's truth. Every seed comes from the grid and the cell, none
from the order or the process, so the table is the same wherever the tasks ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from hbm.data.priors import Priors
from hbm.defaults import TEST_FRACTION
from hbm.evaluation.baselines import MODELS
from hbm.evaluation.compare import Forecast, forecast, model_names, score
from hbm.evaluation.splits import Fold, split_folds
from hbm.inference.fitting import SamplerConfig
from hbm.model.simulation import Cohort, SimulationConfig, simulate
from hbm.tasks import Runner, Task, run_serial


@dataclass(frozen=True)
class StudyGrid:
    """The cells and settings of a study; the sampler's by default are ``hbm fit``'s (``tune``
    ``None``: the backend's default warm-up)."""

    heterogeneity: tuple[float, ...] = (0.0, 0.3, 0.6)
    days: tuple[int, ...] = (90, 365, 1000)
    n_users: int = 50
    chains: int = SamplerConfig.chains
    tune: int | None = None
    draws: int = SamplerConfig.draws
    seed: int = 1


FULL = StudyGrid()
#: Small enough for CI on 2 cores (a few minutes), large enough to exercise every model.
QUICK = StudyGrid(
    heterogeneity=(0.0, 0.6), days=(60, 120), n_users=12, tune=250, draws=250, chains=2
)

COLUMNS = [
    "within_auc_median",
    "pooled_auc",
    "brier",
    "ece",
    "d_within_auc",
    "d_within_auc_lb",
    "d_within_auc_ub",
    "d_brier",
    "d_brier_lb",
    "d_brier_ub",
]


@dataclass(frozen=True)
class Cell:
    """One cohort of the grid: its heterogeneity, days per user and simulation seed."""

    heterogeneity: float
    days: int
    seed: int

    @property
    def key(self) -> str:
        """The cell's part of a task key."""
        return f"h{self.heterogeneity:g}_d{self.days}"


def cells(grid: StudyGrid) -> list[Cell]:
    """The grid's cells, heterogeneity-major; cell (i, j) simulates with ``seed + 100 i + j``."""
    return [
        Cell(het, days, grid.seed + 100 * i + j)
        for i, het in enumerate(grid.heterogeneity)
        for j, days in enumerate(grid.days)
    ]


def grid_sampler(grid: StudyGrid, cores: int | None = None) -> SamplerConfig:
    """Every NUTS fit's settings; ``cores`` per fit (``None``: every core the process may use)."""
    # each cell keeps the grid's stated warm-up and draws (no second try): the grid's cost is
    # known beforehand, and a cell's reliability is reported as it came
    return SamplerConfig(
        chains=grid.chains,
        tune=grid.tune,
        draws=grid.draws,
        seed=grid.seed,
        progressbar=False,
        extend_budget_s=0.0,
        cores=cores,
    )


def cell_cohort(priors: Priors, grid: StudyGrid, cell: Cell) -> tuple[Cohort, list[Fold]]:
    """A cell's simulated cohort and its temporal split (the same in every process)."""
    config = SimulationConfig(
        n_users=grid.n_users, n_days=cell.days, heterogeneity=cell.heterogeneity, seed=cell.seed
    )
    cohort = simulate(priors, config)
    return cohort, split_folds(cohort.diary, priors, "temporal", TEST_FRACTION, seed=cell.seed)


def fit_cell_model(
    priors: Priors, grid: StudyGrid, cell: Cell, model: str, cores: int | None = None
) -> Forecast:
    """One task of the study: a model's held-out forecast (and weights) on a cell's cohort."""
    _, folds = cell_cohort(priors, grid, cell)
    sampler = grid_sampler(grid, cores)
    return forecast(model, folds, priors, sampler, cell.seed)


def study_tasks(
    priors: Priors, grid: StudyGrid, models: Sequence[str], cores: int | None = None
) -> list[Task]:
    """A task per (cell, model), keyed ``h<heterogeneity>_d<days>_<model>``."""
    return [
        Task(f"{cell.key}_{model}", fit_cell_model, (priors, grid, cell, model, cores))
        for cell in cells(grid)
        for model in model_names(models, priors)
    ]


def study(
    priors: Priors,
    grid: StudyGrid = FULL,
    models: Sequence[str] = MODELS,
    runner: Runner = run_serial,
    cores: int | None = None,
) -> StudyResult:
    """Run the grid through ``runner``; one row per (heterogeneity, days, model).

    Parameters
    ----------
    priors, grid, models
        The features, the cells and the models (``global`` is added as the reference).
    runner
        Runs the tasks of ``study_tasks`` (``run_serial``; ``hbm.app.engine`` on Dask).
    cores
        Cores of each NUTS fit (``None``: every core the process may use).

    Returns
    -------
    StudyResult
        ``results``: metrics, differences to ``global`` and weight recovery; ``timings``: the
        seconds of each task, apart, so the results are the same wherever the tasks ran.
    """
    tasks = study_tasks(priors, grid, models, cores)
    done = runner(tasks)
    names = model_names(models, priors)
    frames, timings = [], []
    for cell in cells(grid):
        cohort, folds = cell_cohort(priors, grid, cell)
        forecasts = {name: done[f"{cell.key}_{name}"] for name in names}
        scored = score(forecasts, folds[0].test.users, cohort.truth, cell.seed)
        table = scored.table.copy()
        if scored.recovery is not None:
            rec = scored.recovery.set_index("model")[["coverage", "rmse"]]
            table = table.join(rec.add_prefix("weights_"), on="model")
        table.insert(0, "days", cell.days)
        table.insert(0, "heterogeneity", cell.heterogeneity)
        table["n_users"] = grid.n_users
        table["cell_seed"] = cell.seed
        table["split"] = "temporal"
        table["test_fraction"] = TEST_FRACTION
        frames.append(table)
        cell_id = {"heterogeneity": cell.heterogeneity, "days": cell.days}
        timings += [{**cell_id, "model": n, "seconds": f.seconds} for n, f in forecasts.items()]
    return StudyResult(pd.concat(frames, ignore_index=True), pd.DataFrame(timings))


@dataclass(frozen=True)
class StudyResult:
    """The study's table and each task's seconds."""

    results: pd.DataFrame
    timings: pd.DataFrame


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """The study's headline table: per cell and model, the held-out metrics and differences."""
    cols = ["heterogeneity", "days", "model", *[c for c in COLUMNS if c in results]]
    extra = [c for c in ("weights_coverage", "weights_rmse") if c in results]
    return results[cols + extra]
