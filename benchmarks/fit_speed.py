"""Fit-speed benchmark: every NUTS backend hbm offers, on simulated cohorts of three sizes.

    python -m benchmarks.fit_speed [--sizes small medium large] [--backends nutpie pymc numpyro]
                                   [--out benchmarks/results.json]

Sizes (users x days x features): small 20 x 200 x 6, medium 50 x 1000 x 12, large 100 x 1000 x
24; ``tiny`` (6 x 40 x 3) is the smoke test's. Features are the first k of the shipped priors;
large adds five copies of shipped features lagged by two more days (keys ``<key>_lag2``), since the
shipped file has 19. Cohorts come from ``hbm.model.simulation`` (heterogeneity 0.5, seed 7).

Per run: wall time of ``hbm.inference.fitting`` (compilation, pilot, sampling and predictive draws
included), its
parts, minimum bulk and tail ESS over all parameters (``a0, sigma_a, mu, tau, a, w``), ESS per
second of wall time, maximum R-hat, divergences, leapfrog steps of the pilot, warm-up and draws,
posterior means with their Monte Carlo errors (``agreement`` compares backends), and the time of one
log-density-and-gradient evaluation under PyTensor's numba (nutpie's and PyMC's default), C (``cvm``
linker) and JAX (numpyro's, also for four chains in one call) backends: the fastest of several
batches' medians of repeated calls at the initial point (``fastest_median``), for the model as
sampled (fused likelihood); ``_pointwise`` and ``_plain`` gradient columns time the same density
with PyTensor's row-by-row graph and the model as first written. The gradient floor is ``gradient
time x gradient evaluations / chains run in parallel`` (``_with_floor``); for nutpie also with the
time of its compiled callback itself (``grad_nutpie_callback_ms``, no Python call: the strict
floor). ``--gradients-only`` re-measures the gradient columns of the stored runs of the given sizes
without refitting; ``--gradients`` picks the backends timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hbm.data.exposures import Design, exposures
from hbm.data.priors import Priors, default_priors_path, parse_priors
from hbm.inference.backends import BACKENDS, available_cores, jax_platform
from hbm.inference.fitting import SamplerConfig, fit
from hbm.inference.provenance import package_versions
from hbm.model.build import build_model, choose_centring
from hbm.model.simulation import SimulationConfig, simulate

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


def size_priors(n_features: int, clustering: bool = False) -> Priors:
    """The first ``n_features`` shipped features; beyond 19, lagged copies (module doc); with
    ``clustering``, the shipped clustering prior too (the default fit's model)."""
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
    # the sizes are counted in trigger features, as in BENCHMARKS.md's figures before the
    # clustering term (issue 21); this harness keeps that model
    if not clustering:
        doc.pop("clustering", None)
    return parse_priors(json.dumps(doc), f"<shipped priors, {n_features} features>")


def gradient_seconds(
    model: Any, mode: str, repeats: int = 300, warmup: int = 100, chains: int = 1
) -> float:
    """Time of one log-density-and-gradient evaluation at the initial point (``fastest_median``).

    ``mode="JAX"`` times the function numpyro differentiates (``jax_value_and_grad``) for
    ``chains`` chains at once, waiting for JAX's result: through PyTensor's compiled function the
    diary's arrays would be handed to JAX again on every call (large: 28.6 ms there against
    9.9 ms on the CPU).
    """
    from pymc.blocking import DictToArrayBijection

    if mode == "JAX":
        import jax

        f_jax, x_jax = jax_value_and_grad(model, chains)

        def call() -> None:
            jax.block_until_ready(f_jax(x_jax))

    else:
        f = model.logp_dlogp_function(ravel_inputs=True, mode=mode)
        f.set_extra_values({})
        x0 = DictToArrayBijection.map(model.initial_point()).data

        def call() -> None:
            f(x0)

    # JAX's calls are long (milliseconds): one batch
    return fastest_median(call, repeats, warmup, batches=1 if mode == "JAX" else BATCHES)


#: Timed batches of calls; a time is the fastest batch's median. One batch of 300 calls of a
#: 0.1 ms callback lasts 30 ms, and on this shared machine a batch's median moved between 0.106
#: and 0.148 ms from run to run: the fastest of several is what the hardware reaches, the
#: strictest floor.
BATCHES = 7


def fastest_median(call: Any, repeats: int, warmup: int, batches: int = BATCHES) -> float:
    """Seconds of one ``call()``: the smallest of ``batches`` medians of ``repeats`` timed calls,
    after ``warmup`` untimed ones (the first calls after compiling run slower: memory first
    touched)."""
    for _ in range(warmup):
        call()
    medians = []
    for _ in range(batches):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        medians.append(float(np.median(times)))
    return min(medians)


def callback_seconds(model: Any, repeats: int = 300, warmup: int = 100) -> float:
    """Time of one call of nutpie's compiled log-density callback at the initial point
    (``fastest_median``).

    The callback is what nutpie's sampler calls (``hbm.inference.nutpie_cache``), without the
    Python call
    of a PyTensor function that ``gradient_seconds`` includes, so its floor is the strict one.
    """
    import ctypes

    from hbm.inference.nutpie_cache import compile_cached

    compiled = compile_cached(model, var_names=[v.name for v in model.free_RVs])
    signature = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, *[ctypes.c_void_p] * 4)
    call = signature(compiled.compiled_logp_func.address)
    point = compiled.initial_point_func(SEED)
    grad, logp = np.zeros(compiled.n_dim), np.zeros(())
    args = (compiled.n_dim, point.ctypes.data, grad.ctypes.data, logp.ctypes.data)
    user_data = compiled.user_data.ctypes.data
    seconds = fastest_median(lambda: call(*args, user_data), repeats, warmup)
    if not np.isfinite(logp) or not np.isfinite(grad).all():
        raise RuntimeError("nutpie's callback returned a non-finite log density or gradient")
    return seconds


