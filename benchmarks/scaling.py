"""Fit time and peak memory against rows: ``python -m benchmarks.scaling [--users 10 25 ...]``.

Cohorts of ``users x 1000 days x 12 features`` (``hbm.model.simulation``, heterogeneity 0.5,
seed 7),
from 10 users (10,000 rows) to 500 (500,000 rows); with ``--days 100 250 ...`` the rows grow by
days instead, for a fixed number of users (``--fixed-users``, 100), so that the number of
parameters stays the same while the rows grow. Every fit uses the same short sampler, 2 chains
x 300 tune + 300 draws, so that the sweep stays within half an hour on 2 cores (6 minutes here):
the question is how the cost grows with rows, not how good one fit is. Each fit runs in its own
process so that its peak resident memory can be read. The slope is the least-squares slope of
log(wall time) on log(rows): 1 is linear.

Writes ``benchmarks/scaling.json`` and ``benchmarks/scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DAYS = 1000
FEATURES = 12
USERS = (10, 25, 50, 100, 250, 500)
CHAINS, TUNE, DRAWS = 2, 300, 300


def fit_once(users: int, days: int = DAYS) -> dict[str, Any]:
    """One fit of a ``users x days x FEATURES`` cohort with the sweep's sampler settings."""
    from benchmarks.fit_speed import SEED, size_priors
    from hbm.data.exposures import exposures
    from hbm.inference.fitting import SamplerConfig, fit
    from hbm.model.simulation import SimulationConfig, simulate

    priors = size_priors(FEATURES)
    cohort = simulate(
        priors, SimulationConfig(n_users=users, n_days=days, heterogeneity=0.5, seed=SEED)
    )
    design = exposures(cohort.diary, priors)
    cfg = SamplerConfig(chains=CHAINS, tune=TUNE, draws=DRAWS, seed=SEED, progressbar=False)
    t0 = time.perf_counter()
    result = fit(design, priors, cfg)
    wall = time.perf_counter() - t0
    return {
        "users": users,
        "days": days,
        "rows": design.n_obs,
        "wall_s": wall,
        "compile_s": result.timings.get("compile_s", 0.0),
        # above hbm.inference.pilot.PILOT_MAX_USERS users the pilot is a model of its own,
        # compiled apart
        "pilot_compile_s": result.timings.get("pilot_compile_s", 0.0),
        "pilot_s": result.timings.get("pilot_s", 0.0),
        "sampling_s": result.timings["sampling_s"],
        "min_ess_bulk": result.diagnostics.min_ess_bulk,
        "max_rhat": result.diagnostics.max_rhat,
        "leapfrog_steps": int(result.tree["sample_stats"]["n_steps"].sum()),
        # pilot, warm-up and draws, all chains: whether a phase takes more steps as users grow
        "gradient_evaluations": dict(result.leapfrog_steps),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def cohorts(users: list[int], days: list[int] | None, fixed_users: int) -> list[tuple[int, int]]:
    """``(users, days)`` of each fit: users x ``DAYS``, or ``fixed_users`` x each of ``days``."""
    if days:
        return [(fixed_users, d) for d in days]
    return [(u, DAYS) for u in users]


def slope(rows: np.ndarray, seconds: np.ndarray) -> float:
    """Least-squares slope of log(seconds) on log(rows)."""
    return float(np.polyfit(np.log(rows), np.log(seconds), 1)[0])


def plot(runs: list[dict[str, Any]], fitted: float) -> bytes:
    """Wall time and peak memory against rows, log-log, as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.array([r["rows"] for r in runs], dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.loglog(rows, [r["wall_s"] for r in runs], "o-", label="wall (pilot + fit)")
    ax1.loglog(rows, [r["sampling_s"] for r in runs], "s--", label="sampling")
    ref = runs[0]["wall_s"] * rows / rows[0]
    ax1.loglog(rows, ref, ":", color="grey", label="linear from the smallest")
    ax1.set(xlabel="rows (users x days)", ylabel="seconds", title=f"fit time, slope {fitted:.2f}")
    ax1.legend()
    ax2.loglog(rows, [r["peak_rss_mib"] for r in runs], "o-")
    ax2.set(xlabel="rows (users x days)", ylabel="MiB", title="peak resident memory")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--users", nargs="+", type=int, default=list(USERS))
    parser.add_argument(
        "--days", nargs="+", type=int, help=f"grow the days instead (default {DAYS} for all)"
    )
    parser.add_argument("--fixed-users", type=int, default=100, help="users when --days is given")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/scaling.json"))
    parser.add_argument("--one", type=int, nargs=2, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(fit_once(*args.one)))
        return 0
    from hbm.results.io import write_bytes, write_json

    runs = []
    for users, days in cohorts(args.users, args.days, args.fixed_users):
        print(f"{users} users x {days} days ...", file=sys.stderr, flush=True)
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.scaling", "--one", str(users), str(days)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            sys.stderr.write(child.stderr)
            return child.returncode
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    rows = np.array([r["rows"] for r in runs], dtype=float)
    doc = {
        "command": "python -m benchmarks.scaling " + " ".join(argv or sys.argv[1:]),
        "settings": {
            "axis": "days" if args.days else "users",
            "days": args.days or DAYS,
            "users": args.fixed_users if args.days else args.users,
            "features": FEATURES,
            "chains": CHAINS,
            "tune": TUNE,
            "draws": DRAWS,
        },
        "runs": runs,
        "slope_wall": slope(rows, np.array([r["wall_s"] for r in runs])) if len(runs) > 1 else None,
        "slope_sampling": slope(rows, np.array([r["sampling_s"] for r in runs]))
        if len(runs) > 1
        else None,
    }
    write_json(args.out, doc)
    if len(runs) > 1:
        write_bytes(args.out.with_suffix(".png"), plot(runs, doc["slope_wall"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
