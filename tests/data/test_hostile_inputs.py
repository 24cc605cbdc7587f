"""Issue 22's hostile inputs at load time: the one id rule, file kinds and encodings, warnings and
non-finite numbers in a priors file.

Expected messages are written out by hand from the literal bytes of each test.
"""

from __future__ import annotations

import gzip
import json
import re

import pandas as pd
import pytest

from hbm.data.diary import load_diary
from hbm.data.priors import load_priors
from hbm.data.rows import diary_warnings
from hbm.defaults import USER_ID_PATTERN
from hbm.errors import PriorsError

from ..conftest import small_priors_doc, write_priors
from .diary_files import HEADER, csv_diary, diary_error

RULE = (
    "a user id is 1 to 128 characters: ASCII letters, digits and . _ ~ @ + -, starting with a "
    "letter or digit (data/README.md)"
)


# --- the id rule (issue 22, cases 3 and 11) -----------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "shown"),
    [
        ("../../../../x", "'../../../../x'"),
        ("a b", "'a b'"),
        ("e/f", "'e/f'"),
        ("caf\u00e9", "'caf\u00e9'"),
        ("..", "'..'"),
        ("-rf", "'-rf'"),
        ("a\tb", "'a\\tb'"),
        ("x" * 129, "'xxxxxxxxxxxxxxxxxxxx'... (129 characters)"),
        ("L" * 300, "'LLLLLLLLLLLLLLLLLLLL'... (300 characters)"),
    ],
)
def test_an_id_outside_the_rule_is_refused_naming_line_id_and_rule(
    tmp_path, small_priors, user_id, shown
):
    p = csv_diary(tmp_path, f"ok,2025-03-01,0,2,0,1010\n{user_id},2025-03-01,0,2,0,1010\n")
    assert diary_error(p, small_priors) == (
        f"{p}: column 'user_id' has ids outside the id rule at line 3 (ids {shown}); {RULE}"
    )


@pytest.mark.parametrize(
    "user_id",
    [
        "a",
        "L" * 128,
        "jane.doe+migraine@example.org",
        "123e4567-e89b-12d3-a456-426614174000",
        "A-z_0.9~",
    ],
)
def test_ids_of_real_apps_follow_the_rule(tmp_path, small_priors, user_id):
    p = csv_diary(tmp_path, f"{user_id},2025-03-01,0,2,0,1010\n")
    assert load_diary(p, small_priors).users == (user_id,)


def test_ids_are_stripped_before_the_rule(tmp_path, small_priors):
    p = csv_diary(tmp_path, "  p0 ,2025-03-01,0,2,0,1010\n")
    assert load_diary(p, small_priors).users == ("p0",)


def test_the_service_serves_by_the_same_rule():
    from hbm.app import service

    assert service.USER_ID_PATTERN is USER_ID_PATTERN
    assert USER_ID_PATTERN == r"^[A-Za-z0-9][A-Za-z0-9._~@+-]{0,127}$"


def test_a_parquet_id_outside_the_rule_is_named_by_row(tmp_path, small_priors):
    frame = pd.DataFrame(
        {
            "user_id": ["ok", "ok", "a/b"],
            "date": ["2025-03-01", "2025-03-02", "2025-03-01"],
            "migraine": [0, 1, 0],
            "screen_hours": [2.0, 2.0, 2.0],
            "chocolate": [0, 0, 0],
            "pressure": [1010.0, 1010.0, 1010.0],
        }
    )
    p = tmp_path / "d.parquet"
    frame.to_parquet(p)
    assert diary_error(p, small_priors) == (
        f"{p}: column 'user_id' has ids outside the id rule at row 2 (ids 'a/b'); {RULE}"
    )


# --- file kinds and encodings (issue 22, case 14) -------------------------------------------


BODY = "p0,2025-03-01,0,2,0,1010\np0,2025-03-02,1,3,1,1011\n"


def test_gzip_bytes_in_a_csv_say_so(tmp_path, small_priors):
    p = tmp_path / "d.csv"
    p.write_bytes(gzip.compress((HEADER + BODY).encode()))
    assert diary_error(p, small_priors) == (
        f"{p}: is gzip-compressed; name it .csv.gz (hbm reads gzip-compressed CSV) or decompress it"
    )


def test_a_csv_gz_is_read_like_the_csv(tmp_path, small_priors):
    plain = csv_diary(tmp_path, BODY)
    gz = tmp_path / "d.CSV.GZ"
    gz.write_bytes(gzip.compress((HEADER + BODY).encode()))
    a, b = load_diary(plain, small_priors), load_diary(gz, small_priors)
    assert b.sha256 == a.sha256 and b.report.n_rows == 2


def test_a_csv_gz_that_is_not_gzip_says_so(tmp_path, small_priors):
    p = csv_diary(tmp_path, BODY, name="d.csv.gz")
    assert diary_error(p, small_priors) == f"{p}: is not gzip-compressed; name it .csv"
    p.write_bytes(b"\x1f\x8b" + b"not really deflate data")
    assert diary_error(p, small_priors).startswith(f"{p}: cannot decompress (")


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (
            b"PK\x03\x04rest",
            "is a ZIP archive (an Excel .xlsx workbook?), not CSV text; save it as CSV",
        ),
        (b"PAR1rest", "is a Parquet file; name it .parquet"),
        ((HEADER + BODY).encode("utf-16"), "is UTF-16 text; save it as UTF-8"),
    ],
)
def test_other_kinds_of_file_named_csv_say_what_they_are(tmp_path, small_priors, data, what):
    p = tmp_path / "d.csv"
    p.write_bytes(data)
    assert diary_error(p, small_priors) == f"{p}: {what}"


