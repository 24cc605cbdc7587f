"""Markdown table of a fit-speed results file: ``python -m benchmarks.table [results.json]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = [
    ("size", "size", "{}"),
    ("rows", "rows", "{:,}"),
    ("backend", "backend", "{}"),
    ("wall_s", "wall s", "{:.1f}"),
    ("compile_s", "compile s", "{:.1f}"),
    ("pilot_s", "pilot s", "{:.1f}"),
    ("sampling_s", "sampling s", "{:.1f}"),
    ("min_ess_bulk", "min bulk ESS", "{:.0f}"),
    ("min_ess_tail", "min tail ESS", "{:.0f}"),
    ("ess_bulk_per_s", "bulk ESS / s", "{:.2f}"),
    ("max_rhat", "max R-hat", "{:.3f}"),
    ("divergences", "div.", "{}"),
    ("max_treedepth_hits", "draws at max depth", "{}"),
    ("leapfrog_steps", "leapfrog steps (draws)", "{:,}"),
    ("gradient_evaluations", "gradient evaluations", "{:,}"),
    ("grad_numba_ms", "grad ms (numba)", "{:.3f}"),
    ("grad_c_ms", "grad ms (C)", "{:.3f}"),
    ("grad_jax_ms", "grad ms (JAX)", "{:.3f}"),
    ("grad_jax_4chains_ms", "grad ms (JAX, 4 chains at once)", "{:.3f}"),
    ("grad_nutpie_callback_ms", "grad ms (nutpie's callback)", "{:.3f}"),
    ("grad_numba_pointwise_ms", "grad ms (numba, row-by-row)", "{:.3f}"),
    ("grad_numba_plain_ms", "grad ms (numba, first model)", "{:.3f}"),
    ("gradient_floor_s", "gradient floor s", "{:.1f}"),
    ("wall_over_floor", "wall / floor", "{:.1f}"),
    ("callback_floor_s", "callback floor s", "{:.1f}"),
    ("wall_over_callback_floor", "wall / callback floor", "{:.2f}"),
]


#: The seed table: the columns of one run that vary with the chain seed.
SEED_VARYING = (
    "wall_s",
    "compile_s",
    "pilot_s",
    "sampling_s",
    "min_ess_bulk",
    "min_ess_tail",
    "ess_bulk_per_s",
    "max_rhat",
    "divergences",
    "max_treedepth_hits",
)
SEED_COLUMNS = [
    *COLUMNS[:1],
    COLUMNS[2],
    ("sampler_seed", "chain seed", "{}"),
    *(c for c in COLUMNS[3:] if c[0] in SEED_VARYING),
    ("reliable", "reliable", "{}"),
]


AGREEMENT = [
    ("size", "size", "{}"),
    ("backends", "backends", "{}"),
    ("parameters", "parameters", "{}"),
    ("max_abs_z", "max abs z", "{:.2f}"),
    ("worst", "worst", "{}"),
    ("share_abs_z_over_3", "share abs z > 3", "{:.4f}"),
    ("rms_z", "rms z", "{:.2f}"),
]


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if isinstance(value, list):
        value = " vs ".join(map(str, value))
    return fmt.format(value)


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> list[str]:
    lines = [
        "| " + " | ".join(title for _, title, _ in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(_cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
    return lines


ORDER = {k: i for i, k in enumerate(("tiny", "small", "medium", "large", "nutpie", "pymc"))}


def markdown(doc: dict) -> str:
    """One row per run, by size then backend; then the posterior agreement between backends."""
    runs = sorted(doc["runs"], key=lambda r: (ORDER.get(r["size"], 9), ORDER.get(r["backend"], 9)))
    lines = _table(runs, COLUMNS)
    if doc.get("agreement"):
        lines += ["", *_table(doc["agreement"], AGREEMENT)]
    if doc.get("seed_runs"):
        seeds = sorted(
            doc["seed_runs"],
            key=lambda r: (ORDER.get(r["size"], 9), ORDER.get(r["backend"], 9), r["sampler_seed"]),
        )
        lines += ["", *_table(seeds, SEED_COLUMNS)]
    return "\n".join(lines)


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results.json")
    print(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
