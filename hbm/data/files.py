"""Read a diary file into a table of raw values: CSV (UTF-8, plain or gzip-compressed) or Parquet.

A file that is not what its name says raises a ``DiaryError`` that says what it looks like
instead (gzip bytes in a ``.csv``, a ZIP workbook, UTF-16 or Latin-1 text) and what to do, never
a bare decoding error. CSV text is read whole (diaries are small) so that a bad byte can be
named by its line.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from pathlib import Path

import pandas as pd

from hbm.errors import DiaryError

#: The diary file names ``hbm`` reads, by how they end (``.csv.gz``: gzip-compressed CSV).
DIARY_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")

#: The first bytes of file kinds a diary is mistaken for, and what to say about each.
_MAGIC = (
    (
        b"\x1f\x8b",
        "is gzip-compressed; name it .csv.gz (hbm reads gzip-compressed CSV) or decompress it",
    ),
    (b"PK\x03\x04", "is a ZIP archive (an Excel .xlsx workbook?), not CSV text; save it as CSV"),
    (b"PAR1", "is a Parquet file; name it .parquet"),
    (b"\xff\xfe", "is UTF-16 text; save it as UTF-8"),
    (b"\xfe\xff", "is UTF-16 text; save it as UTF-8"),
)


def diary_suffix(path: str | Path) -> str:
    """How a diary's file name ends, lower case (``.csv``, ``.csv.gz``, ``.parquet``, ``.pq``);
    a ``DiaryError`` for any other name."""
    name = Path(path).name.lower()
    for suffix in sorted(DIARY_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    shown = "".join(Path(path).suffixes[-2:]) or "(none)"
    raise DiaryError(
        f"{path}: unknown diary format '{shown}'; expected one of {', '.join(DIARY_SUFFIXES)}"
    )


def _csv_bytes(p: Path, suffix: str) -> bytes:
    """The CSV bytes of a ``.csv`` or ``.csv.gz`` file (decompressed), checked for a wrong kind."""
    raw = p.read_bytes()
    if suffix == ".csv.gz":
        if not raw.startswith(b"\x1f\x8b"):
            raise DiaryError(f"{p}: is not gzip-compressed; name it .csv")
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DiaryError(f"{p}: cannot decompress ({exc}); the file is damaged") from None
    for magic, what in _MAGIC:
        if raw.startswith(magic):
            raise DiaryError(f"{p}: {what}")
    return raw


def _text(p: Path, data: bytes) -> str:
    """UTF-8 text (a leading byte-order mark dropped); a bad byte or a NUL named by its line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DiaryError(
            f"{p}: not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} (a Latin-1 or "
            "Windows export?); save the diary as UTF-8"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DiaryError(f"{p}: a NUL byte at line {line}; a diary is CSV text")
    return text


def _csv_frame(p: Path, text: str) -> pd.DataFrame:
    """The CSV as strings; the index is each row's line number minus 2 (the header is line 1),
    so that rows after a blank line are still named by their own line. Rows with no value at all
    (blank lines, a spreadsheet's trailing ``,,,`` rows) are left out."""
    if not text.strip():
        raise DiaryError(f"{p}: the file is empty; a diary has a header line and one row per day")
    header = next(csv.reader(io.StringIO(text)), [])
    # pandas renames a repeated header to 'name.1'; refuse it before it can hide.
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DiaryError(f"{p}: column(s) {repeated} appear more than once in the header")
    # Strings first: numbers are parsed column by column so that a bad cell can be named.
    frame = pd.read_csv(
        io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""], skip_blank_lines=False
    )
    return frame[frame.notna().any(axis=1)]


def read_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """Read a CSV, gzip-compressed CSV or Parquet diary as raw values.

    Returns
    -------
    tuple[pandas.DataFrame, str]
        The frame and its row numbering: ``"csv"`` (row ``i`` is line ``i + 2``) or
        ``"parquet"`` (row ``i``).

    Raises
    ------
    DiaryError
        For an unknown name, a missing file or folder, a file of another kind than its name says,
        text that is not UTF-8, or a table that cannot be parsed; naming the file.
    """
    p = Path(path)
    suffix = diary_suffix(p)
    if not p.exists():
        raise DiaryError(f"{path}: diary file not found")
    if not p.is_file():
        raise DiaryError(f"{path}: is not a file (a folder?); expected a diary file")
    try:
        if suffix in (".csv", ".csv.gz"):
            return _csv_frame(p, _text(p, _csv_bytes(p, suffix))), "csv"
        with p.open("rb") as fh:
            if fh.read(4) != b"PAR1":
                raise DiaryError(f"{path}: is not a Parquet file (no PAR1 header)")
        return pd.read_parquet(p), "parquet"
    except (OSError, ValueError) as exc:
        raise DiaryError(f"{path}: cannot read diary ({exc})") from None
