"""Exposures: raw diary values -> dose-response exposures in [0, 1] -> centred design matrix.

For feature k with diary column c, lag L and transform T, the value used on day t is

* ``level``:  ``v = x_c(t - L)``
* ``change``: ``v = x_c(t - L) - x_c(t - L - 1)``

where ``x_c(d)`` is the user's own raw value on calendar day ``d`` (never another user's row, never
the previous *row* when days are missing). The exposure is ``e = (RR(v) - min RR) / (max RR - min
RR)`` with ``RR`` the impact pattern interpolated piecewise-linearly over ``levels`` and held flat
outside them, so 0 is the pattern's lowest-risk level and 1 its highest. A weight is therefore the
log-odds ratio between a day at the highest-risk level and one at the lowest.

When a lag or change reaches a day the user did not log (a gap, or before their first day), the
exposure is unknown; it is set to the feature's centring mean (centred value 0, "no information")
and counted in ``Design.lag_filled``. Exposures are centred by their training means, which are
stored in ``ExposureMeans`` and reused for prediction.

The clustering feature (``Feature.role == "clustering"``) is the previous calendar day's attack
state: 1 if that day was an onset (``migraine``) or a continuing attack (``migraine_continues``),
0 if it was logged without either, unknown (centred 0, neither attack nor no attack) if it was not
logged. It reads only earlier days, never the day's own outcome. Days marked
``migraine_continues`` are inside an attack that began earlier: no onset can begin on them, so
they are not rows of the design (``Design.continuing_days`` counts them); they still give the
next day its state.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from hbm.data.diary import CONTINUES_COLUMN, Diary
from hbm.data.priors import OUTCOME_COLUMN, Feature, Priors


@dataclass(frozen=True)
class ExposureMeans:
    """Training means of each feature's exposure, reused at prediction."""

    features: tuple[str, ...]
    means: tuple[float, ...]

    def as_array(self, features: tuple[str, ...]) -> np.ndarray:
        lookup = dict(zip(self.features, self.means, strict=True))
        return np.array([lookup[f] for f in features], dtype=float)


@dataclass(frozen=True)
class Design:
    """Model inputs with named axes: ``x[obs, feature]``, ``user_index[obs]``, ``y[obs]``."""

    x: np.ndarray  # centred exposures (obs, feature)
    exposure: np.ndarray  # uncentred exposures in [0, 1] (obs, feature)
    y: np.ndarray  # migraine onset 0/1 (obs,)
    user_index: np.ndarray  # position in ``users`` (obs,)
    users: tuple[str, ...]
    features: tuple[str, ...]
    dates: np.ndarray  # datetime64[ns] (obs,)
    exposure_means: ExposureMeans
    lag_filled: Mapping[str, int]
    #: Days inside a continuing attack, left out of the rows (not at risk of an onset).
    continuing_days: int = 0
    #: Each row's position in the diary it was built from (``diary.data``); ``None``: row i is
    #: the diary's row i.
    diary_rows: np.ndarray | None = None
    #: Per user, the last day of the diary (ISO date) and its attack state (1 onset or
    #: continuing attack, else 0): a fit records it so that a forecast of the next day, from a
    #: diary of new days only, knows the state of the day before (``hbm.results.prediction``).
    last_days: Mapping[str, tuple[str, int]] = field(default_factory=dict)

    def rows_of(self, mask: np.ndarray) -> np.ndarray:
        """A mask over the diary's rows, taken at this design's rows."""
        mask = np.asarray(mask)
        return mask if self.diary_rows is None else mask[self.diary_rows]

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])


def impact(feature: Feature, values: np.ndarray) -> np.ndarray:
    """Map transformed raw values to exposures in [0, 1] through the feature's impact pattern."""
    pattern = np.asarray(feature.pattern, dtype=float)
    rr = np.interp(values, np.asarray(feature.levels, dtype=float), pattern)
    out: np.ndarray = (rr - pattern.min()) / (pattern.max() - pattern.min())
    return out


def _shifted(data: pd.DataFrame, column: str, days: int) -> np.ndarray:
    """The user's own value of ``column`` ``days`` calendar days earlier (NaN when not logged)."""
    if days == 0:
        return data[column].to_numpy(dtype=float)
    lookup = data.set_index(["user_id", "date"])[column]
    wanted = pd.MultiIndex.from_arrays(
        [data["user_id"], data["date"] - pd.Timedelta(days=days)], names=["user_id", "date"]
    )
    return lookup.reindex(wanted).to_numpy(dtype=float)


def attack_state(data: pd.DataFrame) -> pd.Series:
    """1 on a day with an onset or a continuing attack, else 0 (the clustering feature's source)."""
    state = data[OUTCOME_COLUMN].astype(float)
    if CONTINUES_COLUMN in data:
        state = state.where(data[CONTINUES_COLUMN] == 0, 1.0)
    return state