def jax_value_and_grad(model: Any, chains: int = 1) -> tuple[Any, list[Any]]:
    """The compiled log density and gradient that PyMC hands numpyro (diary arrays held as
    constants), mapped over ``chains`` copies of the initial point as numpyro's vectorized
    chains evaluate it; with the point to call it at."""
    import jax
    import jax.numpy as jnp
    from pymc.sampling.jax import get_jaxified_logp

    grad = jax.value_and_grad(get_jaxified_logp(model, negative_logp=False))
    point = model.initial_point()
    x = [jnp.asarray(point[v.name]) for v in model.value_vars]
    if chains == 1:
        return jax.jit(grad), x
    return jax.jit(jax.vmap(grad)), [jnp.stack([v] * chains) for v in x]


def _cohort(size_name: str, seed: int) -> tuple[Priors, Any, Any]:
    size = SIZES[size_name]
    priors = size_priors(size.features)
    cohort = simulate(
        priors,
        SimulationConfig(n_users=size.users, n_days=size.days, heterogeneity=0.5, seed=seed),
    )
    return priors, cohort, exposures(cohort.diary, priors)


def plain_model(design: Design, priors: Priors) -> Any:
    """The model as first written, for reference: non-centred, weights gathered per row, PyMC's
    ``Bernoulli(logit_p)``. Same log density as ``hbm.model.build.build_model``."""
    import pymc as pm

    m = np.array([f.prior.mean for f in priors.features])
    s = np.array([f.prior.sd for f in priors.features])
    t = np.array([f.prior.between_user_sd for f in priors.features])
    ip = priors.intercept
    coords = {"user": list(design.users), "feature": list(design.features)}
    with pm.Model(coords=coords) as model:
        a0 = pm.Normal("a0", mu=ip.logit_base_rate, sigma=ip.a0_sd)
        sigma_a = pm.HalfNormal("sigma_a", sigma=ip.sigma_a_scale)
        a = a0 + sigma_a * pm.Normal("za", 0.0, 1.0, dims="user")
        mu = pm.Normal("mu", mu=m, sigma=s, dims="feature")
        tau = pm.HalfNormal("tau", sigma=t, dims="feature")
        w = mu + tau * pm.Normal("z", 0.0, 1.0, dims=("user", "feature"))
        u = design.user_index
        pm.Bernoulli("y", logit_p=a[u] + (design.x * w[u]).sum(axis=-1), observed=design.y)
    return model


