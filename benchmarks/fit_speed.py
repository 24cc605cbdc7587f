"""Fit-speed benchmark: every NUTS backend hbm offers, on simulated cohorts of three sizes.

    python -m benchmarks.fit_speed [--sizes small medium large] [--backends nutpie pymc numpyro]
                                   [--out benchmarks/results.json]

Sizes (users x days x features): small 20 x 200 x 6, medium 50 x 1000 x 12, large 100 x 1000 x
24; ``tiny`` (6 x 40 x 3) is the smoke test's. Features are the first k of the shipped priors;
large adds five copies of shipped features lagged by two more days (keys ``<key>_lag2``), since the
shipped file has 19. Cohorts come from ``hbm.simulate`` (heterogeneity 0.5, seed 7).

Per run: wall time of ``hbm.fit`` (pilot, compilation and sampling included), the sampling part,
minimum bulk and tail ESS over all parameters (``a0, sigma_a, mu, tau, a, w``), ESS per second of
wall time, maximum R-hat, divergences, leapfrog steps, and the time of one log-density-and-gradient
evaluation of the model with PyTensor's numba (nutpie's), C (``cvm`` linker) and JAX backends
(median of repeated calls at the initial point, non-centred form: the graph has the same size for
every centring). The gradient floor is ``numba gradient time x leapfrog steps / chains run in
parallel``. ``--gradients-only`` re-measures the gradient columns of the stored runs of the given
sizes without refitting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hbm.features import exposures
from hbm.fit import BACKENDS, SamplerConfig, available_cores, fit, package_versions
from hbm.model import build_model, choose_centring
from hbm.priors import Priors, default_priors_path, parse_priors
from hbm.simulate import SimulationConfig, simulate

SEED = 7


@dataclass(frozen=True)
class Size:
    users: int
    days: int
    features: int


SIZES = {
    "tiny": Size(6, 40, 3),
    "small": Size(20, 200, 6),
    "medium": Size(50, 1000, 12),
    "large": Size(100, 1000, 24),
}


def size_priors(n_features: int) -> Priors:
    """The first ``n_features`` shipped features; beyond 19, lagged copies (module doc)."""
    doc = json.loads(default_priors_path().read_text(encoding="utf-8"))
    variables = doc["variables"]
    extra = []
    for v in variables[: max(0, n_features - len(variables))]:
        copy = {**v, "key": f"{v['key']}_lag2", "lag_days": int(v.get("lag_days", 0)) + 2}
        copy["name"] = f"{v['name']} (2 days earlier)"
        copy.pop("simulation", None)
        if "column" not in copy:
            copy["column"] = v["key"]
        extra.append(copy)
    doc["variables"] = (variables + extra)[:n_features]
    return parse_priors(json.dumps(doc), f"<shipped priors, {n_features} features>")


def gradient_seconds(model: Any, mode: str, repeats: int = 200) -> float:
    """Median time of one log-density-and-gradient evaluation at the initial point."""
    from pymc.blocking import DictToArrayBijection

    f = model.logp_dlogp_function(ravel_inputs=True, mode=mode)
    f.set_extra_values({})
    x0 = DictToArrayBijection.map(model.initial_point()).data
    f(x0)  # compile and warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(x0)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _cohort(size_name: str, seed: int) -> tuple[Priors, Any, Any]:
    size = SIZES[size_name]
    priors = size_priors(size.features)
    cohort = simulate(
        priors,
        SimulationConfig(n_users=size.users, n_days=size.days, heterogeneity=0.5, seed=seed),
    )
    return priors, cohort, exposures(cohort.diary, priors)


def gradients(size_name: str, seed: int = SEED) -> dict[str, float]:
    """Milliseconds per log-density-and-gradient evaluation, per PyTensor backend."""
    from pytensor.compile.mode import Mode

    priors, _, design = _cohort(size_name, seed)
    model = build_model(design, priors, "partial", choose_centring(design, priors, "noncentred"))
    modes: dict[str, Any] = {
        "numba": "NUMBA",
        "c": Mode(linker="cvm", optimizer="fast_run"),
        "jax": "JAX",
    }
    return {f"grad_{k}_ms": gradient_seconds(model, m) * 1000 for k, m in modes.items()}


def _with_floor(run: dict[str, Any], grads: dict[str, float]) -> dict[str, Any]:
    parallel = min(run["chains"], available_cores())
    floor = grads["grad_numba_ms"] / 1000 * run["leapfrog_steps"] / parallel
    return {
        **run,
        **grads,
        "gradient_floor_s": floor,
        "wall_over_floor": run["wall_s"] / floor if floor > 0 else float("nan"),
    }


def run_one(size_name: str, backend: str, grads: dict[str, float], seed: int = SEED) -> dict:
    size = SIZES[size_name]
    priors, cohort, design = _cohort(size_name, seed)
    cfg = SamplerConfig(backend=backend, seed=seed, progressbar=False)
    if size_name == "tiny":
        cfg = SamplerConfig(
            backend=backend, seed=seed, chains=2, tune=100, draws=100, progressbar=False
        )
    t0 = time.perf_counter()
    result = fit(design, priors, cfg, data_sha256=cohort.diary.sha256)
    wall = time.perf_counter() - t0
    d = result.diagnostics
    stats = result.tree["sample_stats"]
    steps_var = "n_steps" if "n_steps" in stats.data_vars else "tree_size"
    leapfrog = int(stats[steps_var].sum()) if steps_var in stats.data_vars else -1
    run = {
        "size": size_name,
        "users": size.users,
        "days": size.days,
        "features": size.features,
        "rows": design.n_obs,
        "backend": backend,
        "chains": cfg.chains,
        "tune": cfg.tune,
        "draws": cfg.draws,
        "wall_s": wall,
        "pilot_s": result.timings.get("pilot_s", 0.0),
        "sampling_s": result.timings.get("sampling_s", float("nan")),
        "min_ess_bulk": d.min_ess_bulk,
        "min_ess_tail": d.min_ess_tail,
        "ess_bulk_per_s": d.min_ess_bulk / wall,
        "max_rhat": d.max_rhat,
        "divergences": d.divergences,
        "reliable": d.reliable,
        "leapfrog_steps": leapfrog,
        "centring": result.centring.summary(),
    }
    return _with_floor(run, grads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["small", "medium"])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--gradients-only", action="store_true", help="re-measure gradients")
    args = parser.parse_args(argv)
    stored = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
    command = "python -m benchmarks.fit_speed " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )

    def save(runs: list[dict[str, Any]]) -> None:
        from hbm.io import write_json

        write_json(
            args.out,
            {
                "command": command,
                "machine": {"cores": available_cores()},
                "versions": package_versions(),
                "runs": runs,
            },
        )

    if args.gradients_only:
        for size in args.sizes:
            grads = gradients(size)
            stored = [_with_floor(r, grads) if r["size"] == size else r for r in stored]
        save(stored)
        return 0
    results = [r for r in stored if not (r["size"] in args.sizes and r["backend"] in args.backends)]
    for size in args.sizes:
        grads = gradients(size)
        for backend in args.backends:
            print(f"{size} x {backend} ...", file=sys.stderr, flush=True)
            r = run_one(size, backend, grads)
            print(json.dumps(r, default=str), flush=True)
            results.append(r)
            save(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
