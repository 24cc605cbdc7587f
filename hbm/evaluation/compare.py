"""Held-out comparison of the models of ``hbm.evaluation.baselines`` on one diary.

Splits are never random over rows (``hbm.evaluation.splits``):

* ``temporal`` (default): within each user, the first ``1 - test_fraction`` of their days train,
  the rest test. Exposures are built on the whole diary (a lag at the boundary uses the real day
  before) with centring means from the training rows only; no outcome of a test day is seen.
* ``users``: leave users out, a ``test_fraction`` share of users (chosen by ``seed``) are held
  out whole and predicted from the population (cold start).
* ``rolling``: rolling origin, ``origins`` fits per model; the fit at each origin forecasts the
  days up to the next origin, and the forecasts of every origin are pooled (each of the temporal
  split's test days once) and scored together. Each of these fits is seeded from its model and
  origin (``fit_seed``), so its draws do not depend on which other models or origins ran.

Metrics per model are those of ``hbm.evaluation.metrics.scores``, with a paired bootstrap over
users of each model's difference to ``global`` (in the table) and, in ``differences``, to
``global`` and to ``hbm``. The fits kept (``Comparison.fits``: weight recovery, trigger
discovery, stability, the run folder of ``hbm compare``) are those of the last origin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from hbm.data.diary import Diary
from hbm.data.exposures import Design
from hbm.data.priors import Priors
from hbm.defaults import ORIGINS, ROPE, TEST_FRACTION
from hbm.errors import HBMError
from hbm.evaluation.baselines import (
    MODELS,
    NO_CLUSTERING,
    default_models,
    fit_model,
    weights_of,
)
from hbm.evaluation.discovery import discovery_table
from hbm.evaluation.metrics import (
    paired_bootstrap,
    per_user_scores,
    scores,
    weight_recovery,
    weight_stability,
)
from hbm.evaluation.splits import (
    Fold,
    first_part,
    split_folds,
    temporal_designs,
    users_designs,
)
from hbm.inference.fitting import FitResult, SamplerConfig
from hbm.tasks import Runner, Task, run_serial, task_seed

__all__ = [
    "Comparison",
    "Forecast",
    "Scores",
    "Split",
    "compare",
    "first_part",
    "fit_seed",
    "forecast",
    "model_names",
    "score",
    "temporal_designs",
    "users_designs",
]

Split = Literal["temporal", "users", "rolling"]
REFERENCE = "global"
STABILITY_MODELS = ("hbm", "no-pooling")


@dataclass(frozen=True)
class Comparison:
    """Tables of one comparison, and the fitted models (``fits``) for further use."""

    table: pd.DataFrame  # one row per model
    differences: pd.DataFrame  # paired bootstrap of each model against global and against hbm
    per_user: pd.DataFrame  # model x user
    recovery: pd.DataFrame | None
    stability: pd.DataFrame | None
    #: The NUTS fits kept: hbm's at the last fold (the run folder of ``hbm compare``).
    fits: dict[str, FitResult] = field(repr=False)
    info: dict[str, Any] = field(default_factory=dict)
    #: Trigger discovery against the truth (``hbm.evaluation.discovery``), per model and kind.
    discovery: pd.DataFrame | None = None


def fit_seed(base: int, model: str, origin: int) -> int:
    """A fit's seed from its identity: CRC-32 of ``"<base>/<model>/<origin>"`` (0 to 2**32 - 1)."""
    return task_seed(base, model, origin)


@dataclass(frozen=True)
class Forecast:
    """One model's pooled test predictions over the folds (rows in fold order), what its last
    fit records (``Fitted.info``) and, for a per-user NUTS model when asked, its weights table:
    everything scoring needs, small enough to come back from another process."""

    model: str
    y: np.ndarray
    p: np.ndarray
    user_index: np.ndarray
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)
    weights: pd.DataFrame | None = None


@dataclass(frozen=True)
class FoldFit:
    """One model's fit at one fold: its forecast of the fold's test rows and, when asked, the
    fit itself (a NUTS model's ``FitResult``)."""

    forecast: Forecast
    result: FitResult | None = None


