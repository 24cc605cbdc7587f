"""The report's HTML pieces: a scrolling table, a number, an embedded image, settings as rows."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from typing import Any

import pandas as pd


def html_table(frame: pd.DataFrame, table_id: str, digits: int = 3, escape: bool = True) -> str:
    # the box scrolls, not the page: the population table alone is wider than a laptop screen
    inner = frame.to_html(
        index=False,
        escape=escape,
        table_id=table_id,
        float_format=lambda v: f"{v:.{digits}f}",
        na_rep="",
        border=0,
        classes="t",
    )
    return f'<div class="scroll">{inner}</div>'


def number_text(value: float | None, spec: str) -> str:
    """A diagnostic as text: ``n/a`` for one the draws do not define (null in diagnostics.json)."""
    return "n/a" if value is None else format(value, spec)


def img_tag(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" data-name="{name}">'


def plain(value: Any) -> str:
    """A setting as a reader would write it: no JSON, floats to 4 significant digits."""
    if value is None:
        return "not set"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    return str(value)


def nested_rows(label: str, value: Any, fmt: Callable[[Any], str] = plain) -> list[tuple[str, str]]:
    """``(what, value)`` rows of a setting; a mapping gives one row per key, ``label: key``.

    Nested mappings are flattened the same way (``label: key: subkey``); an empty mapping gives
    no rows. With an empty ``label`` the rows are named by the keys alone.
    """
    if not isinstance(value, dict):
        return [(label, fmt(value))]
    rows: list[tuple[str, str]] = []
    for key, item in value.items():
        rows += nested_rows(f"{label}: {key}" if label else str(key), item, fmt)
    return rows
