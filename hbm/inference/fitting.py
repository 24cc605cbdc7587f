"""Fit a model by NUTS and gate the result on ArviZ diagnostics.

Backends: ``nutpie`` (default, fastest on CPU), ``pymc`` (PyMC's own NUTS) and ``numpyro`` (JAX;
for GPUs). The backend is always passed explicitly to ``pm.sample`` and recorded, since PyMC
silently switches its default to nutpie when nutpie is installed.

The result is gated by ``hbm.inference.diagnostics.diagnose``; a fit that fails the gate is still
returned
and saved, with ``reliable = False`` and its reasons.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from hbm.data.exposures import Design, select_users
from hbm.data.priors import Priors
from hbm.errors import FitError
from hbm.inference.diagnostics import Diagnostics, diagnose
from hbm.inference.nutpie_cache import compile_cached
from hbm.model.build import (
    FUSED_DATA,
    Centring,
    Likelihood,
    Parameterization,
    Pooling,
    build_model,
    choose_centring,
    grouped_rows,
)
from hbm.model.likelihood import Layout, quantize_exposures, register_jax, rows_logp_draw

BACKENDS: tuple[str, ...] = ("nutpie", "pymc", "numpyro")
DEFAULT_BACKEND = "nutpie"
#: Warm-up per chain by backend. nutpie adapts its mass matrix from gradients and needs less (300
#: is nutpie's own default; on the medium benchmark 300 and 1000 gave the same minimum ESS, 1061
#: and 1144). PyMC's NUTS and numpyro keep PyMC's 1000.
DEFAULT_TUNE = {"nutpie": 300, "pymc": 1000, "numpyro": 1000}


#: CPU devices JAX is shown (the value PyMC's JAX sampler sets): numpyro runs chains in parallel
#: only with at least one device per chain; the devices share the machine's cores.
XLA_HOST_DEVICES = 100


def _expose_cpu_devices() -> None:
    """Let JAX see ``XLA_HOST_DEVICES`` CPU devices, so numpyro runs its chains in parallel.

    XLA reads the flag once, when JAX first starts a backend. Anything in the process that starts
    JAX before ``pm.sample`` imports ``pymc.sampling.jax`` (which sets the same flag) would
    otherwise leave one device, and numpyro then runs its chains one after another (medium
    benchmark: 654 s with one device). An explicit flag in ``XLA_FLAGS`` is left alone.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_force_host_platform_device_count" not in flags:
        # trailing space: PyMC's own rewrite of the flag only matches a value followed by one
        count = f"--xla_force_host_platform_device_count={XLA_HOST_DEVICES} "
        os.environ["XLA_FLAGS"] = f"{count}{flags}"


_expose_cpu_devices()


@dataclass(frozen=True)
class SamplerConfig:
    """NUTS settings; defaults are sized for a 2-core machine (4 chains run two at a time)."""

    backend: str = DEFAULT_BACKEND
    chains: int = 4
    #: Warm-up iterations per chain; ``None`` takes the backend's ``DEFAULT_TUNE``.
    tune: int | None = None
    draws: int = 1000
    target_accept: float = 0.9
    seed: int = 2026
    progressbar: bool = True
    #: Pointwise log-likelihood and posterior predictive are kept for at most this many draws
    #: (evenly thinned): enough for LOO and predictive checks, without a file of hundreds of MB.
    predictive_draws: int = 500
    #: Chains run in parallel on this many cores (None: every core this process may use).
    cores: int | None = None
    #: Longest trajectory of the main fit is ``2**max_treedepth - 1`` leapfrog steps (Stan and
    #: PyMC: 10; the pilot keeps ``PILOT_MAX_TREEDEPTH``). nutpie's draws of every benchmark
    #: cohort take at most 63 steps (depth 6); what depth 10 allowed was early warm-up, where
    #: the step size collapses after the first divergent steps and trajectories run to 1023
    #: steps for a dozen iterations: at 500 users x 1000 days, 8 took the warm-up from 37,145
    #: to 28,355 gradient evaluations (BENCHMARKS.md). ``Diagnostics.max_treedepth_hits``
    #: counts draws that hit it.
    max_treedepth: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "tune", self.tune_steps)

    @property
    def tune_steps(self) -> int:
        """``tune`` resolved to a number (the backend's ``DEFAULT_TUNE`` when ``None``)."""
        return DEFAULT_TUNE.get(self.backend, 1000) if self.tune is None else int(self.tune)

    def check(self) -> None:
        problems = []
        if self.backend not in BACKENDS:
            problems.append(f"backend '{self.backend}' is unknown; expected one of {BACKENDS}")
        if self.chains < 1:
            problems.append(f"chains must be >= 1, got {self.chains}")
        if self.draws < 1 or self.tune_steps < 0:
            problems.append(f"draws must be >= 1 and tune >= 0, got {self.draws}, {self.tune}")
        if not 1 <= self.max_treedepth <= 15:
            problems.append(f"max_treedepth must be in [1, 15], got {self.max_treedepth}")
        if not 0.5 <= self.target_accept < 1.0:
            problems.append(f"target_accept must be in [0.5, 1), got {self.target_accept}")
        if problems:
            raise FitError("invalid sampler settings: " + "; ".join(problems))