def fit_fold(
    name: str,
    fold: Fold,
    priors: Priors,
    sampler: SamplerConfig,
    seed: int,
    weights: bool = False,
    keep_result: bool = False,
) -> FoldFit:
    """Fit a model on a fold's training rows and forecast its test rows (a task of ``compare``).

    A rolling fold's fits are seeded from the model and origin (``fit_seed``). ``weights`` adds
    the per-user weights table (``weights_of``); ``keep_result`` keeps the NUTS fit.
    """
    t0 = time.perf_counter()
    if fold.origin is None:
        fitted = fit_model(name, fold.train, priors, sampler, seed)
    else:
        nuts = replace(sampler, seed=fit_seed(sampler.seed, name, fold.origin))
        fitted = fit_model(name, fold.train, priors, nuts, fit_seed(seed, name, fold.origin))
    p = np.asarray(fitted.predict(fold.test), dtype=float)
    one = Forecast(
        name,
        fold.test.y.astype(float),
        p,
        fold.test.user_index,
        time.perf_counter() - t0,
        dict(fitted.info),
        weights_of(fitted) if weights else None,
    )
    return FoldFit(one, fitted.result if keep_result else None)


def pooled(pieces: Sequence[Forecast]) -> Forecast:
    """A model's forecasts of every fold as one (rows in fold order; info and weights of the
    last fold's fit, seconds summed)."""
    last = pieces[-1]
    return Forecast(
        last.model,
        np.concatenate([f.y for f in pieces]),
        np.concatenate([f.p for f in pieces]),
        np.concatenate([f.user_index for f in pieces]),
        sum(f.seconds for f in pieces),
        last.info,
        last.weights,
    )


def forecast(
    name: str, folds: list[Fold], priors: Priors, sampler: SamplerConfig, seed: int
) -> Forecast:
    """Fit a model at every fold and pool its test predictions, with the last fit's weights."""
    last = len(folds) - 1
    return pooled(
        [
            fit_fold(name, fold, priors, sampler, seed, weights=i == last).forecast
            for i, fold in enumerate(folds)
        ]
    )


def half_weights(
    name: str, train: Design, priors: Priors, sampler: SamplerConfig, seed: int
) -> pd.DataFrame | None:
    """Per-user weights refitted on the first half of each user's training days (stability)."""
    return weights_of(fit_model(name, first_part(train, 0.5), priors, sampler, seed))


def compare_tasks(
    names: Sequence[str],
    folds: list[Fold],
    priors: Priors,
    sampler: SamplerConfig,
    seed: int,
    weights: bool,
    stability: bool,
) -> list[Task]:
    """A task per (model, fold), keyed ``<model>_fold<i>``, and with ``stability`` one per
    ``STABILITY_MODELS`` member refitted on half the training days (``<model>_half``). The last
    fold's fits return their weights (``weights``) and hbm's its fit."""
    last = len(folds) - 1
    tasks = [
        Task(
            f"{name}_fold{i}",
            fit_fold,
            (name, fold, priors, sampler, seed, weights and i == last, name == "hbm" and i == last),
        )
        for name in names
        for i, fold in enumerate(folds)
    ]
    if stability:
        tasks += [
            Task(f"{name}_half", half_weights, (name, folds[0].train, priors, sampler, seed))
            for name in STABILITY_MODELS
            if name in names
        ]
    return tasks


@dataclass(frozen=True)
class Scores:
    """What ``score`` makes of forecasts: ``Comparison``'s tables."""

    table: pd.DataFrame
    differences: pd.DataFrame
    per_user: pd.DataFrame
    recovery: pd.DataFrame | None
    discovery: pd.DataFrame | None


