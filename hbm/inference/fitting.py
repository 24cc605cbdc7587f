"""Fit a model by NUTS and gate the result on ArviZ diagnostics.

The backend (``hbm.inference.backends``: ``nutpie`` by default, ``pymc``, ``numpyro``) samples
the fused likelihood; with automatic centring a pilot fit (``hbm.inference.pilot``) comes first;
the pointwise log-likelihood and predictive draws (``hbm.inference.predictive``) and the
provenance attrs (``hbm.inference.provenance``) come after.

The result is gated by ``hbm.inference.diagnostics.diagnose``; a fit that fails the gate is still
returned and saved, with ``reliable = False`` and its reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from hbm.data.exposures import Design
from hbm.data.priors import Priors
from hbm.errors import FitError
from hbm.inference.backends import NutsRun, get_backend, leapfrog_steps, run_nuts
from hbm.inference.config import BACKENDS, DEFAULT_BACKEND, DEFAULT_TUNE, SamplerConfig
from hbm.inference.diagnostics import GATE, Diagnostics, diagnose
from hbm.inference.pilot import PILOT_QUANTILE, PilotResult, pilot_max_treedepth, run_pilot
from hbm.inference.predictive import add_predictive
from hbm.inference.provenance import (
    FitProvenance,
    exposure_storage,
    package_versions,
    read_provenance,
)
from hbm.interrupts import check
from hbm.model.build import (
    FUSED_DATA,
    Centring,
    Likelihood,
    Parameterization,
    Pooling,
    build_model,
    check_exposures,
    choose_centring,
)
from hbm.model.likelihood import quantize_exposures

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEFAULT_TUNE",
    "FitResult",
    "SamplerConfig",
    "draw",
    "fit",
]

#: The form the fit samples: the fused likelihood, whose gradient is far cheaper than the
#: pointwise one; the rows' log-likelihood and predictive draws come after (``add_predictive``).
SAMPLED_LIKELIHOOD: Likelihood = "fused"


def _drop_warmup(tree: xr.DataTree) -> None:
    for group in [g for g in tree.children if str(g).startswith("warmup_")]:
        del tree[group]


def _check_complete(posterior: xr.Dataset, draws: int) -> None:
    """A ``FitError`` when the sampler returned fewer draws than asked, or NaN-padded chains.

    PyMC's own sampler answers Ctrl-C (``KeyboardInterrupt``) by returning the draws so far; such
    a trace must not be exported as a fit.
    """
    got = posterior.sizes.get("draw", 0)
    last = posterior.isel(draw=-1) if got else posterior
    padded = any(bool(np.isnan(last[v].values).any()) for v in last.data_vars)
    if got < draws or padded:
        raise FitError(
            f"sampling stopped early: {got} of {draws} draws per chain"
            + (" (the last ones missing)" if padded else "")
            + "; nothing was exported"
        )


def draw(
    model: pm.Model, cfg: SamplerConfig, compiled: Any = None
) -> tuple[xr.DataTree, dict[str, float], dict[str, int]]:
    """NUTS on ``model``: posterior (deterministics added), sample statistics and constant data.

    Parameters
    ----------
    model
        The model to sample.
    cfg
        Sampler settings.
    compiled
        ``model`` compiled by the backend (``Backend.compile``), or ``None``.

    Returns
    -------
    tree, timings, leapfrog_steps
        The tree (warm-up dropped), ``sampling_s``, and the leapfrog steps of the warm-up and
        draw phases (``hbm.inference.backends.leapfrog_steps``), counted before the warm-up is
        dropped.
    """
    cfg.check()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    run = NutsRun(cfg.chains, cfg.tune_steps, cfg.draws, cfg.seed, cfg.progressbar)
    dt = run_nuts(model, cfg, run, compiled)
    timings["sampling_s"] = time.perf_counter() - t0
    posterior = dt["posterior"].to_dataset()
    _check_complete(posterior, cfg.draws)
    missing = [v.name for v in model.deterministics if v.name not in posterior.data_vars]
    if missing:  # nutpie stores the sampled variables only (NutpieBackend.compile)
        derived = pm.compute_deterministics(
            posterior, var_names=missing, model=model, progressbar=False
        )
        dt["posterior"] = xr.DataTree(xr.merge([posterior, derived]))
    steps = leapfrog_steps(dt)
    _drop_warmup(dt)
    if "constant_data" in dt.children:
        data = dt["constant_data"].to_dataset()
        dt["constant_data"] = xr.DataTree(data.drop_vars(FUSED_DATA, errors="ignore"))
    return dt, timings, steps


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

    @property
    def provenance(self) -> FitProvenance:
        """The provenance recorded in the tree's attrs."""
        return read_provenance(self.tree.attrs)


def _gate_beside_predictive(
    tree: xr.DataTree,
    design: Design,
    cfg: SamplerConfig,
    quantized: tuple[np.ndarray, np.ndarray],
    timings: dict[str, float],
) -> Diagnostics:
    """Diagnose the draws while ``add_predictive`` adds to the tree.

    The diagnostics (ArviZ, a Python loop per parameter) run beside the predictive draws, whose
    kernel releases the interpreter; they read a tree of their own, not the one being added to.
    """
    draws = xr.DataTree.from_dict({g: tree[g].to_dataset() for g in ("posterior", "sample_stats")})
    # numpyro reports each draw's depth, not whether it hit the limit: diagnose compares them
    draws.attrs["max_treedepth"] = cfg.max_treedepth
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pending = pool.submit(diagnose, draws, GATE)
        timings["predictive_s"] = add_predictive(tree, design, cfg, quantized)
        return pending.result()
    finally:
        # on an interrupt, the fit stops now rather than after the diagnostics (seconds)
        pool.shutdown(wait=False, cancel_futures=True)


