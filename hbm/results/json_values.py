"""JSON-ready values: numbers that are not finite become ``null``, with the reason why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: Why a value is ``null`` in a JSON export, by the kind of number it was.
NULL_REASONS = {
    "nan": "not a number: the draws do not define it (too few draws or chains?)",
    "inf": "infinite: too large to represent (a weight too large to exponentiate?)",
    "-inf": "minus infinite: too large to represent",
}


def finite_or_null(obj: Any, where: str = "") -> tuple[Any, dict[str, str]]:
    """``obj`` with every number that is not finite replaced by ``None`` (JSON has no NaN or
    infinity), and the kind of each replaced number by its dotted place (``a.0.b``)."""
    if isinstance(obj, dict):
        pairs = [(k, finite_or_null(v, f"{where}{k}.")) for k, v in obj.items()]
        return {k: v for k, (v, _) in pairs}, {p: r for _, (_, n) in pairs for p, r in n.items()}
    if isinstance(obj, list | tuple):
        items = [finite_or_null(v, f"{where}{i}.") for i, v in enumerate(obj)]
        values = [v for v, _ in items]
        return (tuple(values) if isinstance(obj, tuple) else values), {
            p: r for _, n in items for p, r in n.items()
        }
    if isinstance(obj, float | np.floating) and not np.isfinite(obj):
        return None, {where.rstrip("."): str(float(obj))}
    return (obj.item() if isinstance(obj, np.generic) else obj), {}


def json_ready(obj: dict[str, Any], reasons: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A JSON object with its non-finite numbers as ``null`` and, when there are any, a
    ``null_reasons`` entry saying why each is: the reason ``reasons`` gives for the place's first
    or last key (``max_rhat``, ``per_variable.a0.max_rhat``), else ``NULL_REASONS``'."""
    clean, nulls = finite_or_null(obj)
    if not nulls:
        return dict(clean)
    given = reasons or {}
    why = {}
    for place, kind in nulls.items():
        keys = place.split(".")
        why[place] = given.get(keys[0]) or given.get(keys[-1]) or NULL_REASONS[kind]
    return {**clean, "null_reasons": why}
