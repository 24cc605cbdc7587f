"""Many fits on Dask: ``hbm sbc`` timed as a process with 1 and with 2 local workers.

    python -m benchmarks.many_fits --simulations 100 --workers 1 2 [--out FILE] [--keep DIR]

Each run is ``hbm sbc --out DIR --simulations N --workers W`` (the default model and SBC
settings), timed from process start to exit. Recorded per run: the wall time, peak memory of the
command's process, and from ``sbc.json``: the tasks' own mean seconds (inside their worker, a fit
and its ranks), the overhead per task (``workers x wall / tasks - mean task seconds``: cluster
start-up, scheduling, transfer and storing, spread over the tasks) and its share of a task. The
speed-up is the 1-worker wall over each run's. Folders of different worker counts hold the same
ranks (checked: ``sbc_ranks.csv`` byte-equal).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.command_wall import HBM, REPO, _env, timed


def run(simulations: int, workers: int, out: Path, extra: list[str]) -> dict[str, Any]:
    """One ``hbm sbc`` command: its wall, memory and ``sbc.json``'s task figures."""
    cmd = [*HBM, "sbc", "--out", str(out), "--simulations", str(simulations)]
    cmd += ["--workers", str(workers), *extra]
    wall, code, rss, tail = timed(cmd, _env(REPO), REPO)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {code}:\n{tail}")
    doc = json.loads((out / "sbc.json").read_text())
    overhead = doc["overhead_per_task_s"]
    return {
        "workers": workers,
        "simulations": simulations,
        "command_wall_s": wall,
        "peak_rss_mib": rss,
        "task_mean_s": doc["task_mean_s"],
        "overhead_per_task_s": overhead,
        "overhead_share_of_task": overhead / doc["task_mean_s"],
        "min_p_value": doc["min_p_value"],
        "where": doc["where"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--simulations", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the SBC folders here")
    parser.add_argument("sbc_args", nargs=argparse.REMAINDER, help="more `hbm sbc` arguments")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="hbm-many-fits-"))
    rows = []
    for w in args.workers:
        out = base / f"sbc-w{w}"
        rows.append(run(args.simulations, w, out, args.sbc_args))
        print(json.dumps(rows[-1]), flush=True)
    ranks = {(base / f"sbc-w{w}" / "sbc_ranks.csv").read_bytes() for w in args.workers}
    first = rows[0]["command_wall_s"]
    for row in rows:
        row["speedup_vs_first"] = first / row["command_wall_s"]
    doc = {"runs": rows, "ranks_identical": len(ranks) == 1, "sbc_args": args.sbc_args}
    print(json.dumps(doc, indent=2))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
