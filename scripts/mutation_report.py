"""Mutation score per module and a survivors report, from mutmut's results in ``mutants/``.

Run from the repository root after ``mutmut run`` (``make mutation`` does both). Survivors listed
in ``docs/mutation-accepted.txt`` (one per line: ``NAME | equivalent or left | reason``) are
reported with their reason; equivalent ones leave the denominator. Every other survivor is shown
with its diff. Exit 1 when a module's score (killed / non-equivalent mutants) is below
``--min-score``, or when a listed survivor is no longer a survivor (the list went stale).

    python scripts/mutation_report.py --out reports/mutation/survivors.md [--only PATTERN ...]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

ACCEPTED = Path("docs/mutation-accepted.txt")
#: mutmut's exit codes (mutmut.stats.status_by_exit_code); timeouts and type-check catches kill.
KILLED = {1, 3, 24, -24, 36, 37, 152, 255}
SURVIVED = {0: "survived", 5: "no tests", 33: "no tests", 35: "suspicious"}


def _accepted() -> dict[str, tuple[str, str]]:
    out = {}
    if ACCEPTED.exists():
        for n, line in enumerate(ACCEPTED.read_text().splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split("|", 2)]
            if len(parts) != 3 or parts[1] not in ("equivalent", "left"):
                sys.exit(f"{ACCEPTED}:{n}: expected 'NAME | equivalent|left | reason'")
            out[parts[0]] = (parts[1], parts[2])
    return out


def _modules() -> list[Path]:
    cfg = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]
    return [Path(p) for p in cfg["only_mutate"]]


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _diff(name: str, path: Path) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    lines = get_diff_for_mutant(name, path=path).splitlines()
    return "\n".join(ln for ln in lines if ln[:1] in "+-" and ln[:3] not in ("+++", "---"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("reports/mutation/survivors.md"))
    ap.add_argument("--only", nargs="*", default=[], help="mutant-name patterns that were run")
    ap.add_argument("--min-score", type=float, default=0.90)
    args = ap.parse_args(argv)
    accepted = _accepted()
    rows, sections, stale = [], [], []
    failed = False
    for path in _modules():
        meta = Path("mutants") / f"{path}.meta"
        if not meta.exists():
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if args.only:
            codes = {
                k: v for k, v in codes.items() if any(fnmatch.fnmatch(k, p) for p in args.only)
            }
        checked = {k: v for k, v in codes.items() if v is not None}
        if not checked:
            continue
        count = Counter(
            "killed" if v in KILLED else SURVIVED.get(v, "other") for v in checked.values()
        )
        survivors = sorted(k for k, v in checked.items() if v not in KILLED)
        equivalent = [k for k in survivors if accepted.get(k, ("",))[0] == "equivalent"]
        left = [k for k in survivors if k not in equivalent]
        denominator = len(checked) - len(equivalent)
        score = count["killed"] / denominator if denominator else 1.0
        failed |= score < args.min_score
        rows.append(
            f"| {path} | {len(codes)} | {len(checked)} | {count['killed']} | {len(survivors)} "
            f"| {len(equivalent)} | {len(left)} | {score:.1%} |"
        )
        for k in survivors:
            kind, reason = accepted.get(k, ("not yet judged", ""))
            status = SURVIVED.get(checked[k], str(checked[k]))
            why = f"{reason}\n\n" if reason else ""
            sections.append(f"### {k} ({status}; {kind})\n\n{why}```diff\n{_diff(k, path)}\n```\n")
        prefix = str(path.with_suffix("")).replace("/", ".") + "."
        stale += [k for k in accepted if k.startswith(prefix) and k in codes and k not in survivors]
    page = [
        "# Mutation testing: survivors",
        "",
        f"Score = killed / (checked - equivalent survivors); threshold {args.min_score:.0%}.",
        "",
        "| module | mutants | checked | killed | survived | equivalent | left | score |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *sections,
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text("\n".join(page) + "\n")
    tmp.replace(args.out)
    print("\n".join(page[4 : 6 + len(rows)]))
    print(f"survivors report: {args.out}")
    if stale:
        print(f"{ACCEPTED} lists mutants that are now killed: {stale}", file=sys.stderr)
    return 1 if failed or stale else 0


if __name__ == "__main__":
    sys.exit(main())