#: PyTensor backends whose gradient ``gradients`` times, by default all of them.
GRADIENT_MODES = ("numba", "c", "jax")


def gradients(
    size_name: str, seed: int = SEED, modes: tuple[str, ...] = GRADIENT_MODES
) -> dict[str, float]:
    """Milliseconds per log-density-and-gradient evaluation, per PyTensor backend and likelihood.

    ``grad_<backend>_ms`` is hbm's model as sampled (the fused likelihood, ``hbm.model.likelihood``)
    for each of ``modes``; with numba among them, ``grad_numba_pointwise_ms`` the same density
    with the row-by-row likelihood (PyTensor's own graph) and ``grad_numba_plain_ms`` the plain
    first version (``plain_model``), to show what each change gained; with jax among them,
    ``grad_jax_4chains_ms`` four chains' gradients in one call (numpyro's vectorized chains).
    """
    from pytensor.compile.mode import Mode

    from hbm.model.likelihood import register_jax

    register_jax()
    priors, _, design = _cohort(size_name, seed)
    cen = choose_centring(design, priors, "noncentred")
    # each backend's PyTensor mode and exposure layout as hbm.inference.fitting builds it; only
    # those timed
    known: dict[str, Any] = {
        "numba": ("NUMBA", "blocked"),
        "c": (Mode(linker="cvm", optimizer="fast_run"), "blocked"),
        "jax": ("JAX", "feature"),
    }
    models = {
        layout: build_model(design, priors, "partial", cen, likelihood="fused", layout=layout)
        for layout in {known[k][1] for k in modes}
    }
    out = {f"grad_{k}_ms": gradient_seconds(models[known[k][1]], known[k][0]) * 1000 for k in modes}
    if "jax" in modes:  # numpyro's vectorized chains (one GPU): every chain in one call
        jax_model = models["feature"]
        out["grad_jax_4chains_ms"] = gradient_seconds(jax_model, "JAX", 50, 10, chains=4) * 1000
    if "numba" in modes:
        out["grad_nutpie_callback_ms"] = callback_seconds(models["blocked"]) * 1000
        pointwise = build_model(design, priors, "partial", cen)
        out["grad_numba_pointwise_ms"] = gradient_seconds(pointwise, "NUMBA") * 1000
        out["grad_numba_plain_ms"] = gradient_seconds(plain_model(design, priors), "NUMBA") * 1000
    return out


#: The PyTensor backend whose gradient each sampler evaluates.
GRADIENT_OF = {"nutpie": "numba", "pymc": "numba", "numpyro": "jax"}


def _with_floor(run: dict[str, Any], grads: dict[str, Any]) -> dict[str, Any]:
    """Add the gradient floor: one gradient's time x every gradient the fit evaluated / cores.

    Evaluations are the leapfrog steps of the pilot, the warm-up and the draws. numpyro does not
    report its warm-up, so its floor counts its draws only (``floor_counts``).
    """
    parallel = min(run["chains"], available_cores())
    steps = run["leapfrog"]
    known = [steps[k] for k in ("pilot", "warmup", "draws") if steps[k] >= 0]
    counts = "pilot+warmup+draws" if len(known) == 3 else "draws only"
    evaluations = sum(known)
    grad_ms = grads.get(f"grad_{GRADIENT_OF[run['backend']]}_ms")  # None: not timed
    floor = None if grad_ms is None else grad_ms / 1000 * evaluations / parallel
    callback_ms = grads.get("grad_nutpie_callback_ms") if run["backend"] == "nutpie" else None
    strict = None if callback_ms is None else callback_ms / 1000 * evaluations / parallel
    return {
        **run,
        **grads,
        "gradient_evaluations": evaluations,
        "floor_counts": counts,
        "gradient_floor_s": floor,
        "wall_over_floor": run["wall_s"] / floor if floor else None,
        "callback_floor_s": strict,
        "wall_over_callback_floor": run["wall_s"] / strict if strict else None,
    }