def at_risk(data: pd.DataFrame) -> np.ndarray:
    """True for the days on which an onset can begin (not inside a continuing attack)."""
    if CONTINUES_COLUMN not in data:
        return np.ones(len(data), dtype=bool)
    return np.asarray(data[CONTINUES_COLUMN].to_numpy() == 0)


def transformed_values(diary: Diary, feature: Feature) -> np.ndarray:
    """Lagged (and differenced, for ``change``) raw values; NaN where a needed day is missing."""
    if feature.role == "clustering":
        frame = diary.data[["user_id", "date"]].assign(_state=attack_state(diary.data))
        return _shifted(frame, "_state", feature.lag_days)
    v = _shifted(diary.data, feature.column, feature.lag_days)
    if feature.transform == "change":
        v = v - _shifted(diary.data, feature.column, feature.lag_days + 1)
    return v


def exposures(diary: Diary, priors: Priors, exposure_means: ExposureMeans | None = None) -> Design:
    """Build the design matrix of a diary.

    Parameters
    ----------
    diary
        A validated diary.
    priors
        The features, in model order.
    exposure_means
        Stored training means; ``None`` computes them from this diary (training).

    Returns
    -------
    Design
        Centred exposures with user index, outcome and the centring used.
    """
    data = diary.data
    keys = priors.keys
    raw_exposure = (
        np.column_stack([impact(f, transformed_values(diary, f)) for f in priors.features])
        if len(data)
        else np.zeros((0, len(keys)))
    )
    unknown = np.isnan(raw_exposure)
    if exposure_means is None:
        with warnings.catch_warnings():
            # an all-unknown column warns "Mean of empty slice" (a warning, not a floating-point
            # error, so np.errstate does not silence it); its NaN mean is replaced just below
            warnings.simplefilter("ignore", RuntimeWarning)
            col_means = np.nanmean(np.where(unknown, np.nan, raw_exposure), axis=0)
        # A feature never observed (all lags unknown) is centred at 0.5, the middle of its scale.
        col_means = np.where(np.isnan(col_means), 0.5, col_means)
        exposure_means = ExposureMeans(features=keys, means=tuple(float(m) for m in col_means))
    means = exposure_means.as_array(keys)
    filled = np.where(unknown, means[None, :], raw_exposure)
    users = tuple(pd.unique(data["user_id"]))
    codes = pd.Categorical(data["user_id"], categories=list(users)).codes
    risk = at_risk(data)
    last = data.assign(_state=attack_state(data)).groupby("user_id", sort=False).tail(1)
    design = Design(
        x=filled - means[None, :],
        exposure=filled,
        y=data["migraine"].to_numpy(dtype=np.int8),
        user_index=np.asarray(codes, dtype=np.int64),
        users=users,
        features=keys,
        dates=data["date"].to_numpy(),
        exposure_means=exposure_means,
        lag_filled={k: int(n) for k, n in zip(keys, unknown[risk].sum(axis=0), strict=True)},
        continuing_days=int((~risk).sum()),
        last_days={
            str(u): (d.strftime("%Y-%m-%d"), int(s))
            for u, d, s in zip(last["user_id"], last["date"], last["_state"], strict=True)
        },
    )
    if risk.all():
        return design
    return replace(select_rows(design, risk), diary_rows=np.flatnonzero(risk))


def select_rows(design: Design, keep: np.ndarray) -> Design:
    """The rows of a design where ``keep`` is true (users, features and centring unchanged)."""
    keep = np.asarray(keep, dtype=bool)
    return replace(
        design,
        diary_rows=(np.flatnonzero(keep) if design.diary_rows is None else design.diary_rows[keep]),
        x=design.x[keep],
        exposure=design.exposure[keep],
        y=design.y[keep],
        user_index=design.user_index[keep],
        dates=design.dates[keep],
    )


def select_users(design: Design, users: np.ndarray) -> Design:
    """The rows of the users at positions ``users`` (in ``design.users`` order), re-indexed."""
    chosen = np.unique(np.asarray(users, dtype=np.int64))
    position = np.full(len(design.users), -1, dtype=np.int64)
    position[chosen] = np.arange(len(chosen))
    kept = select_rows(design, position[design.user_index] >= 0)
    return replace(
        kept,
        user_index=position[kept.user_index],
        users=tuple(design.users[i] for i in chosen),
    )


def day_rank(design: Design) -> tuple[np.ndarray, np.ndarray]:
    """Each row's position (0-based, by date) among its user's rows, and that user's row count."""
    frame = pd.DataFrame({"u": design.user_index, "d": design.dates})
    rank = frame.groupby("u")["d"].rank(method="first").to_numpy() - 1
    size = frame.groupby("u")["d"].transform("size").to_numpy()
    return rank, size


def exposure_prevalence(design: Design) -> dict[str, float]:
    """Share of days on which each feature's exposure is at least 0.5 (nearer its high-risk end)."""
    share = (
        (design.exposure >= 0.5).mean(axis=0) if design.n_obs else np.zeros(len(design.features))
    )
    return {k: float(v) for k, v in zip(design.features, share, strict=True)}