def score(
    forecasts: dict[str, Forecast],
    users: tuple[str, ...],
    truth: dict[str, Any] | None,
    seed: int,
) -> Scores:
    """Held-out metrics of every forecast, paired bootstrap differences (seeded by ``seed``),
    and against a simulator's truth, weight recovery and trigger discovery.

    ``forecasts`` is ordered reference first (``model_names``); ``users`` are the test
    design's user ids.
    """
    names = list(forecasts)
    per_user = {name: per_user_scores(f.y, f.p, f.user_index) for name, f in forecasts.items()}
    rows = [
        {"model": name, **scores(f.y, f.p, f.user_index), **f.info} for name, f in forecasts.items()
    ]
    differences = _differences(per_user, names, seed)
    against_reference = differences[differences["reference"] == REFERENCE].drop(columns="reference")
    table = pd.DataFrame(rows).merge(against_reference, on="model", how="left")
    table.insert(1, "reference", REFERENCE)
    recovery = discovery = None
    if truth is not None:  # one weights table per per-user model serves both
        tables = {n: f.weights for n, f in forecasts.items() if f.weights is not None}
        recovery, discovery = _recovery(tables, truth), _discovery(tables, truth)
    return Scores(table, differences, _per_user_table(per_user, users), recovery, discovery)


def model_names(models: Sequence[str] | None, priors: Priors) -> list[str]:
    """The reference first, then the models asked for (``default_models`` when none)."""
    models = default_models(priors) if models is None else models
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise HBMError(f"unknown models {unknown}; expected some of {MODELS}")
    return list(dict.fromkeys([REFERENCE, *models]))


def compare(
    diary: Diary,
    priors: Priors,
    models: Sequence[str] | None = None,
    test_fraction: float = TEST_FRACTION,
    split: Split = "temporal",
    sampler: SamplerConfig | None = None,
    truth: dict[str, Any] | None = None,
    stability: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    origins: int = ORIGINS,
    runner: Runner = run_serial,
) -> Comparison:
    """Fit every model on the training part, score it on the test part.

    Parameters
    ----------
    diary, priors
        The data and features.
    models
        Names from ``hbm.evaluation.baselines.MODELS`` (``None``: ``default_models(priors)``);
        ``global`` is added when absent (the reference).
    test_fraction
        Share of each user's days (temporal, rolling) or of users (users) held out.
    split
        ``"temporal"``, ``"users"`` or ``"rolling"`` (module doc).
    sampler
        NUTS settings of the Bayesian models.
    truth
        A simulator's truth: adds weight recovery and trigger discovery of the per-user models.
    stability
        Refit ``hbm`` and ``no-pooling`` on the first half of each user's training days and
        report the change of the per-user weights (temporal split only).
    seed
        Seed of the neural models, the user split and the bootstrap.
    progress
        Called with a line about the models compared.
    origins
        Origins of the rolling split.
    runner
        Runs the fits (``compare_tasks``): ``run_serial``, or ``hbm.app.engine`` on Dask.
    """
    say = progress or (lambda _msg: None)
    names = model_names(models, priors)
    if priors.clustering is None and NO_CLUSTERING & set(names):
        say("hbm-no-clustering: the priors have no clustering block, so it is the same as hbm")
    folds = split_folds(diary, priors, split, test_fraction, origins, seed)
    sampler = sampler or SamplerConfig()
    stable = stability and split == "temporal"
    tasks = compare_tasks(names, folds, priors, sampler, seed, truth is not None or stable, stable)
    done = runner(tasks)
    forecasts = {
        name: pooled([done[f"{name}_fold{i}"].forecast for i in range(len(folds))])
        for name in names
    }
    last = len(folds) - 1
    fits = {n: r for n in names if (r := done[f"{n}_fold{last}"].result) is not None}
    scored = score(forecasts, folds[0].test.users, truth, seed)
    table = scored.table
    table["split"] = split
    table["test_fraction"] = test_fraction
    halves = {n: done[f"{n}_half"] for n in STABILITY_MODELS if stable and n in names}
    stab = _stability(forecasts, halves) if stable else None
    info = _info(split, test_fraction, folds, len(diary.users), names, seed, sampler)
    info["timings_s"] = {n: forecasts[n].seconds for n in names}
    if priors.clustering is None and NO_CLUSTERING & set(names):
        info["hbm-no-clustering"] = "the priors have no clustering block: the same model as hbm"
    tables = (scored.differences, scored.per_user, scored.recovery)
    return Comparison(table, *tables, stab, fits, info, scored.discovery)