def _thinned_posterior(dt: xr.DataTree, max_draws: int) -> xr.DataTree:
    post = dt["posterior"].to_dataset()
    total = post.sizes["chain"] * post.sizes["draw"]
    step = max(1, int(np.ceil(total / max_draws)))
    return xr.DataTree.from_dict({"posterior": post.isel(draw=slice(None, None, step))})


def available_cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def leapfrog_steps(tree: xr.DataTree) -> dict[str, int]:
    """Leapfrog steps (gradient evaluations) in the warm-up and draw phases of a NUTS run.

    A phase whose statistics the backend did not return (numpyro keeps no warm-up) counts -1.
    """
    out = {}
    for phase, group in (("warmup", "warmup_sample_stats"), ("draws", "sample_stats")):
        stats = tree[group].to_dataset() if group in tree.children else None
        name = next((n for n in ("n_steps", "tree_size") if stats is not None and n in stats), None)
        out[phase] = int(stats[name].sum()) if stats is not None and name else -1
    return out


def _drop_warmup(tree: xr.DataTree) -> None:
    for group in [g for g in tree.children if str(g).startswith("warmup_")]:
        del tree[group]


def backend_kwargs(cfg: SamplerConfig, chains: int | None = None) -> dict[str, Any]:
    """Extra ``pm.sample`` arguments every backend gets: the number of cores.

    ``chains`` is the run's chain count when it is not ``cfg.chains`` (the pilot's).
    """
    # PyMC's default halves the CPU count (it assumes hyperthreads), which on a 2-core machine
    # runs every chain on one core; pass the real count.
    n_chains = cfg.chains if chains is None else chains
    kwargs: dict[str, Any] = {"cores": min(n_chains, cfg.cores or available_cores())}
    if cfg.backend == "pymc" and kwargs["cores"] > 1 and "jax" in sys.modules:
        # PyMC forks a process per chain; forking after JAX has started its threads (the neural
        # baseline in the same process) can deadlock, so start the chain workers fresh instead.
        kwargs["mp_ctx"] = "forkserver"
    return kwargs


def compile_nutpie(model: pm.Model) -> Any:
    """nutpie's compiled model (numba), reusable for other values of the model's data.

    It stores the sampled variables only: compiling the deterministics into nutpie's per-draw
    function took 2-3 s of a medium fit's 9-12 s compile; ``draw`` adds them afterwards. Its
    callbacks are cached on disk (``hbm.inference.nutpie_cache``): a model of a form compiled
    before, in
    any process, loads in about 1 s.
    """
    return compile_cached(model, var_names=[v.name for v in model.free_RVs])