def _by_name(keys: tuple[str, ...], values: Any) -> dict[str, Any]:
    """``values`` by feature name, as the attrs record them."""
    return dict(zip(keys, values, strict=True))


def _centre_by_pilot(
    model: pm.Model,
    compiled: Any,
    design: Design,
    priors: Priors,
    cfg: SamplerConfig,
    timings: dict[str, float],
) -> tuple[PilotResult, Centring, Any]:
    """The pilot, the centring it chooses, and the model (and compiled model) set to it."""
    backend = get_backend(cfg.backend)
    pilot, pilot_timings = run_pilot(
        model, compiled, design, priors, "partial", cfg, backend, SAMPLED_LIKELIHOOD
    )
    timings.update(pilot_timings)
    cen = choose_centring(design, priors, "auto", tau=pilot.tau, sigma_a=pilot.sigma_a)
    centring_data = {"centring_z": cen.weights, "centring_za": cen.intercepts}
    # the same model, now with the pilot's centring: compiled once, sampled twice
    pm.set_data(centring_data, model=model)
    if compiled is not None:
        compiled = compiled.with_data(**centring_data)
    return pilot, cen, compiled


def _phases(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    """What ``fit`` calls as each phase starts: a checkpoint, then ``progress``."""

    def say(phase: str) -> None:
        check()  # a phase starts only if no signal came (even one whose exception was lost)
        if progress is not None:
            progress(phase)

    return say


def fit(
    design: Design,
    priors: Priors,
    config: SamplerConfig | None = None,
    pooling: Pooling = "partial",
    parameterization: Parameterization = "auto",
    data_sha256: str = "",
    progress: Callable[[str], None] | None = None,
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
    progress
        Called with each phase's name as it starts: ``compile``, ``pilot``, ``sample``,
        ``predictive``.

    Returns
    -------
    FitResult
        The DataTree (attrs: ``hbm.inference.provenance.FitProvenance``) and its diagnostics.
    """
    cfg = config or SamplerConfig()
    cfg.check()
    backend = get_backend(cfg.backend)
    backend.prepare()
    say = _phases(progress)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    use_pilot = parameterization == "auto" and pooling == "partial"
    cen = choose_centring(design, priors, "noncentred" if use_pilot else parameterization)
    check_exposures(design)
    quantized = quantize_exposures(design.x)  # once: the model, the predictive and the attrs
    say("compile")
    model = build_model(
        design, priors, pooling, cen, SAMPLED_LIKELIHOOD, backend.layout, quantized=quantized
    )
    t1 = time.perf_counter()
    compiled = backend.compile(model)
    if compiled is not None:
        timings["compile_s"] = time.perf_counter() - t1
    pilot: PilotResult | None = None
    if use_pilot:
        say("pilot")
        pilot, cen, compiled = _centre_by_pilot(model, compiled, design, priors, cfg, timings)
    say("sample")
    tree, sample_timings, steps = draw(model, cfg, compiled)
    timings.update(sample_timings)
    say("predictive")
    diagnostics = _gate_beside_predictive(tree, design, cfg, quantized, timings)
    timings["total_s"] = time.perf_counter() - t0
    steps["pilot"] = pilot.leapfrog_steps if pilot is not None else 0
    result = FitResult(
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
    provenance = _provenance(result, parameterization, pilot, quantized, data_sha256)
    tree.attrs.update(provenance.to_attrs())
    return result


def _provenance(
    result: FitResult,
    parameterization: Parameterization,
    pilot: PilotResult | None,
    quantized: tuple[np.ndarray, np.ndarray],
    data_sha256: str,
) -> FitProvenance:
    """What ``fit`` records in the attrs of ``result.tree``."""
    cfg, design, priors, cen = result.config, result.design, result.priors, result.centring
    backend = get_backend(cfg.backend)
    platform = backend.attrs(cfg)
    return FitProvenance(
        pooling=result.pooling,
        parameterization=parameterization,
        centring_rule=cen.rule,
        centring_summary=cen.summary(),
        pilot_quantile=PILOT_QUANTILE,
        pilot_max_treedepth=pilot_max_treedepth(cfg) if pilot is not None else 0,
        pilot_users=list(pilot.users) if pilot is not None else None,
        pilot_tau_quantile=None if pilot is None else _by_name(design.features, pilot.tau.tolist()),
        nuts_sampler=cfg.backend,
        jax_platform=platform["jax_platform"],
        numpyro_chain_method=platform["numpyro_chain_method"],
        sampled_likelihood=SAMPLED_LIKELIHOOD,
        exposure_layout=backend.layout,
        **exposure_storage(design, quantized),
        seed=cfg.seed,
        sampler_config=asdict(cfg),
        max_treedepth=cfg.max_treedepth,
        priors_json=priors.document,
        priors_sha256=priors.sha256,
        priors_path=priors.path,
        data_sha256=data_sha256,
        n_obs=design.n_obs,
        centering=_by_name(design.exposure_means.features, design.exposure_means.means),
        versions=package_versions(),
        diagnostics=result.diagnostics.to_dict(),
        reliable=result.diagnostics.reliable,
        timings=result.timings,
        leapfrog_steps=result.leapfrog_steps,
        last_days={u: list(v) for u, v in design.last_days.items()},
    )
