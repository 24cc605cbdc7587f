"""Held-out comparison of the models of ``hbm.evaluation.baselines`` on one diary.

Splits are never random over rows:

* ``temporal`` (default): within each user, the first ``1 - test_fraction`` of their days train,
  the rest test. Exposures are built on the whole diary (a lag at the boundary uses the real day
  before) with centring means from the training rows only; no outcome of a test day is seen.
* ``users``: leave users out, a ``test_fraction`` share of users (chosen by ``seed``) are held
  out whole and predicted from the population (cold start).

Metrics per model are those of ``hbm.evaluation.metrics.scores``, with a paired bootstrap over
users of
each model's difference to ``global`` (in the table) and, in ``differences``, to ``global`` and to
``hbm``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from hbm.data.diary import Diary, leading_days, split_by_time, subset_users, train_mask
from hbm.data.exposures import Design, day_rank, exposures, select_rows
from hbm.data.priors import Priors
from hbm.defaults import TEST_FRACTION
from hbm.errors import HBMError
from hbm.evaluation.baselines import MODELS, Fitted, fit_model, weights_of
from hbm.evaluation.metrics import (
    paired_bootstrap,
    per_user_scores,
    scores,
    weight_recovery,
    weight_stability,
)
from hbm.inference.fitting import SamplerConfig

Split = Literal["temporal", "users"]
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
    fits: dict[str, Fitted] = field(repr=False)
    info: dict[str, Any] = field(default_factory=dict)


def temporal_designs(
    diary: Diary, priors: Priors, test_fraction: float = TEST_FRACTION
) -> tuple[Design, Design]:
    """Train and test designs of the temporal split (module doc)."""
    is_train = train_mask(diary, test_fraction)
    exposure_means = exposures(split_by_time(diary, test_fraction)[0], priors).exposure_means
    full = exposures(diary, priors, exposure_means=exposure_means)  # rows in diary.data order
    return select_rows(full, full.rows_of(is_train)), select_rows(full, full.rows_of(~is_train))


def first_part(design: Design, fraction: float) -> Design:
    """The first ``fraction`` of each user's days of a design (for weight stability)."""
    rank, size = day_rank(design)
    return select_rows(design, leading_days(rank, size, fraction, at_least=1))


def users_designs(
    diary: Diary, priors: Priors, test_fraction: float = TEST_FRACTION, seed: int = 0
) -> tuple[Design, Design]:
    """Train and test designs of the leave-users-out split (module doc)."""
    users = list(diary.users)
    n_test = max(1, round(len(users) * test_fraction))
    if n_test >= len(users):
        raise HBMError(f"cannot hold out {n_test} of {len(users)} users")
    held = set(np.random.default_rng(seed).choice(users, size=n_test, replace=False).tolist())
    train = exposures(subset_users(diary, [u for u in users if u not in held]), priors)
    test = exposures(
        subset_users(diary, [u for u in users if u in held]),
        priors,
        exposure_means=train.exposure_means,
    )
    return train, test