def run_nuts(
    model: pm.Model,
    cfg: SamplerConfig,
    *,
    chains: int,
    tune: int,
    draws: int,
    seed: int,
    progressbar: bool,
    compiled: Any = None,
) -> xr.DataTree:
    """One NUTS run on ``cfg.backend``, warm-up statistics kept (``leapfrog_steps`` reads them).

    nutpie is called directly so that a model compiled once (``compile_nutpie``) serves several
    runs; PyMC's ``pm.sample`` would compile it again each time. The other backends go through
    ``pm.sample`` with ``nuts_sampler`` passed explicitly.
    """
    if cfg.backend == "nutpie":
        import nutpie
        from pymc.backends.arviz import patch_nutpie_idata

        t0 = time.perf_counter()
        dt = nutpie.sample(
            compiled if compiled is not None else compile_nutpie(model),
            draws=draws,
            tune=max(tune, 1),  # nuts-rs needs one warm-up step at least
            chains=chains,
            cores=backend_kwargs(cfg, chains)["cores"],
            seed=seed,
            save_warmup=True,
            progress_bar=progressbar,
            target_accept=cfg.target_accept,
            maxdepth=cfg.max_treedepth,
        )
        patch_nutpie_idata(dt, model, sampling_time=time.perf_counter() - t0)
        return dt
    if cfg.backend == "numpyro":
        register_jax()
    extra = {"nuts": nuts_options(cfg, chains)}
    out: xr.DataTree = pm.sample(
        model=model,
        nuts_sampler=cfg.backend,
        draws=draws,
        tune=tune,
        chains=chains,
        target_accept=cfg.target_accept,
        random_seed=seed,
        progressbar=progressbar,
        discard_tuned_samples=False,
        **backend_kwargs(cfg, chains),
        **extra,
    )
    return out


def nuts_options(cfg: SamplerConfig, chains: int) -> dict[str, Any]:
    """``pm.sample``'s ``nuts`` argument for ``cfg.backend``: the maximum tree depth under each
    backend's name, and for numpyro how its ``chains`` chains run."""
    if cfg.backend == "numpyro":
        return {"chain_method": numpyro_chain_method(chains), "max_tree_depth": cfg.max_treedepth}
    return {"max_treedepth": cfg.max_treedepth}


def numpyro_chain_method(chains: int) -> str:
    """How numpyro runs ``chains`` chains: ``"parallel"`` with a JAX device per chain (the CPU,
    see ``XLA_HOST_DEVICES``), else ``"vectorized"`` (one GPU: the chains share each gradient
    call instead of running one after another)."""
    import jax

    return "parallel" if jax.local_device_count() >= chains else "vectorized"


def jax_platform() -> str:
    """JAX's default device (``"cpu"``, or the accelerator's kind); ``"not started"`` when JAX
    has not been imported, so that asking never starts it."""
    if "jax" not in sys.modules:
        return "not started"
    import jax

    device = jax.devices()[0]
    return "cpu" if device.platform == "cpu" else f"{device.platform}: {device.device_kind}"


def draw(
    model: pm.Model, cfg: SamplerConfig, compiled: Any = None
) -> tuple[xr.DataTree, dict[str, float]]:
    """NUTS on ``model``: posterior (deterministics added), sample statistics and
    constant data, warm-up dropped after its leapfrog steps are counted."""
    cfg.check()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    dt = run_nuts(
        model,
        cfg,
        chains=cfg.chains,
        tune=cfg.tune_steps,
        draws=cfg.draws,
        seed=cfg.seed,
        progressbar=cfg.progressbar,
        compiled=compiled,
    )
    timings["sampling_s"] = time.perf_counter() - t0
    # numpyro reports each draw's depth, not whether it hit the limit: diagnose compares them
    dt.attrs["max_treedepth"] = cfg.max_treedepth
    posterior = dt["posterior"].to_dataset()
    missing = [v.name for v in model.deterministics if v.name not in posterior.data_vars]
    if missing:  # nutpie stores the sampled variables only (compile_nutpie)
        derived = pm.compute_deterministics(
            posterior, var_names=missing, model=model, progressbar=False
        )
        dt["posterior"] = xr.DataTree(xr.merge([posterior, derived]))
    dt.attrs["leapfrog_steps"] = json.dumps(leapfrog_steps(dt))
    _drop_warmup(dt)
    if "constant_data" in dt.children:
        data = dt["constant_data"].to_dataset()
        dt["constant_data"] = xr.DataTree(data.drop_vars(FUSED_DATA, errors="ignore"))
    return dt, timings


