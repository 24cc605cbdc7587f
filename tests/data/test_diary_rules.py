"""Diary rules at their exact edges, with expectations written out by hand.

Every expected value here is computed by hand from the literal rows of the test (medians, counts,
line numbers, exact messages), never by calling the code under test.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from hbm.data.diary import (
    MIN_DAYS,
    load_diary,
    read_table,
    split_by_time,
    subset_users,
    train_mask,
    validate_frame,
)
from hbm.errors import DiaryError

from ..conftest import small_diary_frame
from .diary_files import HEADER, csv_diary, diary_error

DATA_COLUMNS = ["user_id", "date", "migraine", "screen_hours", "chocolate", "pressure"]
NO_ATTACKS = (
    "migraine is 0 on every row: with no contrast between attack and attack-free days, the "
    "weights are learned from the priors alone"
)


def _frame_err(frame, priors, **kw) -> str:
    with pytest.raises(DiaryError) as info:
        validate_frame(frame, priors, **kw)
    return str(info.value)


def _rows(n: int, user: str = "p0") -> str:
    """n valid CSV rows of one user on consecutive March days."""
    return "".join(f"{user},2025-03-{d + 1:02d},0,2,0,1010\n" for d in range(n))


# --- row numbering and the _SHOW limit ------------------------------------------------------


def test_csv_quotes_first_five_lines_and_counts_the_rest(tmp_path, small_priors):
    bad = "".join(f"p0,2025-03-{d + 1:02d},{v},2,0,1010\n" for d, v in enumerate("abcdefg"))
    path = csv_diary(tmp_path, bad + "p0,2025-03-08,1,2,0,1010\n")
    assert diary_error(path, small_priors) == (
        f"{path}: column 'migraine' has values other than 0/1 at line 2, line 3, line 4, "
        "line 5, line 6 and 2 more (values 'a', 'b', 'c'); expected 0 or 1 on every row"
    )


def test_exactly_five_offending_rows_have_no_and_more(tmp_path, small_priors):
    bad = "".join(f"p0,2025-03-{d + 1:02d},9,2,0,1010\n" for d in range(5))
    path = csv_diary(tmp_path, bad + "p0,2025-03-06,1,2,0,1010\n")
    msg = diary_error(path, small_priors)
    assert "at line 2, line 3, line 4, line 5, line 6 (values '9', '9', '9');" in msg
    assert "more" not in msg


def test_six_offending_rows_have_one_more(tmp_path, small_priors):
    bad = "".join(f"p0,2025-03-{d + 1:02d},9,2,0,1010\n" for d in range(6))
    path = csv_diary(tmp_path, bad)
    assert "at line 2, line 3, line 4, line 5, line 6 and 1 more (values" in diary_error(
        path, small_priors
    )


def test_parquet_rows_are_numbered_from_zero_with_the_same_limit(tmp_path, small_priors):
    frame = small_diary_frame(n_users=1, n_days=8).astype({"migraine": int})
    frame.loc[1:6, "migraine"] = 3  # rows 1..6: six offending rows
    pq = tmp_path / "d.parquet"
    frame.to_parquet(pq)
    assert diary_error(pq, small_priors) == (
        f"{pq}: column 'migraine' has values other than 0/1 at row 1, row 2, row 3, row 4, "
        "row 5 and 1 more (values 3, 3, 3); expected 0 or 1 on every row"
    )


def test_frame_numbering_is_positional_even_with_a_foreign_index(small_priors):
    frame = small_diary_frame(n_users=1, n_days=4)
    frame.index = [10, 11, 12, 13]
    frame.loc[12, "migraine"] = "7"
    msg = _frame_err(frame, small_priors, source="mem", kind="parquet")
    assert msg.startswith("mem: column 'migraine' has values other than 0/1 at row 2 (values '7')")
    # and the old index does not turn into a column
    frame.loc[12, "migraine"] = "1"
    diary = validate_frame(frame, small_priors)
    assert diary.report.extra_columns == ()
    assert diary.source == "<frame>"


# --- read_table: formats, encodings, headers --------------------------------------------------


def test_upper_case_suffix_and_pq_are_accepted(tmp_path, small_priors):
    path = csv_diary(tmp_path, _rows(2), name="D.CSV")
    assert load_diary(path, small_priors).report.n_rows == 2
    frame = small_diary_frame(n_users=1, n_days=3).astype({"migraine": int})
    pq = tmp_path / "d.pq"
    frame.to_parquet(pq)
    _, kind = read_table(pq)
    assert kind == "parquet"
    assert load_diary(pq, small_priors).report.n_rows == 3


def test_unknown_format_and_missing_file_messages(tmp_path, small_priors):
    txt = tmp_path / "d.txt"
    txt.write_text(HEADER)
    assert diary_error(txt, small_priors) == (
        f"{txt}: unknown diary format '.txt'; expected one of .csv, .csv.gz, .parquet, .pq"
    )
    gone = tmp_path / "gone.parquet"
    assert diary_error(gone, small_priors) == f"{gone}: diary file not found"


def test_repeated_header_is_refused_by_name(tmp_path, small_priors):
    p = tmp_path / "d.csv"
    p.write_text(
        "user_id,date,migraine,screen_hours,chocolate,pressure,pressure,chocolate\n"
        "p0,2025-03-01,0,2,0,1010,1011,1\n"
    )
    assert diary_error(p, small_priors) == (
        f"{p}: column(s) ['chocolate', 'pressure'] appear more than once in the header"
    )


def test_empty_csv_file_is_a_diary_error(tmp_path, small_priors):
    p = tmp_path / "d.csv"
    p.write_text("")
    assert diary_error(p, small_priors) == (
        f"{p}: the file is empty; a diary has a header line and one row per day"
    )


def test_non_utf8_csv_is_a_diary_error_naming_the_byte_and_line(tmp_path, small_priors):
    p = tmp_path / "d.csv"
    p.write_bytes(HEADER.encode() + "p\xe9,2025-03-01,0,2,0,1010\n".encode("latin-1"))
    assert diary_error(p, small_priors) == (
        f"{p}: not UTF-8 text: byte 0xe9 at line 2 (a Latin-1 or Windows export?); save the "
        "diary as UTF-8"
    )


def test_header_names_with_quoted_line_breaks_are_not_confused(tmp_path, small_priors):
    # "a<CR><LF>b" and "a<LF>b" are two different names; reading the header with newline
    # translation would make them one and refuse a valid file
    p = tmp_path / "d.csv"
    p.write_bytes(
        b'user_id,date,migraine,screen_hours,chocolate,pressure,"a\r\nb","a\nb"\r\n'
        b"p0,2025-03-01,0,2,0,1010,1,2\r\n"
    )
    assert load_diary(p, small_priors).report.extra_columns == ("a\r\nb", "a\nb")


def test_non_ascii_user_ids_break_the_id_rule(tmp_path, small_priors):
    # UTF-8 text is read, but an id is ASCII: it names a URL path and a command-line argument
    p = csv_diary(tmp_path, "Zo\u00eb,2025-03-01,0,2,0,1010\n")
    assert diary_error(p, small_priors).startswith(
        f"{p}: column 'user_id' has ids outside the id rule at line 2 (ids 'Zo\u00eb');"
    )


def test_a_bad_id_on_many_rows_is_named_once(tmp_path, small_priors):
    rows = (
        "".join(f"u 2,2025-03-0{d},0,2,0,1010\n" for d in (1, 2, 3)) + "a/b,2025-03-01,0,2,0,1010\n"
    )
    assert (
        diary_error(csv_diary(tmp_path, rows), small_priors)
        .split("); ")[0]
        .endswith("at line 2, line 3, line 4, line 5 (ids 'u 2', 'a/b'")
    )


def test_corrupt_parquet_is_a_diary_error(tmp_path, small_priors):
    p = tmp_path / "d.parquet"
    p.write_bytes(b"this is not parquet")
    assert diary_error(p, small_priors) == f"{p}: is not a Parquet file (no PAR1 header)"
    p.write_bytes(b"PAR1 and then nothing a Parquet reader can use")
    assert diary_error(p, small_priors).startswith(f"{p}: cannot read diary (")


def test_ids_are_read_as_text_not_numbers_or_na(tmp_path, small_priors):
    # '007' must not become 7 and 'NA' is an id, not a missing value
    p = csv_diary(tmp_path, "007,2025-03-01,0,2,0,1010\nNA,2025-03-01,1,2,0,1010\n")
    diary = load_diary(p, small_priors)
    assert diary.users == ("007", "NA")


def test_na_text_in_a_feature_is_not_numeric_but_empty_is_missing(tmp_path, small_priors):
    p = csv_diary(tmp_path, "p0,2025-03-01,0,2,0,NA\n")
    assert diary_error(p, small_priors) == (
        f"{p}: column 'pressure' is not numeric at line 2 (values 'NA'); "
        "expected a number in raw units"
    )
    p = csv_diary(tmp_path, "p0,2025-03-01,0,2,0,\np0,2025-03-02,0,2,0,1010\n")
    assert diary_error(p, small_priors) == (
        f"{p}: column 'pressure' has 1 missing value(s) (NaN or empty) at line 2; expected a "
        "number, or pass missing='impute' (user median) or missing='drop' (--missing on the "
        "command line)"
    )


# --- columns ----------------------------------------------------------------------------------


def test_missing_column_message_names_everything(tmp_path, small_priors):
    p = tmp_path / "d.csv"
    p.write_text("user_id,date,screen_hours,chocolate,notes\np0,2025-03-01,2,0,x\n")
    assert diary_error(p, small_priors) == (
        f"{p}: missing column(s) ['migraine', 'pressure']; a diary needs "
        "['user_id', 'date', 'migraine'] and one column per diary column of the priors file "
        f"{small_priors.path} (use a column map to rename); file columns: "
        "['user_id', 'date', 'screen_hours', 'chocolate', 'notes']"
    )


def test_column_map_of_absent_column_lists_file_columns(tmp_path, small_priors):
    p = csv_diary(tmp_path, _rows(1))
    assert diary_error(p, small_priors, column_map={"hpa": "pressure"}) == (
        f"{p}: column map names ['hpa'], which the file does not have; file columns: "
        "['user_id', 'date', 'migraine', 'screen_hours', 'chocolate', 'pressure']"
    )


def test_duplicate_columns_in_a_frame(small_priors):
    frame = small_diary_frame(n_users=1, n_days=2)
    frame = pd.concat([frame, frame[["pressure"]]], axis=1)
    assert _frame_err(frame, small_priors, source="mem") == (
        "mem: column(s) ['pressure'] appear more than once"
    )


def test_extra_columns_are_reported_in_file_order(tmp_path, small_priors):
    p = tmp_path / "d.csv"
    p.write_text(
        "zz,user_id,date,migraine,screen_hours,chocolate,pressure,aa\n"
        "1,p0,2025-03-01,0,2,0,1010,2\n"
    )
    diary = load_diary(p, small_priors)
    assert diary.report.extra_columns == ("zz", "aa")
    assert list(diary.data.columns) == [
        "user_id",
        "date",
        "migraine",
        "screen_hours",
        "chocolate",
        "pressure",
    ]


# --- rows: ids, dates, outcome, duplicates ---------------------------------------------------


def test_a_single_row_diary_loads(tmp_path, small_priors):
    diary = load_diary(csv_diary(tmp_path, _rows(1)), small_priors)
    assert diary.report.n_rows == 1
    assert diary.report.days_per_user == {"p0": 1}


def test_header_only_diary_has_no_rows(tmp_path, small_priors):
    p = csv_diary(tmp_path, "")
    assert diary_error(p, small_priors) == f"{p}: the diary has no rows"


def test_blank_user_id_is_refused_and_ids_are_stripped(tmp_path, small_priors):
    p = csv_diary(tmp_path, "p0,2025-03-01,0,2,0,1010\n   ,2025-03-02,0,2,0,1010\n")
    assert diary_error(p, small_priors) == (
        f"{p}: column 'user_id' is empty at line 3; expected a non-empty id on every row"
    )
    p = csv_diary(tmp_path, " p0 ,2025-03-01,0,2,0,1010\np0,2025-03-02,0,2,0,1010\n")
    diary = load_diary(p, small_priors)
    assert diary.users == ("p0",)
    assert diary.report.days_per_user == {"p0": 2}


def test_null_user_id_in_parquet_is_refused(tmp_path, small_priors):
    frame = small_diary_frame(n_users=1, n_days=3).astype({"migraine": int})
    frame["user_id"] = ["p0", None, "p0"]
    pq = tmp_path / "d.parquet"
    frame.to_parquet(pq)
    assert diary_error(pq, small_priors) == (
        f"{pq}: column 'user_id' is empty at row 1; expected a non-empty id on every row"
    )


def test_dates_with_spaces_are_accepted(tmp_path, small_priors):
    p = csv_diary(tmp_path, 'p0," 2025-03-01 ",0,2,0,1010\n')
    diary = load_diary(p, small_priors)
    assert diary.data["date"].tolist() == [pd.Timestamp("2025-03-01")]


def test_bad_dates_quote_first_three_values(tmp_path, small_priors):
    body = (
        "p0,2025-03-01,0,2,0,1010\n"
        "p0,2025/03/02,0,2,0,1010\n"
        "p0,20250303,0,2,0,1010\n"
        "p0,2025-3-4x,0,2,0,1010\n"
        "p0,tomorrow,0,2,0,1010\n"
    )
    p = csv_diary(tmp_path, body)
    assert diary_error(p, small_priors) == (
        f"{p}: column 'date' cannot be parsed at line 3, line 4, line 5, line 6 "
        "(values '2025/03/02', '20250303', '2025-3-4x'); expected ISO dates YYYY-MM-DD"
    )


def test_non_iso_dates_are_refused_even_when_all_agree(tmp_path, small_priors):
    # day/month order is ambiguous: a diary of only such dates must not be guessed at
    p = csv_diary(tmp_path, "p0,01/03/2025,0,2,0,1010\np0,02/03/2025,0,2,0,1010\n")
    assert diary_error(p, small_priors) == (
        f"{p}: column 'date' cannot be parsed at line 2, line 3 "
        "(values '01/03/2025', '02/03/2025'); expected ISO dates YYYY-MM-DD"
    )


def test_parquet_timestamps_are_normalised_to_days(tmp_path, small_priors):
    frame = small_diary_frame(n_users=1, n_days=3).astype({"migraine": int})
    frame["date"] = pd.to_datetime(["2025-03-01 08:30", "2025-03-02 23:59", "2025-03-04 00:01"])
    pq = tmp_path / "d.parquet"
    frame.to_parquet(pq)
    diary = load_diary(pq, small_priors)
    assert diary.data["date"].tolist() == [
        pd.Timestamp("2025-03-01"),
        pd.Timestamp("2025-03-02"),
        pd.Timestamp("2025-03-04"),
    ]
    assert diary.report.missing_days_per_user == {"p0": 1}


def test_parquet_missing_timestamp_is_named(tmp_path, small_priors):
    frame = small_diary_frame(n_users=1, n_days=3).astype({"migraine": int})
    frame["date"] = pd.to_datetime(["2025-03-01", None, "2025-03-03"])
    pq = tmp_path / "d.parquet"
    frame.to_parquet(pq)
    assert diary_error(pq, small_priors) == (
        f"{pq}: column 'date' cannot be parsed at row 1 (values NaT); expected ISO dates YYYY-MM-DD"
    )


def test_outcome_accepts_0_1_and_1_0_and_stores_int8(tmp_path, small_priors):
    p = csv_diary(tmp_path, "p0,2025-03-01,1.0,2,0,1010\np0,2025-03-02,0,2,0,1010\n")
    diary = load_diary(p, small_priors)
    assert diary.data["migraine"].tolist() == [1, 0]
    assert diary.data["migraine"].dtype == np.int8


def test_duplicate_days_name_the_first_pair(tmp_path, small_priors):
    body = (
        "p0,2025-03-01,0,2,0,1010\n"
        "p1,2025-03-02,0,2,0,1010\n"
        "p0,2025-03-01,1,2,0,1010\n"
        "p1,2025-03-02,1,2,0,1010\n"
        "p1,2025-03-03,1,2,0,1010\n"
    )
    p = csv_diary(tmp_path, body)
    assert diary_error(p, small_priors) == (
        f"{p}: duplicated (user_id, date) at line 2, line 3, line 4, line 5 (e.g. user 'p0' on "
        "2025-03-01); expected one row per user per day"
    )


def test_same_day_for_two_users_is_not_a_duplicate(tmp_path, small_priors):
    p = csv_diary(tmp_path, "p0,2025-03-01,0,2,0,1010\np1,2025-03-01,0,2,0,1010\n")
    assert load_diary(p, small_priors).report.n_users == 2


# --- feature values: numbers, ranges, missing --------------------------------------------------


def test_range_edges_are_inside(tmp_path, small_priors):
    # screen_hours [0, 16], chocolate [0, 1], pressure [900, 1100]
    p = csv_diary(tmp_path, "p0,2025-03-01,0,0,0,900\np0,2025-03-02,0,16,1,1100\n")
    diary = load_diary(p, small_priors)
    assert diary.data["screen_hours"].tolist() == [0.0, 16.0]
    assert diary.data["pressure"].tolist() == [900.0, 1100.0]
    assert diary.data["chocolate"].dtype == np.float64


def test_just_outside_the_range_is_refused(tmp_path, small_priors):
    p = csv_diary(
        tmp_path,
        "p0,2025-03-01,0,16.5,0,1010\np0,2025-03-02,0,-0.25,0,1010\n"
        "p0,2025-03-03,0,17,0,1010\np0,2025-03-04,0,99,0,1010\n",
    )
    assert diary_error(p, small_priors) == (
        f"{p}: column 'screen_hours' is outside its declared range [0, 16] at line 2, line 3, "
        "line 4, line 5 (values 16.5, -0.25, 17)"
    )
    p = csv_diary(tmp_path, "p0,2025-03-01,0,2,0,899.5\n")
    assert diary_error(p, small_priors) == (
        f"{p}: column 'pressure' is outside its declared range [900, 1100] at line 2 (values 899.5)"
    )


def test_not_numeric_quotes_first_three(tmp_path, small_priors):
    body = "".join(
        f"p0,2025-03-0{i + 1},0,{v},0,1010\n" for i, v in enumerate(["2", "a", "b", "c", "d"])
    )
    p = csv_diary(tmp_path, body)
    assert diary_error(p, small_priors) == (
        f"{p}: column 'screen_hours' is not numeric at line 3, line 4, line 5, line 6 "
        "(values 'a', 'b', 'c'); expected a number in raw units"
    )


def test_missing_counts_per_column_under_error_policy(tmp_path, small_priors):
    p = csv_diary(
        tmp_path, "p0,2025-03-01,0,,0,1010\np0,2025-03-02,0,,0,1010\np0,2025-03-03,0,3,0,1\n"
    )
    # the first column with a problem wins; pressure 1 is out of range but comes later
    assert diary_error(p, small_priors) == (
        f"{p}: column 'screen_hours' has 2 missing value(s) (NaN or empty) at line 2, line 3; "
        "expected a number, or pass missing='impute' (user median) or missing='drop' "
        "(--missing on the command line)"
    )


IMPUTE_BODY = (
    # p0 screen hours 1, _, 4, 10 -> user median of (1, 4, 10) is 4
    "p0,2025-03-01,0,1,0,1000\n"
    "p0,2025-03-02,0,,1,1001\n"
    "p0,2025-03-03,0,4,,1002\n"
    "p0,2025-03-04,0,10,1,\n"
    # p1 has no screen hours at all -> cohort median of (1, 4, 10, 6, 8) = 6
    "p1,2025-03-01,0,,0,1010\n"
    "p1,2025-03-02,0,,0,1012\n"
    # p2 gives the cohort two more values
    "p2,2025-03-01,0,6,0,1020\n"
    "p2,2025-03-02,0,8,0,1020\n"
)


def test_impute_uses_user_median_then_cohort_median(tmp_path, small_priors):
    diary = load_diary(csv_diary(tmp_path, IMPUTE_BODY), small_priors, missing="impute")
    d = diary.data
    assert d["screen_hours"].tolist() == [1.0, 4.0, 4.0, 10.0, 6.0, 6.0, 6.0, 8.0]
    # chocolate: p0 has 0, 1, 1 -> median 1
    assert d["chocolate"].tolist()[:4] == [0.0, 1.0, 1.0, 1.0]
    # pressure: p0 has 1000, 1001, 1002 -> median 1001
    assert d["pressure"].tolist()[:4] == [1000.0, 1001.0, 1002.0, 1001.0]
    r = diary.report
    assert r.imputed_values == {"screen_hours": 3, "chocolate": 1, "pressure": 1}
    assert r.missing_values == {"screen_hours": 3, "chocolate": 1, "pressure": 1}
    assert r.missing_policy == "impute"
    assert r.dropped_rows == 0
    assert r.n_rows == 8


def test_impute_refuses_a_column_with_no_values_at_all(tmp_path, small_priors):
    # bug: the NaNs used to stay in the diary and were reported as imputed
    p = csv_diary(tmp_path, "p0,2025-03-01,0,,0,1010\np1,2025-03-02,1,,1,1011\n")
    assert diary_error(p, small_priors, missing="impute") == (
        f"{p}: column 'screen_hours' has no values at all; missing='impute' needs at least one "
        "number to take a median of"
    )
    # one value anywhere in the cohort is enough: p1 gets the cohort median 7
    p = csv_diary(tmp_path, "p0,2025-03-01,0,7,0,1010\np1,2025-03-02,1,,1,1011\n")
    diary = load_diary(p, small_priors, missing="impute")
    assert diary.data["screen_hours"].tolist() == [7.0, 7.0]


def test_impute_counts_only_columns_that_had_gaps(tmp_path, small_priors):
    p = csv_diary(tmp_path, "p0,2025-03-01,0,,0,1010\np0,2025-03-02,0,3,0,1010\n")
    diary = load_diary(p, small_priors, missing="impute")
    assert diary.report.imputed_values == {"screen_hours": 1}
    assert diary.report.missing_values == {"screen_hours": 1, "chocolate": 0, "pressure": 0}


def test_drop_counts_rows_not_cells(tmp_path, small_priors):
    diary = load_diary(csv_diary(tmp_path, IMPUTE_BODY), small_priors, missing="drop")
    # rows with any gap: p0 03-02, 03-03, 03-04 and both p1 rows -> 5 of 8 dropped
    assert diary.report.dropped_rows == 5
    assert diary.report.n_rows == 3
    assert diary.report.imputed_values == {}
    assert diary.report.missing_policy == "drop"
    assert diary.data["user_id"].tolist() == ["p0", "p2", "p2"]
    assert diary.report.days_per_user == {"p0": 1, "p2": 2}


def test_drop_of_every_row_is_an_error(tmp_path, small_priors):
    p = csv_diary(tmp_path, "p0,2025-03-01,0,,0,1010\np0,2025-03-02,0,3,,1010\n")
    assert diary_error(p, small_priors, missing="drop") == (
        f"{p}: no rows left after dropping rows with missing values"
    )


def test_error_policy_report_with_complete_data(tmp_path, small_priors):
    diary = load_diary(csv_diary(tmp_path, _rows(3)), small_priors)
    r = diary.report
    assert r.missing_policy == "error"
    assert r.missing_values == {"screen_hours": 0, "chocolate": 0, "pressure": 0}
    assert r.imputed_values == {}
    assert r.dropped_rows == 0
    assert r.min_days == 30 == MIN_DAYS
    assert r.short_users == ("p0",)


def test_unknown_missing_policy_lists_the_known_ones(small_priors):
    assert _frame_err(small_diary_frame(), small_priors, missing="skip") == (
        "missing policy 'skip' is unknown; expected one of ('error', 'impute', 'drop')"
    )


# --- sorting, counts, gaps and short users ------------------------------------------------------


def test_sorted_by_user_then_date(tmp_path, small_priors):
    body = (
        "p1,2025-03-02,0,1,0,1010\n"
        "p0,2025-03-03,0,2,0,1010\n"
        "p1,2025-03-01,0,3,0,1010\n"
        "p0,2025-03-01,0,4,0,1010\n"
    )
    d = load_diary(csv_diary(tmp_path, body), small_priors).data
    assert d["user_id"].tolist() == ["p0", "p0", "p1", "p1"]
    assert d["screen_hours"].tolist() == [4.0, 2.0, 3.0, 1.0]
    assert d.index.tolist() == [0, 1, 2, 3]


def test_gap_of_exactly_one_day_and_counts(tmp_path, small_priors):
    body = (
        "p0,2025-03-01,0,1,0,1010\n"
        "p0,2025-03-03,0,1,0,1010\n"  # 2 March missing: one day
        "p1,2025-02-27,0,1,0,1010\n"
        "p1,2025-02-28,0,1,0,1010\n"
        "p1,2025-03-01,0,1,0,1010\n"  # across month end, no gap
        "p2,2025-03-01,0,1,0,1010\n"
        "p2,2025-03-11,0,1,0,1010\n"  # 9 days missing
    )
    r = load_diary(csv_diary(tmp_path, body), small_priors).report
    assert r.missing_days_per_user == {"p0": 1, "p1": 0, "p2": 9}
    assert r.days_per_user == {"p0": 2, "p1": 3, "p2": 2}
    assert r.n_users == 3
    assert r.n_rows == 7


def test_min_days_boundary(tmp_path, small_priors):
    body = _rows(3, "p0") + _rows(2, "p1") + _rows(4, "p2")
    path = csv_diary(tmp_path, body)
    r = load_diary(path, small_priors, min_days=3).report
    assert r.short_users == ("p1",)  # 3 days is enough, 2 is not
    assert r.min_days == 3
    assert load_diary(path, small_priors, min_days=4).report.short_users == ("p0", "p1")
    assert load_diary(path, small_priors, min_days=2).report.short_users == ()


def test_column_map_reaches_load_diary(tmp_path, small_priors):
    p = tmp_path / "d.csv"
    p.write_text("patient,date,migraine,screen_hours,chocolate,hpa\np9,2025-03-01,1,2,0,1010\n")
    diary = load_diary(p, small_priors, column_map={"patient": "user_id", "hpa": "pressure"})
    assert diary.users == ("p9",)
    assert diary.data["pressure"].tolist() == [1010.0]
    assert diary.source == str(p)


# --- content hash -----------------------------------------------------------------------------


def test_sha256_is_the_hash_of_the_canonical_csv(tmp_path, small_priors):
    p = csv_diary(tmp_path, "p0,2025-03-02,1,3,1,1009\np0,2025-03-01,0,2,0,1010\n")
    canonical = (
        "user_id,date,migraine,screen_hours,chocolate,pressure\n"
        "p0,2025-03-01,0,2.0,0.0,1010.0\n"
        "p0,2025-03-02,1,3.0,1.0,1009.0\n"
    )
    assert load_diary(p, small_priors).sha256 == hashlib.sha256(canonical.encode()).hexdigest()


# --- splits and subsets -----------------------------------------------------------------------


def _four_and_five(tmp_path, small_priors, **kw):
    return load_diary(csv_diary(tmp_path, _rows(4, "a") + _rows(5, "b")), small_priors, **kw)


def test_train_mask_takes_floor_of_each_users_days(tmp_path, small_priors):
    diary = _four_and_five(tmp_path, small_priors)
    # a: floor(4 * 0.75) = 3 train days; b: floor(5 * 0.75) = 3
    assert train_mask(diary).tolist() == [True] * 3 + [False] + [True] * 3 + [False] * 2
    # b: floor(5 * 0.5) = 2; a: floor(4 * 0.5) = 2
    assert train_mask(diary, 0.5).tolist() == [True, True, False, False, True, True] + [False] * 3


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_train_mask_refuses_fractions_outside_open_unit_interval(tmp_path, small_priors, bad):
    diary = _four_and_five(tmp_path, small_priors)
    with pytest.raises(DiaryError) as info:
        train_mask(diary, bad)
    assert str(info.value) == f"test_fraction must be in (0, 1), got {bad}"


def test_train_mask_accepts_fractions_just_inside(tmp_path, small_priors):
    diary = _four_and_five(tmp_path, small_priors)
    assert train_mask(diary, 0.01).tolist() == [True] * 3 + [False] + [True] * 4 + [False]
    assert not train_mask(diary, 0.99).any()


def test_split_by_time_default_quarter_and_report_carried(tmp_path, small_priors):
    p = tmp_path / "d.csv"
    p.write_text(
        "user_id,date,migraine,screen_hours,chocolate,pressure,notes\n"
        + "".join(f"a,2025-03-0{d + 1},0,{'' if d == 0 else 2},0,1010,x\n" for d in range(4))
        + "".join(f"b,2025-03-0{d + 1},0,2,0,1010,y\n" for d in range(5))
    )
    diary = load_diary(p, small_priors, missing="impute", min_days=3)
    train, test = split_by_time(diary)
    assert train.data["date"].dt.day.tolist() == [1, 2, 3, 1, 2, 3]
    assert test.data["date"].dt.day.tolist() == [4, 4, 5]
    assert test.data.index.tolist() == [0, 1, 2]
    for part in (train, test):
        assert list(part.data.columns) == DATA_COLUMNS
    for part in (train, test):
        r = part.report
        assert r.missing_policy == "impute"
        assert r.imputed_values == {"screen_hours": 1}
        assert r.missing_values == {"screen_hours": 1, "chocolate": 0, "pressure": 0}
        assert r.dropped_rows == 0
        assert r.min_days == 3
        assert r.extra_columns == ("notes",)
        assert r.warnings == (NO_ATTACKS,)  # the whole diary's warnings, carried
        assert part.source == str(p)
        assert part.columns == ("screen_hours", "chocolate", "pressure")
    assert train.report.short_users == ()
    assert test.report.short_users == ("a", "b")
    assert test.report.days_per_user == {"a": 1, "b": 2}


def test_subset_users_recounts(tmp_path, small_priors):
    diary = load_diary(
        csv_diary(tmp_path, _rows(2, "a") + "b,2025-03-01,0,2,0,1010\nb,2025-03-04,0,2,0,1010\n"),
        small_priors,
        missing="drop",
    )
    sub = subset_users(diary, ["b", "zz"])
    assert sub.users == ("b",)
    assert sub.report.n_rows == 2
    assert sub.report.n_users == 1
    assert sub.report.days_per_user == {"b": 2}
    assert sub.report.missing_days_per_user == {"b": 2}
    assert sub.report.missing_policy == "drop"
    assert sub.report.warnings == (NO_ATTACKS,)
    assert sub.data.index.tolist() == [0, 1]
    assert list(sub.data.columns) == DATA_COLUMNS


def test_split_by_time_passes_the_fraction_on(tmp_path, small_priors):
    diary = _four_and_five(tmp_path, small_priors)
    train, test = split_by_time(diary, 0.5)
    # a: floor(4 * 0.5) = 2 train days, b: floor(5 * 0.5) = 2
    assert train.report.days_per_user == {"a": 2, "b": 2}
    assert test.report.days_per_user == {"a": 2, "b": 3}