def _per_user_table(per_user: dict[str, pd.DataFrame], users: tuple[str, ...]) -> pd.DataFrame:
    """Every model's per-user scores in one table, users by id."""
    ids = np.asarray(users, dtype=object)
    table = pd.concat(
        [t.assign(model=name, user_id=ids[t["user"].to_numpy()]) for name, t in per_user.items()],
        ignore_index=True,
    ).drop(columns="user")
    return table[["model", "user_id", "n_test", "attacks", "auc", "sse", "nll"]]


def _info(
    split: str,
    test_fraction: float,
    folds: list[Fold],
    n_users: int,
    names: list[str],
    seed: int,
    sampler: SamplerConfig,
) -> dict[str, Any]:
    """What a comparison ran: split, sizes, models, seeds and sampler (``comparison.json``).

    ``train_rows`` are the last fit's (the rolling split's last origin); ``test_rows`` every
    row scored; ``origins`` lists the rolling split's origins with their rows and fits' seeds.
    """
    info: dict[str, Any] = {
        "split": split,
        "test_fraction": test_fraction,
        "train_rows": folds[-1].train.n_obs,
        "test_rows": sum(f.test.n_obs for f in folds),
        "users": n_users,
        "models": names,
        "seed": seed,
        "nuts_sampler": sampler.backend,
        "sampler": {
            "chains": sampler.chains,
            "tune": sampler.tune,
            "draws": sampler.draws,
            "seed": sampler.seed,
        },
    }
    if split == "rolling":
        info["origins"] = [
            {
                "origin": f.origin,
                "fraction": f.fraction,
                "train_rows": f.train.n_obs,
                "test_rows": f.test.n_obs,
                "nuts_seeds": {n: fit_seed(sampler.seed, n, int(f.origin or 0)) for n in names},
                "seeds": {n: fit_seed(seed, n, int(f.origin or 0)) for n in names},
            }
            for f in folds
        ]
    return info


def _differences(per_user: dict[str, pd.DataFrame], names: list[str], seed: int) -> pd.DataFrame:
    """Paired bootstrap of every model against the reference and against ``hbm`` (no rows, but
    the key columns, when the reference is the only model)."""
    rows = [
        {
            "model": name,
            "reference": ref,
            **paired_bootstrap(per_user[name], per_user[ref], seed=seed),
        }
        for ref in dict.fromkeys([REFERENCE, "hbm"])
        if ref in per_user
        for name in names
        if name != ref
    ]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["model", "reference"])


def _recovery(tables: dict[str, pd.DataFrame], truth: dict[str, Any]) -> pd.DataFrame | None:
    """Weight recovery of every per-user model (its weights table) against a simulator's truth."""
    rec_rows = []
    for name, weights in tables.items():
        rec = weight_recovery(weights, truth)
        rec.pop("coverage_by_feature")
        rec_rows.append({"model": name, **rec})
    return pd.DataFrame(rec_rows) if rec_rows else None


def _discovery(
    tables: dict[str, pd.DataFrame], truth: dict[str, Any], rope: float = ROPE
) -> pd.DataFrame | None:
    """Trigger discovery of every per-user model (its weights table; ``discovery_table``)."""
    frames = [discovery_table(w, truth, rope).assign(model=name) for name, w in tables.items()]
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True)
    return table[["model", *[c for c in table if c != "model"]]]


def _stability(
    forecasts: dict[str, Forecast], halves: dict[str, pd.DataFrame | None]
) -> pd.DataFrame | None:
    """Change of per-user weights when refitted on the first half of each user's training days."""
    stab_rows = []
    for name, early in halves.items():
        full = forecasts[name].weights
        if early is not None and full is not None:
            stab_rows.append({"model": name, **weight_stability(early, full)})
    return pd.DataFrame(stab_rows) if stab_rows else None
