"""``hbm update`` against a full refit: speed per user and interval agreement, on fresh cohorts.

    python -m benchmarks.update_accuracy --seeds 101 202 303 [--out FILE] [--keep DIR]

Per seed: ``hbm simulate`` draws 71 users x 395 days (the shipped priors, heterogeneity 0.5).
The cohort is users 1-50, days 1-365, fitted with ``hbm fit`` (defaults). Then

* new users: users 51-70 with their first 90 days go through ``hbm update`` (20 users; the
  per-user seconds come from ``update_users.csv``: the numerical work, without the imports);
  the cohort plus user 51 is refitted, and user 51's 90% interval endpoints (intercept and every
  weight) are compared with the update's, in posterior SDs of the refit;
* a known user: user 1's days 366-395 go through ``hbm update``; the cohort with user 1's 395
  days is refitted and compared likewise.

A refit's own endpoints carry Monte Carlo error (4 x 1000 draws: about 0.03-0.05 SD), so an
agreement within 0.1 SD is close to what two refits with other seeds give each other.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.command_wall import HBM, REPO, _env, timed

CI = 0.9


def _hbm(*args: str) -> float:
    wall, code, _, tail = timed([*HBM, *args], _env(REPO), REPO)
    if code not in (0, 3):
        raise SystemExit(f"hbm {' '.join(args)} exited {code}:\n{tail}")
    return wall


def _endpoints(run: Path, user: str) -> tuple[np.ndarray, np.ndarray]:
    """The user's 5% and 95% quantiles and SDs of (a, w...)."""
    from hbm.results import io

    post = io.load_fit(run / io.FIT_FILE)["posterior"]
    a = post["a"].sel(user=user).values.reshape(-1, 1)
    w = post["w"].sel(user=user).values.reshape(-1, post.sizes["feature"])
    beta = np.concatenate([a, w], axis=1).astype(float)
    q = np.quantile(beta, [(1 - CI) / 2, 1 - (1 - CI) / 2], axis=0)
    return q, beta.std(0)


def _agreement(updated: Path, refit: Path, user: str) -> dict[str, float]:
    q_up, _ = _endpoints(updated, user)
    q_ref, sd = _endpoints(refit, user)
    diff = np.abs(q_up - q_ref) / sd  # (2 endpoints, coefficients)
    per_coef = diff.max(0)
    return {
        "median_over_coefficients_sd": float(np.median(per_coef)),
        "worst_sd": float(per_coef.max()),
        "median_lower_sd": float(np.median(diff[0])),
        "median_upper_sd": float(np.median(diff[1])),
    }


def one_seed(seed: int, work: Path) -> dict[str, Any]:
    sim = work / "sim.csv"
    _hbm(
        "simulate",
        "--users",
        "71",
        "--days",
        "395",
        "--heterogeneity",
        "0.5",
        "--seed",
        str(seed),
        "--out",
        str(sim),
    )
    frame = pd.read_csv(sim, dtype={"user_id": str})
    users = sorted(frame["user_id"].unique())
    day = frame.groupby("user_id").cumcount()
    cohort, new, known = users[:50], users[50:70], users[0]
    base = frame[frame["user_id"].isin(cohort) & (day < 365)]
    adds_new = frame[frame["user_id"].isin(new) & (day < 90)]
    adds_known = frame[(frame["user_id"] == known) & (day >= 365)]
    paths = {}
    for name, part in {
        "cohort": base,
        "new": adds_new,
        "known": adds_known,
        "refit_new": pd.concat([base, adds_new[adds_new["user_id"] == new[0]]]),
        "refit_known": pd.concat([base, adds_known]),
    }.items():
        paths[name] = work / f"{name}.csv"
        part.to_csv(paths[name], index=False)
    out: dict[str, Any] = {"seed": seed}
    out["fit_wall_s"] = _hbm(
        "fit", str(paths["cohort"]), "--out", str(work / "run"), "--no-progress"
    )
    out["update_new_wall_s"] = _hbm(
        "update", str(work / "run"), str(paths["new"]), "--out", str(work / "up_new")
    )
    out["update_known_wall_s"] = _hbm(
        "update", str(work / "run"), str(paths["known"]), "--out", str(work / "up_known")
    )
    table = pd.read_csv(work / "up_new" / "update_users.csv")
    out["per_user_s"] = {
        "p50": float(table["seconds"].median()),
        "p95": float(table["seconds"].quantile(0.95)),
        "max": float(table["seconds"].max()),
        "first": float(table["seconds"].iloc[0]),
    }
    out["max_khat_new"] = float(table["khat"].max())
    for name in ("refit_new", "refit_known"):
        out[f"{name}_wall_s"] = _hbm(
            "fit", str(paths[name]), "--out", str(work / name), "--no-progress"
        )
    out["new_user"] = {"user": new[0], **_agreement(work / "up_new", work / "refit_new", new[0])}
    out["known_user"] = {
        "user": known,
        **_agreement(work / "up_known", work / "refit_known", known),
    }
    for name in ("run", "refit_new", "refit_known"):
        out[f"{name}_reliable"] = json.loads((work / name / "run.json").read_text())["reliable"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 202, 303])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the folders here")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        if args.keep is not None:
            work = args.keep / f"seed{seed}"
            work.mkdir(parents=True, exist_ok=True)
            rows.append(one_seed(seed, work))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(one_seed(seed, Path(tmp)))
        print(json.dumps(rows[-1]), flush=True)
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                {
                    "command": "python -m benchmarks.update_accuracy --seeds "
                    + " ".join(str(s) for s in args.seeds),
                    "seeds": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
