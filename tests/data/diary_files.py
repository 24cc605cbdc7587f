"""Diary files for the diary tests: the small priors' header, written byte for byte, and the
error a load gives."""

from __future__ import annotations

import pytest

from hbm.data.diary import load_diary
from hbm.errors import DiaryError

HEADER = "user_id,date,migraine,screen_hours,chocolate,pressure\n"


def csv_diary(tmp_path, body: str, name: str = "d.csv"):
    """A CSV diary written byte for byte: line 1 is the header, line k the (k-1)th data row."""
    p = tmp_path / name
    p.write_text(HEADER + body, encoding="utf-8")
    return p


def diary_error(path, priors, **kw) -> str:
    """The message of the ``DiaryError`` that loading ``path`` raises."""
    with pytest.raises(DiaryError) as info:
        load_diary(path, priors, **kw)
    return str(info.value)
