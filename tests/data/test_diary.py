"""Diary loading: the shipped example, column maps, missing-value policies and bad input."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from hbm.data.diary import load_diary, split_by_time, validate_frame
from hbm.errors import DiaryError

from ..conftest import REPO, small_diary_frame, write_csv


def test_shipped_example_diary_loads(priors):
    diary = load_diary(REPO / "data" / "example_diary.csv", priors)
    assert diary.report.n_users == 40
    assert set(diary.report.days_per_user.values()) == {365}
    assert diary.report.dropped_rows == 0
    assert 0.12 <= diary.data["migraine"].mean() <= 0.20


def test_custom_priors_and_matching_diary_load(tmp_path, small_priors):
    diary = load_diary(write_csv(tmp_path, small_diary_frame()), small_priors)
    assert diary.columns == ("screen_hours", "chocolate", "pressure")
    assert diary.report.n_rows == 10
    assert list(diary.data.columns) == [
        "user_id",
        "date",
        "migraine",
        "screen_hours",
        "chocolate",
        "pressure",
    ]


def test_parquet_and_csv_give_the_same_content(tmp_path, small_priors):
    frame = small_diary_frame()
    csv = load_diary(write_csv(tmp_path, frame), small_priors)
    typed = frame.astype(
        {"migraine": int, "screen_hours": float, "chocolate": float, "pressure": float}
    )
    pq = tmp_path / "diary.parquet"
    typed.to_parquet(pq)
    assert load_diary(pq, small_priors).sha256 == csv.sha256


def test_column_map_renames(tmp_path, small_priors):
    frame = small_diary_frame().rename(columns={"user_id": "patient", "pressure": "hpa"})
    diary = load_diary(
        write_csv(tmp_path, frame),
        small_priors,
        column_map={"patient": "user_id", "hpa": "pressure"},
    )
    assert diary.users == ("p0", "p1")


def test_rows_are_sorted_and_extra_columns_reported(tmp_path, small_priors):
    frame = small_diary_frame().iloc[::-1].assign(notes="x")
    diary = load_diary(write_csv(tmp_path, frame), small_priors)
    assert diary.data["date"].is_monotonic_increasing is False  # two users
    assert diary.data.groupby("user_id")["date"].apply(lambda s: s.is_monotonic_increasing).all()
    assert diary.report.extra_columns == ("notes",)


def test_missing_values_impute_and_drop_are_counted(tmp_path, small_priors):
    frame = small_diary_frame()
    frame.loc[1, "screen_hours"] = ""
    frame.loc[7, "chocolate"] = ""
    path = write_csv(tmp_path, frame)
    imputed = load_diary(path, small_priors, missing="impute")
    assert imputed.report.imputed_values == {"screen_hours": 1, "chocolate": 1}
    assert imputed.report.n_rows == 10
    # p0's other screen hours are 2, 4, 5, 6: the user's median is 4.5
    row = imputed.data[(imputed.data.user_id == "p0") & (imputed.data.date == "2025-03-02")]
    assert row["screen_hours"].item() == 4.5
    dropped = load_diary(path, small_priors, missing="drop")
    assert dropped.report.dropped_rows == 2
    assert dropped.report.n_rows == 8
    assert dropped.report.missing_values == {"screen_hours": 1, "chocolate": 1, "pressure": 0}


def test_gaps_and_short_users_are_reported(tmp_path, small_priors):
    frame = small_diary_frame(n_days=6).drop(index=[2, 3])  # p0 misses 3 and 4 March
    diary = load_diary(write_csv(tmp_path, frame), small_priors, min_days=5)
    assert diary.report.missing_days_per_user == {"p0": 2, "p1": 0}
    assert diary.report.short_users == ("p0",)


def test_split_by_time_keeps_order_within_user(tmp_path, small_priors):
    diary = load_diary(write_csv(tmp_path, small_diary_frame(n_days=8)), small_priors)
    train, test = split_by_time(diary, 0.25)
    assert train.report.n_rows == 12 and test.report.n_rows == 4
    for u in diary.users:
        assert (
            train.data[train.data.user_id == u].date.max()
            < test.data[test.data.user_id == u].date.min()
        )


Edit = Callable[[pd.DataFrame], pd.DataFrame]


def _set(row: int, col: str, value: str) -> Edit:
    def edit(f: pd.DataFrame) -> pd.DataFrame:
        f.loc[row, col] = value
        return f

    return edit


MALFORMED: list[tuple[str, Edit, list[str]]] = [
    ("missing column", lambda f: f.drop(columns=["chocolate"]), ["missing column", "chocolate"]),
    ("missing outcome column", lambda f: f.drop(columns=["migraine"]), ["'migraine'"]),
    ("outcome 2", _set(3, "migraine", "2"), ["'migraine'", "line 5", "0/1", "'2'"]),
    ("outcome text", _set(0, "migraine", "yes"), ["'migraine'", "line 2", "'yes'"]),
    ("outcome empty", _set(4, "migraine", ""), ["'migraine'", "line 6"]),
    ("bad date", _set(2, "date", "03/03/2025"), ["'date'", "line 4", "YYYY-MM-DD"]),
    ("impossible date", _set(2, "date", "2025-02-30"), ["'date'", "line 4"]),
    (
        "duplicate day",
        _set(1, "date", "2025-03-01"),
        ["duplicated (user_id, date)", "line 2", "line 3", "p0"],
    ),
    (
        "out of range",
        _set(6, "screen_hours", "30"),
        ["'screen_hours'", "range [0, 16]", "line 8", "30"],
    ),
    ("negative", _set(8, "chocolate", "-1"), ["'chocolate'", "range [0, 1]", "line 10"]),
    (
        "not a number",
        _set(5, "pressure", "high"),
        ["'pressure'", "not numeric", "line 7", "'high'"],
    ),
    (
        "nan value",
        _set(9, "screen_hours", ""),
        ["'screen_hours'", "missing value", "line 11", "missing='impute'"],
    ),
    ("empty user", _set(0, "user_id", ""), ["'user_id'", "line 2"]),
    ("no rows", lambda f: f.iloc[0:0], ["no rows"]),
    (
        "duplicate column",
        lambda f: pd.concat([f, f[["chocolate"]]], axis=1),
        ["appear more than once", "chocolate"],
    ),
]


@pytest.mark.parametrize(("case", "edit", "expected"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_diaries_name_file_rows_and_column(tmp_path, small_priors, case, edit, expected):
    path = write_csv(tmp_path, edit(small_diary_frame()))
    with pytest.raises(DiaryError) as info:
        load_diary(path, small_priors)
    msg = str(info.value)
    assert str(path) in msg
    for part in expected:
        assert part in msg, f"{case}: {part!r} not in {msg!r}"


def test_diary_not_found_and_unknown_format(tmp_path, small_priors):
    with pytest.raises(DiaryError, match="diary file not found"):
        load_diary(tmp_path / "none.csv", small_priors)
    xlsx = tmp_path / "d.xlsx"
    xlsx.write_text("x")
    with pytest.raises(DiaryError, match=r"d.xlsx: unknown diary format '.xlsx'"):
        load_diary(xlsx, small_priors)


def test_column_map_of_absent_column(tmp_path, small_priors):
    with pytest.raises(DiaryError, match=r"column map names \['patient'\]"):
        load_diary(
            write_csv(tmp_path, small_diary_frame()),
            small_priors,
            column_map={"patient": "user_id"},
        )


def test_parquet_rows_are_numbered_from_zero(tmp_path, small_priors):
    frame = small_diary_frame().astype({"migraine": int})
    frame.loc[3, "migraine"] = 5
    pq = tmp_path / "d.parquet"
    frame.to_parquet(pq)
    with pytest.raises(DiaryError, match=r"d.parquet: column 'migraine' .* row 3"):
        load_diary(pq, small_priors)


def test_unknown_missing_policy(small_priors):
    with pytest.raises(DiaryError, match="missing policy 'guess'"):
        validate_frame(small_diary_frame(), small_priors, missing="guess")  # type: ignore[arg-type]
