"""Property-based (hypothesis): diaries with hostile ids, dates, values and encodings get a clear
error naming the place, or a run that fits, reports and serves; never a traceback (issue 22's
acceptance).

``test_validate_answers_every_hostile_diary`` runs in the fast suite (hundreds of diaries, no
fit). ``test_valid_hostile_diaries_fit_report_and_serve`` fits each of a few diaries that are
hostile but valid (ids of real apps at the rule's edges, gaps and years between days, values at
their range's ends, outcomes that never vary, one user, a byte-order mark, CRLF, gzip) with tiny
sampler settings, then reports and serves it; it is ``ci_stat`` (about a minute).

Both are derandomized, so a CI run is reproducible; raise ``max_examples`` (or drop
``derandomize``) to explore further.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import tempfile
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hbm.app.cli import build_parser, main
from hbm.defaults import USER_ID_PATTERN

from ..conftest import small_priors_doc, write_priors
from .run_checks import TINY_FIT, check_report, check_run_folder, check_serves

COLUMNS = ["user_id", "date", "migraine", "screen_hours", "chocolate", "pressure"]
#: The small priors' ranges (conftest), by diary column.
RANGES = {"screen_hours": (0.0, 16.0), "chocolate": (0.0, 1.0), "pressure": (900.0, 1100.0)}

valid_ids = st.from_regex(USER_ID_PATTERN, fullmatch=True)
edge_ids = st.sampled_from(
    ["a", "A", "L" * 128, "x@y.org", "a+b", "a.b_c~d-e", "123e4567-e89b-12d3-a456-426614174000"]
)
hostile_ids = st.sampled_from(
    ["../../../../x", "a b", "e/f", "a\\b", "caf\u00e9", ".", "..", "-x", "x" * 129, "", "  ",
     "a\tb", "a\nb", '"', "a,b", "\u202eevil", "NA", "nan", "0" * 300]
)  # fmt: skip
ids = st.one_of(valid_ids, edge_ids, hostile_ids, st.text(max_size=12))

iso_dates = st.dates(date(1900, 1, 1), date(2200, 12, 31)).map(date.isoformat)
hostile_dates = st.sampled_from(
    ["2025-02-30", "2025-13-01", "25-01-01", "2025/01/01", "", "0001-01-01", "9999-12-31",
     "2025-1-5", "today", "2025-01-01T10:00", " 2025-01-01 ", "2262-04-12", "1677-09-21"]
)  # fmt: skip
dates = st.one_of(iso_dates, iso_dates, hostile_dates, st.text(max_size=11))

outcomes = st.one_of(
    st.sampled_from(["0", "1"]),
    st.sampled_from(["0", "1"]),
    st.sampled_from(["2", "-1", "", "yes", "1.0", "0.5", "nan", "inf", " 1"]),
)


def _numbers(low: float, high: float, hostile: bool) -> st.SearchStrategy[str]:
    inside = st.floats(low, high).map(repr)
    edges = st.sampled_from([repr(low), repr(high), f"{low:g}", f"{high:g}"])
    if not hostile:
        return st.one_of(inside, edges)
    bad = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["", "NA", "1e309", "-1e309", "-0", " 5 ", "0x10", "1,5", "1_0", "nan"]),
        st.text(max_size=6),
    )
    return st.one_of(inside, edges, bad)


#: What a diary is hostile in: one kind of field (the others valid) or all of them at once.
FOCUS = ("user_id", "date", "migraine", "values", "encoding", "all")


def _rows(focus: str) -> st.SearchStrategy[dict[str, str]]:
    def pick(field: str, hostile: st.SearchStrategy[str], valid: st.SearchStrategy[str]):
        return hostile if focus in (field, "all") else valid

    return st.fixed_dictionaries(
        {
            "user_id": pick("user_id", ids, st.one_of(edge_ids, valid_ids)),
            "date": pick("date", dates, iso_dates),
            "migraine": pick("migraine", outcomes, st.sampled_from(["0", "1"])),
            **{
                column: _numbers(*bounds, hostile=focus in ("values", "all"))
                for column, bounds in RANGES.items()
            },
        }
    )


ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "latin-1", "crlf", "gzip in .csv", "gzip .csv.gz")


def _csv_text(rows: list[dict[str, str]], columns: list[str], lineterminator: str = "\n") -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator=lineterminator)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _write(folder: Path, text: str, encoding: str) -> Path:
    """The diary's text as a file, in one of ``ENCODINGS``."""
    if encoding == "gzip .csv.gz":
        path = folder / "diary.csv.gz"
        path.write_bytes(gzip.compress(text.encode()))
        return path
    path = folder / "diary.csv"
    if encoding == "gzip in .csv":
        path.write_bytes(gzip.compress(text.encode()))
    elif encoding == "crlf":
        path.write_bytes(text.replace("\n", "\r\n").encode())
    else:
        path.write_bytes(text.encode(encoding, errors="replace"))
    return path


