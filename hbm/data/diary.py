"""Load and validate headache diaries (CSV or Parquet): one row per user per day.

Format (data/README.md): ``user_id``, ``date`` (ISO ``YYYY-MM-DD``), ``migraine`` (0/1) and one
column per diary column named in the priors file, in raw units. Every violation raises a
``DiaryError`` that names the file, the first offending rows, the column and the expectation.

Policies, stated once here and reported in ``DiaryReport``:

* Missing feature values: ``missing="error"`` (default) refuses the diary; ``"impute"`` fills a
  value with that user's median of the column (the cohort median when the user has none) and
  counts each fill; ``"drop"`` removes the row and counts it. Nothing is dropped silently.
* Missing days (gaps in a user's dates) are allowed and counted; lags that reach into a gap are
  handled in ``hbm.data.exposures`` (the lagged exposure is set to its centring mean and counted).
* Users with fewer than ``min_days`` logged days are kept (partial pooling is meant for them) and
  listed in the report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from hbm.data.files import DIARY_SUFFIXES, read_table
from hbm.data.priors import Priors
from hbm.data.rows import check_user_ids, diary_warnings
from hbm.data.rows import places as _rows
from hbm.defaults import MIN_DAYS, TEST_FRACTION
from hbm.errors import DiaryError

__all__ = [
    "CONTINUES_COLUMN",
    "DIARY_SUFFIXES",
    "ID_COLUMNS",
    "MISSING_POLICIES",
    "Diary",
    "DiaryReport",
    "MissingPolicy",
    "load_diary",
    "read_table",
    "split_by_time",
    "subset_users",
    "train_mask",
    "validate_frame",
]

ID_COLUMNS = ("user_id", "date", "migraine")
#: Optional 0/1 column: 1 on a day inside an attack that began on an earlier day (not a new
#: onset; ``migraine`` is 0 there). Such days are not at risk of an onset (``hbm.data.exposures``).
CONTINUES_COLUMN = "migraine_continues"
MissingPolicy = Literal["error", "impute", "drop"]
MISSING_POLICIES: tuple[str, ...] = ("error", "impute", "drop")


@dataclass(frozen=True)
class DiaryReport:
    """What loading found and did: counts, never silent changes."""

    n_rows: int
    n_users: int
    days_per_user: Mapping[str, int]
    missing_days_per_user: Mapping[str, int]
    missing_values: Mapping[str, int]
    missing_policy: str
    imputed_values: Mapping[str, int]
    dropped_rows: int
    short_users: tuple[str, ...]
    min_days: int
    extra_columns: tuple[str, ...] = field(default_factory=tuple)
    #: What the diary allows but a fit may not make good use of (``diary_warnings``).
    warnings: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Diary:
    """A validated diary, sorted by user then date.

    ``data`` has ``user_id`` (str), ``date`` (datetime64), ``migraine`` (int8) and one float column
    per diary column of the priors file.
    """

    data: pd.DataFrame
    columns: tuple[str, ...]
    source: str
    report: DiaryReport

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(pd.unique(self.data["user_id"]))

    @property
    def sha256(self) -> str:
        """Hash of the validated content (not of the file's bytes), stable across CSV/Parquet."""
        outcome = ["migraine", *([CONTINUES_COLUMN] if CONTINUES_COLUMN in self.data else [])]
        canon = self.data[["user_id", "date", *outcome, *self.columns]].copy()
        canon["date"] = canon["date"].dt.strftime("%Y-%m-%d")
        return hashlib.sha256(canon.to_csv(index=False).encode()).hexdigest()


def validate_frame(
    frame: pd.DataFrame,
    priors: Priors,
    *,
    source: str = "<frame>",
    kind: str = "frame",
    column_map: Mapping[str, str] | None = None,
    missing: MissingPolicy = "error",
    min_days: int = MIN_DAYS,
) -> Diary:
    """Validate a raw diary table (see ``load_diary``); ``kind`` sets the row numbering."""
    if missing not in MISSING_POLICIES:
        raise DiaryError(
            f"missing policy '{missing}' is unknown; expected one of {MISSING_POLICIES}"
        )
    # A CSV's index is its line numbering (``hbm.data.files.read_table``); any other is reset.
    frame = frame if kind == "csv" else frame.reset_index(drop=True)
    frame, extra = _columns(frame, priors, source, column_map)
    data = _id_columns(frame, source, kind)
    missing_values: dict[str, int] = {}
    for col in priors.columns:
        data[col] = _exposure_column(frame, col, priors, source, kind, missing)
        missing_values[col] = int(data[col].isna().sum())
    data, imputed, dropped = _apply_missing(data, priors.columns, missing, source)
    warnings = diary_warnings(data, kind)
    data = data.sort_values(["user_id", "date"], kind="stable").reset_index(drop=True)
    return _diary(
        data,
        priors.columns,
        source,
        missing_values=missing_values,
        missing_policy=missing,
        imputed_values=imputed,
        dropped_rows=dropped,
        min_days=min_days,
        extra_columns=extra,
        warnings=warnings,
    )


def _columns(
    frame: pd.DataFrame, priors: Priors, source: str, column_map: Mapping[str, str] | None
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The frame with mapped names, checked for required and duplicated columns; extra columns."""
    if column_map:
        absent = [c for c in column_map if c not in frame.columns]
        if absent:
            raise DiaryError(
                f"{source}: column map names {absent}, which the file does not have; "
                f"file columns: {list(frame.columns)}"
            )
        frame = frame.rename(columns=dict(column_map))
    required = [*ID_COLUMNS, *priors.columns]
    lacking = [c for c in required if c not in frame.columns]
    if lacking:
        raise DiaryError(
            f"{source}: missing column(s) {lacking}; a diary needs {list(ID_COLUMNS)} and one "
            f"column per diary column of the priors file {priors.path} "
            f"(use a column map to rename); file columns: {list(frame.columns)}"
        )
    dupe_names = frame.columns[frame.columns.duplicated()].tolist()
    if dupe_names:
        raise DiaryError(f"{source}: column(s) {dupe_names} appear more than once")
    extra = tuple(c for c in frame.columns if c not in (*required, CONTINUES_COLUMN))
    if len(frame) == 0:
        raise DiaryError(f"{source}: the diary has no rows")
    return frame, extra


def _id_columns(frame: pd.DataFrame, source: str, kind: str) -> pd.DataFrame:
    """``user_id``, ``date`` and ``migraine``, checked row by row and for one row per user-day."""
    user = frame["user_id"]
    bad = user.isna() | (user.astype(str).str.strip() == "")
    if bad.any():
        raise DiaryError(
            f"{source}: column 'user_id' is empty at {_rows(kind, frame.index[bad])}; "
            "expected a non-empty id on every row"
        )
    user = user.astype(str).str.strip()
    check_user_ids(user, source, kind)

    raw_date = frame["date"]
    if pd.api.types.is_datetime64_any_dtype(raw_date):
        date = pd.to_datetime(raw_date).dt.normalize()
        bad = date.isna()
    else:
        text = raw_date.astype("string").str.strip()
        date = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
        bad = date.isna()
    if bad.any():
        examples = ", ".join(repr(v) for v in raw_date[bad].head(3))
        raise DiaryError(
            f"{source}: column 'date' cannot be parsed at {_rows(kind, frame.index[bad])} "
            f"(values {examples}); expected ISO dates YYYY-MM-DD"
        )

    outcome = pd.to_numeric(frame["migraine"], errors="coerce")
    bad = ~outcome.isin([0, 1])
    if bad.any():
        examples = ", ".join(repr(v) for v in frame["migraine"][bad].head(3))
        raise DiaryError(
            f"{source}: column 'migraine' has values other than 0/1 at "
            f"{_rows(kind, frame.index[bad])} (values {examples}); expected 0 or 1 on every row"
        )

    key = pd.DataFrame({"user_id": user, "date": date})
    dup = key.duplicated(keep=False)
    if dup.any():
        first = key[dup].iloc[0]
        raise DiaryError(
            f"{source}: duplicated (user_id, date) at {_rows(kind, frame.index[dup])} "
            f"(e.g. user '{first['user_id']}' on {first['date']:%Y-%m-%d}); expected one row "
            "per user per day"
        )
    out = pd.DataFrame({"user_id": user, "date": date, "migraine": outcome.astype(np.int8)})
    if CONTINUES_COLUMN in frame:
        out[CONTINUES_COLUMN] = _continues(frame, outcome, source, kind)
    return out


def _continues(frame: pd.DataFrame, outcome: pd.Series, source: str, kind: str) -> pd.Series:
    """The optional ``migraine_continues`` column: 0/1, and never 1 on an onset day."""
    raw = frame[CONTINUES_COLUMN]
    values = pd.to_numeric(raw, errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.any():
        examples = ", ".join(repr(v) for v in raw[bad].head(3))
        raise DiaryError(
            f"{source}: column '{CONTINUES_COLUMN}' has values other than 0/1 at "
            f"{_rows(kind, frame.index[bad])} (values {examples}); expected 1 on a day inside an "
            "attack that began earlier, else 0"
        )
    both = (values == 1) & (outcome == 1)
    if both.any():
        raise DiaryError(
            f"{source}: 'migraine' and '{CONTINUES_COLUMN}' are both 1 at "
            f"{_rows(kind, frame.index[both])}; a day is either an onset (migraine 1) or inside "
            "an attack that began earlier (migraine_continues 1), not both"
        )
    return values.astype(np.int8)


def _exposure_column(
    frame: pd.DataFrame, col: str, priors: Priors, source: str, kind: str, missing: str
) -> pd.Series:
    """One raw exposure column as floats: numbers within the declared range, or NaN if allowed."""
    raw = frame[col]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    not_number = values.isna() & raw.notna()
    if not_number.any():
        examples = ", ".join(repr(v) for v in raw[not_number].head(3))
        raise DiaryError(
            f"{source}: column '{col}' is not numeric at {_rows(kind, frame.index[not_number])}"
            f" (values {examples}); expected a number in raw units"
        )
    lo, hi = priors.column_range(col)
    out = (values < lo) | (values > hi)
    if out.any():
        examples = ", ".join(f"{v:g}" for v in values[out].head(3))
        raise DiaryError(
            f"{source}: column '{col}' is outside its declared range [{lo:g}, {hi:g}] at "
            f"{_rows(kind, frame.index[out])} (values {examples})"
        )
    nan = values.isna()
    if nan.any() and missing == "error":
        raise DiaryError(
            f"{source}: column '{col}' has {int(nan.sum())} missing value(s) (NaN or empty) at "
            f"{_rows(kind, frame.index[nan])}; expected a number, or pass missing='impute' "
            "(user median) or missing='drop' (--missing on the command line)"
        )
    return values


def _apply_missing(
    data: pd.DataFrame, columns: tuple[str, ...], missing: str, source: str
) -> tuple[pd.DataFrame, dict[str, int], int]:
    """Drop or impute (user median, then column median) rows with missing exposures."""
    imputed: dict[str, int] = {}
    dropped = 0
    if missing == "drop":
        has_nan = data[list(columns)].isna().any(axis=1)
        dropped = int(has_nan.sum())
        data = data[~has_nan]
    elif missing == "impute":
        for col in columns:
            nan = data[col].isna()
            if nan.all():
                raise DiaryError(
                    f"{source}: column '{col}' has no values at all; missing='impute' needs at "
                    "least one number to take a median of"
                )
            if nan.any():
                user_median = data.groupby("user_id")[col].transform("median")
                fill = user_median.fillna(data[col].median())
                data[col] = data[col].fillna(fill)
                imputed[col] = int(nan.sum())
    if len(data) == 0:
        raise DiaryError(f"{source}: no rows left after dropping rows with missing values")
    return data, imputed, dropped


def _diary(
    data: pd.DataFrame,
    columns: tuple[str, ...],
    source: str,
    *,
    missing_values: Mapping[str, int],
    missing_policy: str,
    imputed_values: Mapping[str, int],
    dropped_rows: int,
    min_days: int,
    extra_columns: tuple[str, ...],
    warnings: tuple[str, ...] = (),
) -> Diary:
    """Wrap sorted rows in a ``Diary`` with day counts, gaps and short users computed from them."""
    grouped = data.groupby("user_id", sort=False)["date"]
    days = grouped.size()
    gaps = (grouped.max() - grouped.min()).dt.days + 1 - days
    report = DiaryReport(
        n_rows=len(data),
        n_users=len(days),
        days_per_user={str(k): int(v) for k, v in days.items()},
        missing_days_per_user={str(k): int(v) for k, v in gaps.items()},
        missing_values=dict(missing_values),
        missing_policy=missing_policy,
        imputed_values=dict(imputed_values),
        dropped_rows=dropped_rows,
        short_users=tuple(str(u) for u, n in days.items() if n < min_days),
        min_days=min_days,
        extra_columns=extra_columns,
        warnings=warnings,
    )
    return Diary(data=data, columns=columns, source=source, report=report)


def load_diary(
    path: str | Path,
    priors: Priors,
    *,
    column_map: Mapping[str, str] | None = None,
    missing: MissingPolicy = "error",
    min_days: int = MIN_DAYS,
) -> Diary:
    """Load and validate a diary.

    Parameters
    ----------
    path
        ``.csv`` or ``.parquet`` file, one row per user per day.
    priors
        The priors whose diary columns the file must hold.
    column_map
        Renames file columns to hbm's names, e.g. ``{"patient": "user_id"}``.
    missing
        Policy for missing feature values: ``"error"`` (default), ``"impute"`` or ``"drop"``.
    min_days
        Users with fewer logged days are listed in the report (and kept).

    Raises
    ------
    DiaryError
        Naming the file, the first offending rows, the column and the expectation.
    """
    frame, kind = read_table(path)
    return validate_frame(
        frame,
        priors,
        source=str(path),
        kind=kind,
        column_map=column_map,
        missing=missing,
        min_days=min_days,
    )


def subset_users(diary: Diary, users: Sequence[str]) -> Diary:
    """A diary restricted to some users (report counts recomputed for them)."""
    keep = diary.data["user_id"].isin(list(users))
    return _with_data(diary, diary.data[keep].reset_index(drop=True))


def train_mask(diary: Diary, test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """True for the rows of ``diary.data`` that ``split_by_time`` puts in training: the first
    ``floor(n * (1 - test_fraction))`` of each user's ``n`` days (rows are sorted by date)."""
    if not 0.0 < test_fraction < 1.0:
        raise DiaryError(f"test_fraction must be in (0, 1), got {test_fraction}")
    data = diary.data
    rank = data.groupby("user_id", sort=False).cumcount().to_numpy()
    size = data.groupby("user_id", sort=False)["date"].transform("size").to_numpy()
    return leading_days(rank, size, 1.0 - test_fraction)


def leading_days(
    rank: np.ndarray, size: np.ndarray, fraction: float, at_least: int = 0
) -> np.ndarray:
    """True for a user's first ``max(floor(n * fraction), at_least)`` of ``n`` days.

    ``rank`` is each row's 0-based position by date within its user, ``size`` its user's days.
    """
    return np.asarray(rank < np.maximum(np.floor(size * fraction), at_least))


def split_by_time(diary: Diary, test_fraction: float = TEST_FRACTION) -> tuple[Diary, Diary]:
    """Temporal split within each user: the first ``1 - test_fraction`` of days train.

    Rows are never split at random: a user's test days all come after their training days.
    """
    data = diary.data
    is_train = train_mask(diary, test_fraction)
    return (
        _with_data(diary, data[is_train].reset_index(drop=True)),
        _with_data(diary, data[~is_train].reset_index(drop=True)),
    )


def _with_data(diary: Diary, data: pd.DataFrame) -> Diary:
    r = diary.report
    return _diary(
        data,
        diary.columns,
        diary.source,
        missing_values=r.missing_values,
        missing_policy=r.missing_policy,
        imputed_values=r.imputed_values,
        dropped_rows=r.dropped_rows,
        min_days=r.min_days,
        extra_columns=r.extra_columns,
        warnings=r.warnings,
    )
