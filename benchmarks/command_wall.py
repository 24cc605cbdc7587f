"""What a user meets: the ``hbm fit`` command timed as a process, over many fresh cohort seeds.

    python -m benchmarks.command_wall --size medium --seeds 101 102 ... [--out FILE]
                                      [--repo PATH] [--fit-args ...]

For each seed: ``hbm simulate`` makes a cohort of the size (``benchmarks.fit_speed.SIZES``:
the first k shipped features, heterogeneity 0.5, the shipped clustering prior kept, since the
default fit has it), untimed; then ``hbm fit DIARY --priors P --out RUN --no-progress`` runs as a
process of its own and is timed from start to exit (imports, load, compile, pilot, sampling,
diagnostics and exports, the run folder written). Recorded per seed: the command's wall time,
its peak resident memory (``os.wait4``), the gate's verdict and reasons, the minimum bulk and
tail ESS and the largest R-hat (diagnostics.json), min bulk ESS per second of the command's wall,
the fit's own timings (run.json) and the size of fit.nc. The summary gives median and worst of
each, and the gate's pass rate. Nothing is tuned per seed: every seed runs the same command.

``--repo`` runs the ``hbm`` of another checkout (``python -m hbm.app.main`` there), so a
baseline and a change are measured by the same harness on the same cohorts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.fit_speed import SIZES, size_priors

REPO = Path(__file__).resolve().parents[1]


HBM = [sys.executable, "-m", "hbm.app.main"]


def _env(repo: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(repo)}


def priors_file(size: str, target: Path) -> Path:
    """The size's priors (first k shipped features) with the shipped clustering block."""
    target.write_text(size_priors(SIZES[size].features, clustering=True).document, "utf-8")
    return target


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, int, str]:
    """Wall seconds, exit code, peak RSS (MiB) of the process, and its stderr's tail."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-2000:]
    return wall, proc.returncode, int(usage.ru_maxrss // 1024), tail


def one_seed(
    size: str, seed: int, repo: Path, fit_args: list[str], work: Path, keep: Path | None = None
) -> dict[str, Any]:
    """Simulate the seed's cohort, then time ``hbm fit`` on it (module doc); with ``keep``, the
    run folder is written there (``keep/run-SEED``)."""
    s = SIZES[size]
    priors = priors_file(size, work / "priors.json")
    diary, run = work / f"diary-{seed}.csv", (keep or work) / f"run-{seed}"
    sim = [
        *HBM, "simulate", "--users", str(s.users), "--days", str(s.days),
        "--heterogeneity", "0.5", "--seed", str(seed), "--priors", str(priors), "--out", str(diary),
    ]  # fmt: skip
    subprocess.run(sim, env=_env(repo), cwd=repo, check=True, capture_output=True)
    cmd = [*HBM, "fit", str(diary), "--priors", str(priors), "--out", str(run)]
    cmd += ["--no-progress", *fit_args]
    wall, code, rss, tail = timed(cmd, _env(repo), repo)
    row: dict[str, Any] = {"seed": seed, "wall_s": round(wall, 2), "exit": code}
    row["peak_rss_mib"] = rss
    if code not in (0, 3):
        row["error"] = tail
        return row
    info = json.loads((run / "run.json").read_text())
    diag = json.loads((run / "diagnostics.json").read_text())
    row |= {
        "reliable": bool(info["reliable"]),
        "reasons": info.get("reliability_reasons", []),
        "min_ess_bulk": diag["min_ess_bulk"],
        "min_ess_tail": diag["min_ess_tail"],
        "max_rhat": diag["max_rhat"],
        "ess_per_s": round(diag["min_ess_bulk"] / wall, 2),
        "fit_nc_mb": round((run / "fit.nc").stat().st_size / 1e6, 2),
        "timings": info.get("timings", {}),
        "extension": info.get("extension"),
    }
    return row


def agree(runs_a: Path, runs_b: Path) -> list[dict[str, Any]]:
    """Per seed kept in both folders: ``benchmarks.fit_speed.agreement`` of the two fits'
    posterior means (z-scores against their Monte Carlo errors)."""
    from benchmarks.fit_speed import agreement, posterior_summary
    from hbm.results.io import load_fit

    def side(folder: Path, name: str) -> dict[str, Any]:
        tree = load_fit(folder / name / "fit.nc")
        return {"size": name, "backend": str(folder), "posterior": posterior_summary(tree)}

    out = []
    for run_a in sorted(runs_a.glob("run-*")):
        if (runs_b / run_a.name).is_dir():
            out.append(agreement(side(runs_a, run_a.name), side(runs_b, run_a.name)))
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and worst of each figure over the seeds, and the gate's pass rate."""
    ok = [r for r in rows if "reliable" in r]

    def med_worst(key: str, worst: Any) -> dict[str, float]:
        values = [float(r[key]) for r in ok]
        return {"median": statistics.median(values), "worst": worst(values)} if values else {}

    def timing(key: str) -> dict[str, float]:  # sampling: both tries
        values = [
            float(r["timings"][key]) + float(r["timings"].get(f"extension_{key}", 0.0))
            for r in ok
            if key in r["timings"]
        ]
        return {"median": statistics.median(values), "worst": max(values)} if values else {}

    return {
        "seeds": len(rows),
        "failed_commands": len(rows) - len(ok),
        "gate_passed": sum(r["reliable"] for r in ok),
        "extended": sum(bool(r.get("extension")) for r in ok),
        "wall_s": med_worst("wall_s", max),
        "ess_per_s": med_worst("ess_per_s", min),
        "min_ess_bulk": med_worst("min_ess_bulk", min),
        "max_rhat": med_worst("max_rhat", max),
        "peak_rss_mib": med_worst("peak_rss_mib", max),
        "fit_nc_mb": med_worst("fit_nc_mb", max),
        "sampling_s": timing("sampling_s"),
        "export_s": timing("export_s"),
    }