#: Parameters whose posterior means are compared between backends (every sampled and derived one).
COMPARED_VARS = ("a0", "sigma_a", "mu", "tau", "a", "w")


def posterior_summary(tree: Any) -> dict[str, list[float]]:
    """Posterior mean and its Monte Carlo standard error of every compared scalar, flattened."""
    import arviz as az

    post = tree["posterior"].to_dataset()
    names = [v for v in COMPARED_VARS if v in post.data_vars]
    mcse = az.mcse(tree, var_names=names, method="mean")
    means = post[names].mean(("chain", "draw"))
    return {
        "names": [f"{v}[{i}]" for v in names for i in range(int(np.prod(post[v].shape[2:])))],
        "mean": [float(x) for v in names for x in np.ravel(means[v].values)],
        "mcse": [float(x) for v in names for x in np.ravel(mcse[v].values)],
    }


def agreement(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """z-scores of the difference in posterior means, ``(m_a - m_b) / sqrt(mcse_a^2 + mcse_b^2)``.

    Equal posteriors give z ~ Normal(0, 1) per parameter: about 0.27% beyond 3 and a maximum near
    3.3 over 676 parameters. MCSE comes from each run's own ESS, so a run that fails the gate (too
    low an ESS estimate or unmixed chains) can show larger z than its real error.
    """
    sa, sb = a["posterior"], b["posterior"]
    if sa["names"] != sb["names"]:
        raise ValueError("runs of different models cannot be compared")
    z = (np.array(sa["mean"]) - np.array(sb["mean"])) / np.hypot(sa["mcse"], sb["mcse"])
    worst = int(np.argmax(np.abs(z)))
    return {
        "size": a["size"],
        "backends": [a["backend"], b["backend"]],
        "parameters": len(z),
        "max_abs_z": float(np.abs(z).max()),
        "worst": sa["names"][worst],
        "share_abs_z_over_3": float((np.abs(z) > 3).mean()),
        "rms_z": float(np.sqrt(np.mean(z**2))),
    }


def agreements(runs: list[dict[str, Any]], reference: str = "nutpie") -> list[dict[str, Any]]:
    """``agreement`` of every backend with the reference backend, per size."""
    out = []
    for ref in (r for r in runs if r["backend"] == reference and "posterior" in r):
        for other in runs:
            if other["size"] == ref["size"] and other is not ref and "posterior" in other:
                out.append(agreement(ref, other))
    return out


def run_one(
    size_name: str,
    backend: str,
    grads: dict[str, float],
    seed: int = SEED,
    sampler_seed: int | None = None,
) -> dict:
    """One default ``hbm.inference.fitting`` of a size's cohort (made with ``seed``), timed and
    diagnosed.

    ``sampler_seed`` (default ``seed``) seeds the pilot and the chains only: the same cohort with
    other chains, to show how much the minimum ESS varies between runs.
    """
    size = SIZES[size_name]
    priors, cohort, design = _cohort(size_name, seed)
    chain_seed = seed if sampler_seed is None else sampler_seed
    cfg = SamplerConfig(backend=backend, seed=chain_seed, progressbar=False)
    if size_name == "tiny":  # the smoke test's size: a short sampler
        cfg = replace(cfg, chains=2, tune=100, draws=100)
    t0 = time.perf_counter()
    result = fit(design, priors, cfg, data_sha256=cohort.diary.sha256)
    wall = time.perf_counter() - t0
    d = result.diagnostics
    run = {
        "size": size_name,
        "users": size.users,
        "days": size.days,
        "features": size.features,
        "rows": design.n_obs,
        "backend": backend,
        "sampler_seed": chain_seed,
        "chains": cfg.chains,
        "tune": cfg.tune,
        "draws": cfg.draws,
        "wall_s": wall,
        "compile_s": result.timings.get("compile_s"),  # None: compiled inside pm.sample
        "pilot_s": result.timings.get("pilot_s", 0.0),
        "sampling_s": result.timings.get("sampling_s", float("nan")),
        "min_ess_bulk": d.min_ess_bulk,
        "min_ess_tail": d.min_ess_tail,
        "ess_bulk_per_s": d.min_ess_bulk / wall,
        "max_rhat": d.max_rhat,
        "divergences": d.divergences,
        "max_treedepth": cfg.max_treedepth,
        "max_treedepth_hits": d.max_treedepth_hits,
        "reliable": d.reliable,
        "jax_platform": result.provenance.jax_platform,
        "numpyro_chain_method": result.provenance.numpyro_chain_method,
        "leapfrog": dict(result.leapfrog_steps),
        "leapfrog_steps": result.leapfrog_steps["draws"],
        "centring": result.centring.summary(),
        "posterior": posterior_summary(result.tree),
    }
    return _with_floor(run, grads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["small", "medium"])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--gradients-only", action="store_true", help="re-measure gradients")
    parser.add_argument(
        "--gradients",
        nargs="+",
        choices=GRADIENT_MODES,
        default=list(GRADIENT_MODES),
        help="PyTensor backends whose gradient is timed (a GPU run needs jax only)",
    )
    parser.add_argument(
        "--sampler-seeds",
        nargs="+",
        type=int,
        help="rerun the sizes and backends with these chain seeds (same cohort), kept apart "
        "under seed_runs",
    )
    args = parser.parse_args(argv)
    doc = json.loads(args.out.read_text()) if args.out.exists() else {}
    stored = doc.get("runs", [])
    seed_runs = doc.get("seed_runs", [])
    command = "python -m benchmarks.fit_speed " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )

    def save(runs: list[dict[str, Any]]) -> None:
        from hbm.results.io import write_json

        write_json(
            args.out,
            {
                "command": command,
                "machine": {"cores": available_cores(), "jax_platform": jax_platform()},
                "versions": package_versions(),
                "runs": runs,
                "agreement": agreements(runs),
                "seed_runs": seed_runs,
            },
        )

    if args.sampler_seeds:
        for size in args.sizes:
            grads = gradients(size, modes=tuple(args.gradients))
            for backend in args.backends:
                for chain_seed in args.sampler_seeds:
                    print(f"{size} x {backend}, seed {chain_seed} ...", file=sys.stderr, flush=True)
                    r = run_one(size, backend, grads, sampler_seed=chain_seed)
                    r.pop("posterior")
                    seed_runs[:] = [
                        x
                        for x in seed_runs
                        if (x["size"], x["backend"], x["sampler_seed"])
                        != (size, backend, chain_seed)
                    ]
                    seed_runs.append(r)
                    save(stored)
        return 0

    if args.gradients_only:
        for size in args.sizes:
            grads = gradients(size, modes=tuple(args.gradients))
            stored = [
                _with_floor(r, grads) if r["size"] == size and "leapfrog" in r else r
                for r in stored
            ]
        save(stored)
        return 0
    results = [r for r in stored if not (r["size"] in args.sizes and r["backend"] in args.backends)]
    for size in args.sizes:
        grads = gradients(size, modes=tuple(args.gradients))
        for backend in args.backends:
            print(f"{size} x {backend} ...", file=sys.stderr, flush=True)
            r = run_one(size, backend, grads)
            print(
                json.dumps({k: v for k, v in r.items() if k != "posterior"}, default=str),
                flush=True,
            )
            results.append(r)
            save(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