@st.composite
def hostile_diaries(draw: st.DrawFn) -> tuple[str, str]:
    """(CSV text, encoding): rows hostile in one kind of field (``FOCUS``); now and then a
    column missing or repeated, a ragged line, blank lines."""
    focus = draw(st.sampled_from(FOCUS))
    rows = draw(st.lists(_rows(focus), min_size=1, max_size=8))
    columns = list(COLUMNS)
    shape = draw(st.sampled_from(["plain"] * 6 + ["drop column", "repeat column", "ragged"]))
    if shape == "drop column":
        columns.remove(draw(st.sampled_from(COLUMNS)))
    text = _csv_text(rows, columns)
    if shape == "repeat column":
        header, _, body = text.partition("\n")
        text = f"{header},{draw(st.sampled_from(COLUMNS))}\n{body}"
    elif shape == "ragged":
        text += "p0,2025-01-01,0\n"
    if draw(st.booleans()):
        text = text.replace("\n", "\n\n", 1)
    hostile_encoding = focus in ("encoding", "all")
    return text, draw(st.sampled_from(ENCODINGS if hostile_encoding else ENCODINGS[:2]))


@pytest.fixture(scope="module")
def priors_file(tmp_path_factory) -> Path:
    # the parser imports the baselines and so PyMC, which raises the recursion limit: done once
    # here, not inside hypothesis's first example (it warns of a limit changed under it)
    build_parser()
    return write_priors(tmp_path_factory.mktemp("priors"), small_priors_doc())


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(diary=hostile_diaries())
def test_validate_answers_every_hostile_diary(priors_file, capsys, diary):
    text, encoding = diary
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), text, encoding)
        capsys.readouterr()
        code = main(["validate", str(path), "--priors", str(priors_file)])
        out, err = capsys.readouterr()
    if code == 0:
        assert out.endswith("valid\n")
        user_ids = [
            r["user_id"].strip() for r in csv.DictReader(io.StringIO(text)) if any(r.values())
        ]
        assert all(re.fullmatch(USER_ID_PATTERN, u) for u in user_ids)
    else:
        # one line, naming the file first and then the place in it
        assert code == 2, err
        assert err.count("\n") == 1 and err.startswith(f"error: {path}: "), err
        assert len(err) < 2000, "an error quotes a few offending values, not the whole file"


# --- fits ------------------------------------------------------------------------------------


@st.composite
def valid_hostile_diaries(draw: st.DrawFn) -> tuple[str, str]:
    """Diaries every rule accepts, at the rules' edges: 1-3 users with ids of real apps, 3-8
    days each with gaps of up to ten years, rows in any order, values at their range's ends."""
    users = draw(st.lists(st.one_of(edge_ids, valid_ids), min_size=1, max_size=3, unique=True))
    rows = []
    for user in users:
        ordinals = draw(
            st.lists(
                st.integers(date(1950, 1, 1).toordinal(), date(2025, 12, 31).toordinal()),
                min_size=3,
                max_size=8,
                unique=True,
            )
        )
        for ordinal in ordinals:
            rows.append(
                {
                    "user_id": user,
                    "date": date.fromordinal(ordinal).isoformat(),
                    "migraine": draw(st.sampled_from(["0", "1"])),
                    **{
                        c: draw(
                            st.one_of(
                                st.sampled_from([repr(lo), repr(hi)]), st.floats(lo, hi).map(repr)
                            )
                        )
                        for c, (lo, hi) in RANGES.items()
                    },
                }
            )
    rows = draw(st.permutations(rows))
    all_same = draw(st.sampled_from([None, "0", "1"]))
    if all_same is not None:
        rows = [{**r, "migraine": all_same} for r in rows]
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "crlf", "gzip .csv.gz"]))
    return _csv_text(rows, COLUMNS), encoding


@pytest.mark.ci_stat
@pytest.mark.fits
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each try is a fit (seconds)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(diary=valid_hostile_diaries())
def test_valid_hostile_diaries_fit_report_and_serve(priors_file, capsys, diary):
    text, encoding = diary
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), text, encoding)
        assert main(["validate", str(path), "--priors", str(priors_file)]) == 0
        run = Path(folder) / "run"
        args = ["fit", str(path), "--priors", str(priors_file), "--out", str(run)]
        assert main([*args, *TINY_FIT]) == 0, capsys.readouterr().err
        check_run_folder(run)
        check_serves(run)
        check_report(run)