def markdown(doc: dict[str, Any]) -> str:
    """One table row per seed, then the summary line."""
    lines = [
        "| seed | wall s | gate | 2nd try | min bulk ESS | ESS/s of wall | max R-hat | "
        "sampling s | export s | fit.nc MB | peak RSS MiB |",
        "|---:|---:|:--|:--|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        if "reliable" not in r:
            lines.append(f"| {r['seed']} | {r['wall_s']} | exit {r['exit']} | | | | | | | | |")
            continue
        t = r["timings"]
        gate, second = (
            ("pass" if r["reliable"] else "FAIL"),
            ("yes" if r.get("extension") else "no"),
        )
        sampling = t.get("sampling_s", float("nan")) + t.get("extension_sampling_s", 0.0)
        lines.append(
            f"| {r['seed']} | {r['wall_s']:.1f} | {gate} | {second} | "
            f"{r['min_ess_bulk']:.0f} | {r['ess_per_s']:.1f} | {r['max_rhat']:.4f} | "
            f"{sampling:.1f} | {t.get('export_s', float('nan')):.2f} | "
            f"{r['fit_nc_mb']:.1f} | {r['peak_rss_mib']} |"
        )
    s = doc["summary"]
    lines.append(
        f"\nmedian (worst): wall {s['wall_s']['median']:.1f} s ({s['wall_s']['worst']:.1f}), "
        f"ESS/s of wall {s['ess_per_s']['median']:.1f} ({s['ess_per_s']['worst']:.1f}), "
        f"gate passed {s['gate_passed']}/{s['seeds']} ({s['extended']} after a second try)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size", choices=list(SIZES), default="medium")
    parser.add_argument("--seeds", nargs="+", type=int, default=[])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose hbm runs")
    parser.add_argument("--out", type=Path, help="JSON of every seed and the summary")
    parser.add_argument("--keep", type=Path, help="keep the run folders here (run-SEED)")
    parser.add_argument(
        "--agree",
        nargs=2,
        type=Path,
        metavar=("RUNS_A", "RUNS_B"),
        help="instead of fitting: z-scores of the posterior means of the runs kept in two "
        "folders (--keep), seed by seed",
    )
    parser.add_argument("--fit-args", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args(argv)
    if args.agree:
        print(json.dumps(agree(*args.agree), indent=1))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="hbm-wall-") as tmp:
        for seed in args.seeds:
            row = one_seed(
                args.size, seed, args.repo.resolve(), args.fit_args, Path(tmp), args.keep
            )
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "timings"}), flush=True)
    command = "python -m benchmarks.command_wall " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    doc = {"command": command, "size": args.size, "rows": rows, "summary": summary(rows)}
    if args.out is not None:
        args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
