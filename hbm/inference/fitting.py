"""Fit a model by NUTS and gate the result on ArviZ diagnostics.

The backend (``hbm.inference.backends``: ``nutpie`` by default, ``pymc``, ``numpyro``) samples
the fused likelihood; with automatic centring a pilot fit (``hbm.inference.pilot``) comes first;
the diagnostics and the provenance attrs (``hbm.inference.provenance``) come after. The pointwise
log-likelihood and predictive draws are computed when asked (``hbm.inference.predictive``).

The result is gated by ``hbm.inference.diagnostics.diagnose``; a fit that fails the gate is still
returned and saved, with ``reliable = False`` and its reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
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
from hbm.inference.predictive import observed_data
from hbm.inference.provenance import (
    FitProvenance,
    exposure_storage,
    package_versions,
    read_provenance,
)
from hbm.interrupts import check
from hbm.model.build import (
    FUSED_DATA,
    RAW_VARS,
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
#: pointwise one; the rows' log-likelihood and predictive draws are computed when asked
#: (``hbm.inference.predictive.with_predictive``).
SAMPLED_LIKELIHOOD: Likelihood = "fused"


def _drop_warmup(tree: xr.DataTree) -> None:
    for group in [g for g in tree.children if str(g).startswith("warmup_")]:
        del tree[group]


def compact_posterior(posterior: xr.Dataset) -> xr.Dataset:
    """The posterior a fit keeps: without the raw variables behind ``a`` and ``w``
    (``RAW_VARS``), draws in float32.

    float32 keeps about 7 significant digits of each draw; a posterior mean or quantile moves by
    less than a millionth of its posterior SD (BENCHMARKS.md, "Run folder size"), far below the
    exports' printed precision and the Monte Carlo error. Half the bytes of fit.nc's posterior.
    """
    kept = posterior.drop_vars([v for v in RAW_VARS if v in posterior.data_vars])
    return kept.astype({v: np.float32 for v in kept.data_vars if kept[v].dtype == np.float64})


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
    if cfg.compact:
        dt["posterior"] = xr.DataTree(compact_posterior(dt["posterior"].to_dataset()))
    if "constant_data" in dt.children:
        data = dt["constant_data"].to_dataset().drop_vars(FUSED_DATA, errors="ignore")
        # and their dims' index coordinates (x_by_user_dim_0: obs x feature int64 numbers)
        unused = [d for d in data.dims if not any(d in data[v].dims for v in data.data_vars)]
        dt["constant_data"] = xr.DataTree(data.drop_dims(unused))
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
    #: The gate's second try, when it ran (``_sample_and_gate``); the draws are its draws.
    extension: dict[str, Any] = field(default_factory=dict)

    @property
    def provenance(self) -> FitProvenance:
        """The provenance recorded in the tree's attrs."""
        return read_provenance(self.tree.attrs)


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


def _gated_draws(
    model: pm.Model, cfg: SamplerConfig, compiled: Any, say: Callable[[str], None]
) -> tuple[xr.DataTree, Diagnostics, dict[str, int], dict[str, float]]:
    """``draw``, then the gate (phases ``sample`` and ``diagnostics``)."""
    say("sample")
    tree, timings, steps = draw(model, cfg, compiled)
    say("diagnostics")
    # numpyro reports each draw's depth, not whether it hit the limit: diagnose compares them
    tree.attrs["max_treedepth"] = cfg.max_treedepth
    t0 = time.perf_counter()
    diagnostics = diagnose(tree, GATE)
    timings["diagnostics_s"] = time.perf_counter() - t0
    return tree, diagnostics, steps, timings


#: The second try's smallest target acceptance: smaller steps reach the narrow region of small
#: between-user spreads, where the chains that failed the rank test disagreed (BENCHMARKS.md).
EXTENSION_TARGET_ACCEPT = 0.95
#: The second try's expected seconds per second of the first: twice the iterations, about 1.5
#: times the leapfrog steps each at 0.95 (medium: 48 s after 18 s).
EXTENSION_COST = 3.0


def extension_config(cfg: SamplerConfig) -> SamplerConfig:
    """The gate's second try: twice the warm-up and draws, the next seed, target acceptance at
    least ``EXTENSION_TARGET_ACCEPT``."""
    return replace(
        cfg,
        tune=2 * cfg.tune_steps,
        draws=2 * cfg.draws,
        seed=cfg.seed + 1,
        target_accept=max(cfg.target_accept, EXTENSION_TARGET_ACCEPT),
    )


def _sample_and_gate(
    model: pm.Model,
    cfg: SamplerConfig,
    compiled: Any,
    say: Callable[[str], None],
    timings: dict[str, float],
) -> tuple[xr.DataTree, Diagnostics, dict[str, int], dict[str, Any]]:
    """Sample and gate; when the gate fails and the budget allows, sample once more, longer.

    The second try (``extension_config``: twice the warm-up and draws, the next seed, target
    acceptance 0.95) runs when three times the first sampling's seconds (``EXTENSION_COST``) fit in
    ``cfg.extend_budget_s`` and the gate failed on figures that more warm-up and draws can mend
    (a diagnostic that is undefined, e.g. R-hat of one chain, is not). Its draws replace the
    first ones, whatever its verdict; the record says why it ran and what it gave.
    """
    tree, first, steps, first_timings = _gated_draws(model, cfg, compiled, say)
    timings.update(first_timings)
    wanted = not first.reliable and not first.not_available
    if not (wanted and 0 < EXTENSION_COST * first_timings["sampling_s"] <= cfg.extend_budget_s):
        return tree, first, steps, {}
    longer = extension_config(cfg)
    say("extend")
    tree, second, steps, second_timings = _gated_draws(model, longer, compiled, say)
    timings.update({f"extension_{k}": v for k, v in second_timings.items()})
    extension = {
        "why": list(first.reasons),
        "first": {"max_rhat": first.max_rhat, "min_ess_bulk": first.min_ess_bulk,
                  "min_ess_tail": first.min_ess_tail, "sampling_s": first_timings["sampling_s"]},
        "tune": longer.tune_steps,
        "draws": longer.draws,
        "seed": longer.seed,
        "target_accept": longer.target_accept,
        "budget_s": cfg.extend_budget_s,
        "sampling_s": second_timings["sampling_s"],
        "reliable": second.reliable,
    }  # fmt: skip
    return tree, second, steps, extension


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
        ``diagnostics``.

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
    quantized = quantize_exposures(design.x)  # once: the model and the attrs
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
    tree, diagnostics, steps, extension = _sample_and_gate(model, cfg, compiled, say, timings)
    tree["observed_data"] = observed_data(design)
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
        extension=extension,
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
        extension=result.extension,
    )