def add_predictive(dt: xr.DataTree, design: Design, cfg: SamplerConfig) -> float:
    """Add ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` to a fit's tree.

    On at most ``cfg.predictive_draws`` evenly thinned draws of ``w`` and ``a``: each row's
    Bernoulli log-mass (float32) and one predictive outcome per draw (int8, seeded by
    ``cfg.seed``), by ``hbm.model.likelihood.rows_logp_draw`` (the pointwise model's ``y``; a test
    holds it to PyMC's ``compute_log_likelihood``). It releases the interpreter, so the
    diagnostics run beside it (``fit``). Returns the seconds taken.
    """
    t1 = time.perf_counter()
    thin = _thinned_posterior(dt, cfg.predictive_draws)["posterior"].to_dataset()
    rows = grouped_rows(design)
    users, features = list(design.users), list(design.features)
    # x . w = codes . (w * scale), as the fused likelihood reads them
    w = thin["w"].sel(user=users, feature=features).transpose("chain", "draw", "user", "feature")
    ws = np.ascontiguousarray(w.values * rows.scale)
    a = np.ascontiguousarray(thin["a"].sel(user=users).transpose("chain", "draw", "user").values)
    n_chains, n_draws = ws.shape[:2]
    logp = np.empty((n_chains, n_draws, design.n_obs), dtype=np.float32)
    y_rep = np.empty((n_chains, n_draws, design.n_obs), dtype=np.int8)
    rng = np.random.default_rng(cfg.seed)
    for c, d in np.ndindex(n_chains, n_draws):
        uniform = rng.random(design.n_obs, dtype=np.float32)
        rows_logp_draw(
            rows.x_flat, rows.y, rows.offsets, rows.order, ws[c, d], a[c, d], uniform,
            logp[c, d], y_rep[c, d],
        )  # fmt: skip
    obs = {"obs": np.arange(design.n_obs)}
    coords = {"chain": thin["chain"].values, "draw": thin["draw"].values, **obs}
    sample_dims = ("chain", "draw", "obs")
    dt["log_likelihood"] = xr.DataTree(xr.Dataset({"y": (sample_dims, logp)}, coords=coords))
    dt["posterior_predictive"] = xr.DataTree(xr.Dataset({"y": (sample_dims, y_rep)}, coords=coords))
    y_obs = np.asarray(design.y, dtype=np.int64)
    dt["observed_data"] = xr.DataTree(xr.Dataset({"y": ("obs", y_obs)}, coords=obs))
    return time.perf_counter() - t1


@dataclass(frozen=True)
class PilotResult:
    """Between-user spreads read off a short non-centred pilot fit."""

    tau: np.ndarray  # (feature,) lower quantile of tau
    sigma_a: float
    quantile: float
    seconds: float
    leapfrog_steps: int  # warm-up and draws, all chains (-1: not reported by the backend)


#: The pilot reports this quantile of each spread: a spread whose posterior reaches near zero must
#: not be centred (that is the funnel), so the rule reads the spread's lower end, not its mean.
#: Medium benchmark, seeds 2026, 1, 2, 3: min bulk ESS 1115, 1080, 982, 813 at 0.01 against 486
#: (R-hat 1.012, a tau), 1134, 849, 1032 at 0.05.
PILOT_QUANTILE = 0.01
#: Pilot length, 2 chains x (tune + draws). On medium (benchmarks), 150 + 150 gives spreads within
#: 0.03 of a 300 + 300 pilot's in 60% of its time.
PILOT_CHAINS, PILOT_TUNE, PILOT_DRAWS = 2, 150, 150
#: The pilot's maximum tree depth, whatever the main fit's: it samples the non-centred form, whose
#: trajectories must reach down the funnel of the spreads. With the pilot at depth 8 the large
#: benchmark's main fit failed the gate on chain seeds 7, 1 and 2 (tau: min bulk ESS 440, 445,
#: 627); with the pilot at 10 it passed (816 and 907 on seeds 7 and 1, main fit at depth 8).
PILOT_MAX_TREEDEPTH = 10


def pilot_max_treedepth(config: SamplerConfig) -> int:
    """The pilot's maximum tree depth under ``config``: at least ``PILOT_MAX_TREEDEPTH``."""
    return max(config.max_treedepth, PILOT_MAX_TREEDEPTH)


#: The pilot reads the spreads (population parameters) from at most this many users, a random
#: subset fixed by the fit's seed, so that its cost stops growing with the cohort: at 500 users x
#: 1000 days it took 65 of a 208 s fit (benchmarks/scaling.py).
PILOT_MAX_USERS = 100


def pilot_design(design: Design, seed: int) -> Design:
    """``design``, or a seeded random ``PILOT_MAX_USERS`` of its users when it has more."""
    n_users = len(design.users)
    if n_users <= PILOT_MAX_USERS:
        return design
    rng = np.random.default_rng(seed)
    return select_users(design, rng.choice(n_users, PILOT_MAX_USERS, replace=False))


