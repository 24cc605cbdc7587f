"""Issue 21's acceptance cohorts: does the default fit make honest trigger calls on diaries that
break the model the way real ones do?

For each seed: ``hbm simulate`` a cohort (50 users x 365 days, heterogeneity 0.5, clustering 1.5
with a between-user spread 0.3, premonitory symptoms on fatigue and neck pain, 10% of days missing
in runs), then ``hbm fit`` it with the defaults, both as the processes a user runs, and score the
run's weights against the truth file (``hbm.evaluation.discovery.discovery_table``): the gate,
coverage of the 90% intervals of causal weights (every trigger feature that is not premonitory),
the realized false-discovery proportion of each rule's trigger/protector calls, and power at odds
ratio >= 2 of the FDR rule (``class``) beside the interval rule (``interval_class``).

    python -m benchmarks.honest_triggers --seeds 1 2 3 --out reports/honest_triggers.json
    python -m benchmarks.honest_triggers --plain --seeds 1 2 3 --out reports/honest_plain.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hbm.evaluation.discovery import discovery_table, true_weights

PLAIN = ["--users", "50", "--days", "365", "--heterogeneity", "0.5"]
SIMULATE = [
    *PLAIN, "--clustering", "1.5", "--clustering-spread", "0.3",
    "--premonitory", "fatigue,neck_pain", "--missing-days", "0.1",
]  # fmt: skip


def _hbm(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hbm.app.main", *args], check=True)
    return time.perf_counter() - t0


def one_seed(seed: int, work: Path, simulate: list[str]) -> dict[str, Any]:
    """Simulate (``hbm simulate`` flags ``simulate``), fit and score one cohort."""
    diary = work / f"cohort-{seed}.csv"
    run = work / f"run-{seed}"
    _hbm("simulate", *simulate, "--seed", str(seed), "--out", str(diary))
    wall = _hbm("fit", str(diary), "--out", str(run), "--no-progress")
    truth = json.loads(diary.with_suffix(".truth.json").read_text())
    weights = pd.read_csv(run / "weights.csv")
    table = discovery_table(weights, truth).set_index("kind")
    true = true_weights(weights, truth)
    causal = (weights["role"] == "trigger").to_numpy() & np.array(
        [truth["kinds"].get(f, "causal") == "causal" for f in weights["feature"]]
    )
    covered = (weights["ci_lb"].to_numpy() <= true) & (true <= weights["ci_ub"].to_numpy())
    run_info = json.loads((run / "run.json").read_text())
    population = pd.read_csv(run / "population.csv").set_index("feature")
    c = population.loc["attack_yesterday"]
    return {
        "seed": seed,
        "fit_wall_s": round(wall, 1),
        "reliable": run_info["reliable"],
        "reasons": run_info["reliability_reasons"],
        "coverage_causal": float(covered[causal].mean()),
        "n_causal_cells": int(causal.sum()),
        "fdr_rule": {
            "calls": int(table.loc["all", "class_calls"]),
            "false": int(table.loc["all", "class_false_calls"]),
            "fdp": float(table.loc["all", "class_fdp"]),
            "power_or2": float(table.loc["all", "class_power"]),
            "expected_fdr": run_info["trigger_calls"]["expected_fdr"],
            "premonitory_trigger_calls": int(table.loc["premonitory", "class_trigger_calls"]),
        },
        "interval_rule": {
            "calls": int(table.loc["all", "interval_class_calls"]),
            "false": int(table.loc["all", "interval_class_false_calls"]),
            "fdp": float(table.loc["all", "interval_class_fdp"]),
            "power_or2": float(table.loc["all", "interval_class_power"]),
            "premonitory_trigger_calls": int(
                table.loc["premonitory", "interval_class_trigger_calls"]
            ),
        },
        "n_or2_cells": int(table.loc["all", "n_or2"]),
        "clustering_mu": [float(c["mu_mean"]), float(c["mu_ci_lb"]), float(c["mu_ci_ub"])],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="folder for cohorts and runs")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="the cohort without clustering, premonitory symptoms or missing days",
    )
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="hbm-honest-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.seeds:
        results.append(one_seed(seed, work, PLAIN if args.plain else SIMULATE))
        print(json.dumps(results[-1]), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