def compare(
    diary: Diary,
    priors: Priors,
    models: Sequence[str] = MODELS,
    test_fraction: float = TEST_FRACTION,
    split: Split = "temporal",
    sampler: SamplerConfig | None = None,
    truth: dict[str, Any] | None = None,
    stability: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Fit every model on the training part, score it on the test part.

    Parameters
    ----------
    diary, priors
        The data and features.
    models
        Names from ``hbm.evaluation.baselines.MODELS``; ``global`` is added when absent (the
        reference).
    test_fraction
        Share of each user's days (temporal) or of users (users) held out.
    split
        ``"temporal"`` or ``"users"`` (module doc).
    sampler
        NUTS settings of the Bayesian models.
    truth
        A simulator's truth: adds weight recovery of the per-user models.
    stability
        Refit ``hbm`` and ``no-pooling`` on the first half of each user's training days and
        report the change of the per-user weights (temporal split only).
    seed
        Seed of the neural models, the user split and the bootstrap.
    progress
        Called with a line per step.
    """
    say = progress or (lambda _msg: None)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise HBMError(f"unknown models {unknown}; expected some of {MODELS}")
    names = list(dict.fromkeys([REFERENCE, *models]))
    if split == "temporal":
        train, test = temporal_designs(diary, priors, test_fraction)
    elif split == "users":
        train, test = users_designs(diary, priors, test_fraction, seed)
    else:
        raise HBMError(f"split '{split}' is unknown; expected 'temporal' or 'users'")
    sampler = sampler or SamplerConfig()
    fits: dict[str, Fitted] = {}
    per_user: dict[str, pd.DataFrame] = {}
    rows, timings = [], {}
    for name in names:
        say(f"fit {name} on {train.n_obs} training rows")
        t0 = time.perf_counter()
        fitted = fit_model(name, train, priors, sampler, seed)
        p = fitted.predict(test)
        timings[name] = time.perf_counter() - t0
        fits[name] = fitted
        per_user[name] = per_user_scores(test.y.astype(float), p, test.user_index)
        rows.append(
            {"model": name, **scores(test.y.astype(float), p, test.user_index), **fitted.info}
        )
    differences = _differences(per_user, names, seed)
    against_reference = differences[differences["reference"] == REFERENCE].drop(columns="reference")
    table = pd.DataFrame(rows).merge(against_reference, on="model", how="left")
    table.insert(1, "reference", REFERENCE)
    table["split"] = split
    table["test_fraction"] = test_fraction
    table["fit_predict_s"] = [timings[n] for n in names]
    per_user_table = _per_user_table(per_user, test)
    recovery = _recovery(fits, truth) if truth is not None else None
    stab = None
    if stability and split == "temporal":
        stab = _stability(fits, train, priors, sampler, seed, say)
    info = _info(split, test_fraction, train, test, len(diary.users), names, seed, sampler)
    info["timings_s"] = timings
    return Comparison(table, differences, per_user_table, recovery, stab, fits, info)


def _per_user_table(per_user: dict[str, pd.DataFrame], test: Design) -> pd.DataFrame:
    """Every model's per-user scores in one table, users by id."""
    users = np.asarray(test.users, dtype=object)
    table = pd.concat(
        [t.assign(model=name, user_id=users[t["user"].to_numpy()]) for name, t in per_user.items()],
        ignore_index=True,
    ).drop(columns="user")
    return table[["model", "user_id", "n_test", "attacks", "auc", "sse", "nll"]]


def _info(
    split: str,
    test_fraction: float,
    train: Design,
    test: Design,
    n_users: int,
    names: list[str],
    seed: int,
    sampler: SamplerConfig,
) -> dict[str, Any]:
    """What a comparison ran: split, sizes, models, seeds and sampler (``comparison.json``)."""
    return {
        "split": split,
        "test_fraction": test_fraction,
        "train_rows": train.n_obs,
        "test_rows": test.n_obs,
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


def _differences(per_user: dict[str, pd.DataFrame], names: list[str], seed: int) -> pd.DataFrame:
    """Paired bootstrap of every model against the reference and against ``hbm``."""
    return pd.DataFrame(
        [
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
    )


def _recovery(fits: dict[str, Fitted], truth: dict[str, Any]) -> pd.DataFrame | None:
    """Weight recovery of every per-user model against a simulator's truth."""
    rec_rows = []
    for name, fitted in fits.items():
        weights = weights_of(fitted)
        if weights is not None:
            rec = weight_recovery(weights, truth)
            rec.pop("coverage_by_feature")
            rec_rows.append({"model": name, **rec})
    return pd.DataFrame(rec_rows) if rec_rows else None


def _stability(
    fits: dict[str, Fitted],
    train: Design,
    priors: Priors,
    sampler: SamplerConfig,
    seed: int,
    say: Callable[[str], None],
) -> pd.DataFrame | None:
    """Change of per-user weights when refitted on the first half of each user's training days."""
    stab_rows = []
    half = first_part(train, 0.5)
    for name in [m for m in STABILITY_MODELS if m in fits]:
        say(f"fit {name} on the first half of the training days (stability)")
        early = weights_of(fit_model(name, half, priors, sampler, seed))
        full = weights_of(fits[name])
        if early is not None and full is not None:
            stab_rows.append({"model": name, **weight_stability(early, full)})
    return pd.DataFrame(stab_rows) if stab_rows else None
