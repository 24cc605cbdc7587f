"""The personalization study: simulated cohorts over heterogeneity x days per user, every model.

Each cell simulates a cohort (``hbm.model.simulation``) with the shipped priors' features, runs
``hbm.evaluation.compare.compare`` on the temporal split with the cohort's truth, and keeps the
held-out
metrics, the paired-bootstrap differences to ``global`` and the weight recovery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from hbm.data.priors import Priors
from hbm.evaluation.baselines import MODELS
from hbm.evaluation.compare import compare
from hbm.inference.fitting import SamplerConfig
from hbm.model.simulation import SimulationConfig, simulate


@dataclass(frozen=True)
class StudyGrid:
    """The cells and settings of a study."""

    heterogeneity: tuple[float, ...] = (0.0, 0.3, 0.6)
    days: tuple[int, ...] = (90, 365, 1000)
    n_users: int = 50
    chains: int = 4
    tune: int = 1000
    draws: int = 1000
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


def study(
    priors: Priors,
    grid: StudyGrid = FULL,
    models: Sequence[str] = MODELS,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run the grid; one row per (heterogeneity, days, model) with metrics and recovery."""
    say = progress or (lambda _msg: None)
    # each cell keeps the grid's stated warm-up and draws (no second try): the grid's cost is
    # known beforehand, and a cell's reliability is reported as it came
    sampler = SamplerConfig(
        chains=grid.chains,
        tune=grid.tune,
        draws=grid.draws,
        seed=grid.seed,
        progressbar=False,
        extend_budget_s=0.0,
    )
    frames = []
    for i, het in enumerate(grid.heterogeneity):
        for j, days in enumerate(grid.days):
            t0 = time.perf_counter()
            seed = grid.seed + 100 * i + j
            cohort = simulate(
                priors,
                SimulationConfig(n_users=grid.n_users, n_days=days, heterogeneity=het, seed=seed),
            )
            say(f"cell heterogeneity {het:g}, {days} days, {grid.n_users} users (seed {seed})")
            result = compare(
                cohort.diary,
                priors,
                models,
                sampler=sampler,
                truth=cohort.truth,
                stability=False,
                seed=seed,
                progress=lambda msg: say(f"  {msg}"),
            )
            table = result.table.copy()
            if result.recovery is not None:
                rec = result.recovery.set_index("model")[["coverage", "rmse"]]
                table = table.join(rec.add_prefix("weights_"), on="model")
            table.insert(0, "days", days)
            table.insert(0, "heterogeneity", het)
            table["n_users"] = grid.n_users
            table["cell_seed"] = seed
            table["cell_s"] = time.perf_counter() - t0
            frames.append(table)
    return pd.concat(frames, ignore_index=True)


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """The study's headline table: per cell and model, the held-out metrics and differences."""
    cols = ["heterogeneity", "days", "model", *[c for c in COLUMNS if c in results]]
    extra = [c for c in ("weights_coverage", "weights_rmse") if c in results]
    return results[cols + extra]
