"""Rows of a diary in messages and checks that read them: where a row is (line or row number),
an id quoted safely, the one id rule, and the warnings about a valid diary."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from hbm.defaults import USER_ID_PATTERN, USER_ID_RULE
from hbm.errors import DiaryError

SHOW = 5  # offending rows quoted in an error message


def places(kind: str, index: Sequence[int] | pd.Index) -> str:
    """Quote the first offending rows in the file's own numbering."""
    idx = list(index)
    if kind == "csv":  # header is line 1
        shown = ", ".join(f"line {i + 2}" for i in idx[:SHOW])
    else:
        shown = ", ".join(f"row {i}" for i in idx[:SHOW])
    more = f" and {len(idx) - SHOW} more" if len(idx) > SHOW else ""
    return shown + more


def shown_id(user_id: str) -> str:
    """An id quoted in a message: ``repr`` shows invisible characters; a long one is cut."""
    if len(user_id) <= 40:
        return repr(user_id)
    return f"{user_id[:20]!r}... ({len(user_id)} characters)"


def check_user_ids(user: pd.Series, source: str, kind: str) -> None:
    """A ``DiaryError`` naming the first rows whose (stripped) id breaks ``USER_ID_PATTERN``."""
    bad = ~user.str.fullmatch(USER_ID_PATTERN)
    if bad.any():
        examples = ", ".join(shown_id(v) for v in user[bad].drop_duplicates().head(3))
        raise DiaryError(
            f"{source}: column 'user_id' has ids outside the id rule at "
            f"{places(kind, user.index[bad])} (ids {examples}); a user id is {USER_ID_RULE} "
            "(data/README.md)"
        )


def diary_warnings(
    data: pd.DataFrame, kind: str = "frame", today: pd.Timestamp | None = None
) -> tuple[str, ...]:
    """Warnings about a valid diary's rows (before sorting, so that rows keep their numbering):
    days after ``today`` (default: the current date), an outcome that never varies, one user."""
    today = pd.Timestamp.today().normalize() if today is None else today
    out = []
    future = data["date"] > today
    if future.any():
        first = data[future].iloc[0]
        out.append(
            f"{int(future.sum())} row(s) dated after today ({today:%Y-%m-%d}), at "
            f"{places(kind, data.index[future])} (e.g. user '{first['user_id']}' on "
            f"{first['date']:%Y-%m-%d}): a date typed wrongly?"
        )
    attacks = int(data["migraine"].sum())
    if attacks in (0, len(data)):
        out.append(
            f"migraine is {int(attacks > 0)} on every row: with no contrast between attack and "
            "attack-free days, the weights are learned from the priors alone"
        )
    users = pd.unique(data["user_id"])
    if len(users) == 1:
        out.append(
            f"one user only ('{users[0]}'): how much users differ (tau) cannot be learned from "
            "one user, so it stays at its prior"
        )
    return tuple(out)
