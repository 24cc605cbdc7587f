"""Markdown table of a fit-speed results file: ``python -m benchmarks.table [results.json]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = [
    ("size", "size", "{}"),
    ("rows", "rows", "{:,}"),
    ("backend", "backend", "{}"),
    ("wall_s", "wall s", "{:.0f}"),
    ("pilot_s", "pilot s", "{:.0f}"),
    ("sampling_s", "sampling s", "{:.0f}"),
    ("min_ess_bulk", "min bulk ESS", "{:.0f}"),
    ("min_ess_tail", "min tail ESS", "{:.0f}"),
    ("ess_bulk_per_s", "bulk ESS / s", "{:.2f}"),
    ("max_rhat", "max R-hat", "{:.3f}"),
    ("divergences", "div.", "{}"),
    ("leapfrog_steps", "leapfrog steps", "{:,}"),
    ("grad_numba_ms", "grad ms (numba)", "{:.3f}"),
    ("grad_c_ms", "grad ms (C)", "{:.3f}"),
    ("grad_jax_ms", "grad ms (JAX)", "{:.3f}"),
    ("gradient_floor_s", "gradient floor s", "{:.1f}"),
    ("wall_over_floor", "wall / floor", "{:.1f}"),
]


def markdown(doc: dict) -> str:
    """One row per run, in the file's order."""
    lines = [
        "| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for run in doc["runs"]:
        cells = [fmt.format(run[key]) for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results.json")
    print(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