def pilot_spreads(
    model: pm.Model, design: Design, config: SamplerConfig, compiled: Any = None
) -> PilotResult:
    """Short fit of a non-centred model to estimate the between-user spreads.

    Parameters
    ----------
    model
        ``build_model`` with the non-centred form (``choose_centring(..., "noncentred")``).
    design
        Its design.
    config
        The fit's settings (backend, target_accept, seed); the pilot's length is fixed.
    compiled
        For nutpie, ``model`` compiled (``compile_nutpie``), reused afterwards by the main fit.
    """
    t0 = time.perf_counter()
    dt = run_nuts(
        model,
        replace(config, max_treedepth=pilot_max_treedepth(config)),
        chains=PILOT_CHAINS,
        tune=PILOT_TUNE,
        draws=PILOT_DRAWS,
        seed=config.seed + 7919,
        progressbar=False,
        compiled=compiled,
    )
    steps = leapfrog_steps(dt)
    post = dt["posterior"].to_dataset()
    q = PILOT_QUANTILE
    tau = (
        post["tau"].quantile(q, dim=("chain", "draw")).values
        if "tau" in post
        else np.zeros(len(design.features))
    )
    sigma_a = float(post["sigma_a"].quantile(q)) if "sigma_a" in post else 0.0
    return PilotResult(
        tau=np.asarray(tau, dtype=float),
        sigma_a=sigma_a,
        quantile=q,
        seconds=time.perf_counter() - t0,
        leapfrog_steps=steps["warmup"] + steps["draws"] if min(steps.values()) >= 0 else -1,
    )


@dataclass(frozen=True)
class FitResult:
    """A fitted model with everything needed to export, predict and reproduce it."""

    tree: xr.DataTree
    design: Design
    priors: Priors
    diagnostics: Diagnostics
    config: SamplerConfig
    pooling: str
    centring: Centring
    timings: dict[str, float]
    #: Gradient evaluations by phase: ``pilot``, ``warmup``, ``draws`` (all chains; -1 = unknown).
    leapfrog_steps: dict[str, int] = field(default_factory=dict)