def test_a_byte_order_mark_is_dropped(tmp_path, small_priors):
    # spreadsheet programs write one; it must not become part of the first column's name
    p = tmp_path / "d.csv"
    p.write_bytes(b"\xef\xbb\xbf" + (HEADER + BODY).encode())
    assert load_diary(p, small_priors).report.n_rows == 2


def test_a_nul_byte_is_named_by_its_line(tmp_path, small_priors):
    p = csv_diary(tmp_path, "p0,2025-03-01,0,2,0,1010\np0,2025-03-02,1,3\x00,1,1011\n")
    assert diary_error(p, small_priors) == f"{p}: a NUL byte at line 3; a diary is CSV text"


def test_rows_after_blank_lines_keep_their_own_line_numbers(tmp_path, small_priors):
    # line 2 valid, 3 blank, 4 an empty spreadsheet row, 5 bad
    p = csv_diary(tmp_path, "p0,2025-03-01,0,2,0,1010\n\n,,,,,\np0,2025-03-02,7,2,0,1010\n")
    assert diary_error(p, small_priors).startswith(
        f"{p}: column 'migraine' has values other than 0/1 at line 5 (values '7')"
    )
    p = csv_diary(tmp_path, "p0,2025-03-01,0,2,0,1010\n\n,,,,,\np0,2025-03-02,1,2,0,1010\n\n\n")
    assert load_diary(p, small_priors).report.n_rows == 2


def test_a_folder_named_like_a_diary_is_refused(tmp_path, small_priors):
    p = tmp_path / "d.csv"
    p.mkdir()
    assert diary_error(p, small_priors) == f"{p}: is not a file (a folder?); expected a diary file"


# --- warnings (issue 22, case 14) -------------------------------------------------------------


def _data(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "date": pd.to_datetime([r[1] for r in rows]),
            "migraine": [r[2] for r in rows],
        }
    )


TODAY = pd.Timestamp("2026-06-01")


def test_no_warning_for_a_plain_diary():
    rows = [("a", "2026-05-30", 0), ("a", "2026-05-31", 1), ("b", "2026-06-01", 0)]
    assert diary_warnings(_data(rows), "csv", TODAY) == ()


def test_future_dates_an_outcome_that_never_varies_and_one_user_are_warned_of():
    rows = [("a", "2026-05-31", 1), ("a", "2026-06-02", 1), ("a", "2030-01-01", 1)]
    assert diary_warnings(_data(rows), "csv", TODAY) == (
        "2 row(s) dated after today (2026-06-01), at line 3, line 4 (e.g. user 'a' on "
        "2026-06-02): a date typed wrongly?",
        "migraine is 1 on every row: with no contrast between attack and attack-free days, the "
        "weights are learned from the priors alone",
        "one user only ('a'): how much users differ (tau) cannot be learned from one user, so "
        "it stays at its prior",
    )


def test_an_outcome_of_0_on_every_row_is_warned_of():
    rows = [("a", "2026-05-30", 0), ("b", "2026-05-30", 0)]
    (warning,) = diary_warnings(_data(rows), "frame", TODAY)
    assert warning.startswith("migraine is 0 on every row:")


def test_load_diary_reports_the_warnings(tmp_path, small_priors):
    p = csv_diary(tmp_path, "p0,2999-03-01,0,2,0,1010\np0,2025-03-02,0,2,0,1010\n")
    assert load_diary(p, small_priors).report.warnings == (
        f"1 row(s) dated after today ({pd.Timestamp.today():%Y-%m-%d}), at line 2 (e.g. user "
        "'p0' on 2999-03-01): a date typed wrongly?",
        "migraine is 0 on every row: with no contrast between attack and attack-free days, the "
        "weights are learned from the priors alone",
        "one user only ('p0'): how much users differ (tau) cannot be learned from one user, so "
        "it stays at its prior",
    )


# --- non-finite numbers in a priors file (issue 22, case 5) ---------------------------------


FINITE = (
    "not a finite number; give a finite number (JSON has no NaN or Infinity, and a number beyond "
    "1.8e308 reads as infinite)"
)


@pytest.mark.parametrize(
    ("literal", "shown"),
    [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ("1e999", "inf")],
)
@pytest.mark.parametrize(
    ("place", "where"),
    [
        (
            ("variables", 0, "log_odds_prior", "sd"),
            "feature 'screen_hours' (variables[0]), field 'log_odds_prior.sd'",
        ),
        (("variables", 1, "levels", 1), "feature 'chocolate' (variables[1]), field 'levels.1'"),
        (
            ("variables", 2, "migraine_impact_pattern", 0),
            "feature 'pressure_drop' (variables[2]), field 'migraine_impact_pattern.0'",
        ),
        (
            ("variables", 1, "weight_prior"),
            "feature 'chocolate' (variables[1]), field 'weight_prior'",
        ),
        (("intercept", "base_rate"), "field 'intercept.base_rate'"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(tmp_path, literal, shown, place, where):
    doc = small_priors_doc()
    target = doc
    for key in place[:-1]:
        target = target[key]
    target[place[-1]] = "@@"  # replaced by the bare literal: json.dumps would write NaN itself
    p = tmp_path / "p.json"
    p.write_text(json.dumps(doc).replace('"@@"', literal))
    with pytest.raises(PriorsError) as info:
        load_priors(p)
    assert str(info.value) == f"{p}: {where}: got {shown}, {FINITE}"


def test_finite_extremes_are_still_numbers(tmp_path):
    doc = small_priors_doc()
    doc["variables"][0]["log_odds_prior"]["sd"] = 1e9
    assert load_priors(write_priors(tmp_path, doc)).features[0].prior.sd == 1e9


def test_the_id_pattern_is_anchored():
    # fullmatch and the service's regex both need the anchors; a trailing newline is no id
    assert re.fullmatch(USER_ID_PATTERN, "a\n") is None