def package_versions() -> dict[str, str]:
    """Versions of the packages that determine a fit's numbers."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("hbm", "pymc", "pytensor", "arviz", "arviz-stats", "nutpie", "numpy", "numpyro"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def exposure_storage(design: Design) -> dict[str, str | float]:
    """Attrs saying how both forms of the model read the exposures (16-bit codes x a scale per
    feature, ``hbm.model.likelihood.quantize_exposures``) and how far that rounds them."""
    codes, scale = quantize_exposures(design.x)
    rounding = float(np.abs(codes * scale - design.x).max()) if design.n_obs else 0.0
    return {
        "exposure_storage": "int16 codes x scale per feature",
        "exposure_scale": json.dumps(dict(zip(design.features, scale.tolist(), strict=True))),
        "exposure_max_rounding": rounding,
        "fused_arithmetic": "float32 per row, float64 sums",
    }


def fit(
    design: Design,
    priors: Priors,
    config: SamplerConfig | None = None,
    pooling: Pooling = "partial",
    parameterization: Parameterization = "auto",
    data_sha256: str = "",
) -> FitResult:
    """Fit the hierarchical model to a design with NUTS.

    With ``parameterization="auto"`` and partial pooling, a short non-centred pilot fit first
    estimates the between-user spreads; each weight's degree of centring then follows
    ``hbm.model.build.centring`` (see ARCHITECTURE.md, "Parameterization").

    Parameters
    ----------
    design, priors
        From ``hbm.data.exposures.exposures`` and ``hbm.data.priors.load_priors``.
    config
        Sampler settings (backend, chains, tune, draws, target_accept, seed).
    pooling
        ``"partial"``, ``"none"`` or ``"complete"``.
    parameterization
        ``"auto"``, ``"centred"`` or ``"noncentred"``.
    data_sha256
        Hash of the diary content, recorded in the attrs.

    Returns
    -------
    FitResult
        The DataTree (attrs hold priors, data hash, versions, seed, backend and configuration)
        and its diagnostics.
    """
    cfg = config or SamplerConfig()
    cfg.check()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    pilot = None
    use_pilot = parameterization == "auto" and pooling == "partial"
    first = "noncentred" if use_pilot else parameterization
    cen = choose_centring(design, priors, first)
    # sampled with the fused likelihood (4x cheaper gradients); the rows' log-likelihood and
    # predictive draws come after (add_predictive)
    sampled_form: Likelihood = "fused"
    # numba reads the exposures block by block, JAX (numpyro) as one (feature, obs) matrix
    layout: Layout = "feature" if cfg.backend == "numpyro" else "blocked"
    model = build_model(design, priors, pooling, cen, likelihood=sampled_form, layout=layout)
    compiled = None
    if cfg.backend == "nutpie":
        t1 = time.perf_counter()
        compiled = compile_nutpie(model)
        timings["compile_s"] = time.perf_counter() - t1
    pilot_users: list[str] | None = None
    if use_pilot:
        sub = pilot_design(design, cfg.seed)
        pilot_users = list(sub.users)
        if sub is design:  # the same model, compiled once, sampled twice
            pilot = pilot_spreads(model, design, cfg, compiled)
        else:
            t1 = time.perf_counter()
            sub_cen = choose_centring(sub, priors, "noncentred")
            sub_model = build_model(sub, priors, pooling, sub_cen, sampled_form, layout)
            sub_compiled = compile_nutpie(sub_model) if cfg.backend == "nutpie" else None
            t2 = time.perf_counter()
            pilot = pilot_spreads(sub_model, sub, cfg, sub_compiled)
            timings["pilot_compile_s"] = t2 - t1
        timings["pilot_s"] = pilot.seconds
        cen = choose_centring(design, priors, "auto", tau=pilot.tau, sigma_a=pilot.sigma_a)
        centring_data = {"centring_z": cen.weights, "centring_za": cen.intercepts}
        # the same model, now with the pilot's centring: compiled once, sampled twice
        pm.set_data(centring_data, model=model)
        if compiled is not None:
            compiled = compiled.with_data(**centring_data)
    tree, sample_timings = draw(model, cfg, compiled)
    timings.update(sample_timings)
    # the diagnostics (ArviZ, a Python loop per parameter) run beside the predictive draws,
    # whose kernel releases the interpreter; they read a tree of their own, not the one being
    # added to
    draws = xr.DataTree.from_dict({g: tree[g].to_dataset() for g in ("posterior", "sample_stats")})
    draws.attrs.update(tree.attrs)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(diagnose, draws)
        timings["predictive_s"] = add_predictive(tree, design, cfg)
        diagnostics = pending.result()
    timings["total_s"] = time.perf_counter() - t0
    steps = json.loads(tree.attrs.pop("leapfrog_steps"))
    steps["pilot"] = pilot.leapfrog_steps if pilot is not None else 0
    attrs = {
        "hbm_schema": "hbm.inference.fitting/1",
        "pooling": pooling,
        "parameterization": parameterization,
        "centring_rule": cen.rule,
        "centring_summary": json.dumps(cen.summary()),
        "pilot_quantile": PILOT_QUANTILE,
        "pilot_max_treedepth": pilot_max_treedepth(cfg) if use_pilot else 0,
        "pilot_users": json.dumps(pilot_users),
        "pilot_tau_quantile": json.dumps(
            None if pilot is None else dict(zip(design.features, pilot.tau.tolist(), strict=True))
        ),
        "nuts_sampler": cfg.backend,
        "jax_platform": jax_platform() if cfg.backend == "numpyro" else "not used",
        "numpyro_chain_method": numpyro_chain_method(cfg.chains)
        if cfg.backend == "numpyro"
        else "not used",
        "sampled_likelihood": sampled_form,
        "exposure_layout": layout,
        **exposure_storage(design),
        "seed": cfg.seed,
        "sampler_config": json.dumps(asdict(cfg)),
        "priors_json": priors.document,
        "priors_sha256": priors.sha256,
        "priors_path": priors.path,
        "data_sha256": data_sha256,
        "n_obs": design.n_obs,
        "centering": json.dumps(
            dict(zip(design.centering.features, design.centering.means, strict=True))
        ),
        "versions": json.dumps(package_versions()),
        "diagnostics": json.dumps(diagnostics.to_dict()),
        "reliable": int(diagnostics.reliable),
        "timings": json.dumps(timings),
        "leapfrog_steps": json.dumps(steps),
    }
    tree.attrs.update(attrs)
    return FitResult(
        tree=tree,
        design=design,
        priors=priors,
        diagnostics=diagnostics,
        config=cfg,
        pooling=pooling,
        centring=cen,
        timings=timings,
        leapfrog_steps=steps,
    )
