"""The pilot fit: a short non-centred fit that estimates the between-user spreads.

``fit`` with ``parameterization="auto"`` and partial pooling runs it first; each weight's degree
of centring then follows ``hbm.model.build.centring`` (ARCHITECTURE.md, "Parameterization").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pymc as pm

from hbm.data.exposures import Design, select_users
from hbm.data.priors import Priors
from hbm.inference.backends import Backend, NutsRun, leapfrog_steps, run_nuts
from hbm.inference.config import SamplerConfig
from hbm.model.build import build_model, choose_centring
from hbm.model.options import Likelihood, Pooling

#: The pilot reports this quantile of each spread: a spread whose posterior reaches near zero must
#: not be centred (that is the funnel), so the rule reads the spread's lower end, not its mean
#: (BENCHMARKS.md compares 0.01 with 0.05).
PILOT_QUANTILE = 0.01
#: Pilot length, 2 chains x (tune + draws): long enough for stable spreads at a fraction of the
#: main fit's cost (BENCHMARKS.md).
PILOT_CHAINS, PILOT_TUNE, PILOT_DRAWS = 2, 150, 150
#: The pilot's maximum tree depth, whatever the main fit's: it samples the non-centred form, whose
#: trajectories must reach down the funnel of the spreads; a shallower pilot let the main fit of
#: large cohorts fail the gate (BENCHMARKS.md).
PILOT_MAX_TREEDEPTH = 10
#: The pilot reads the spreads (population parameters) from at most this many users, a random
#: subset fixed by the fit's seed, so that its cost stops growing with the cohort.
PILOT_MAX_USERS = 100


@dataclass(frozen=True)
class PilotResult:
    """Between-user spreads read off a short non-centred pilot fit."""

    tau: np.ndarray  # (feature,) lower quantile of tau
    sigma_a: float
    quantile: float
    seconds: float
    leapfrog_steps: int  # warm-up and draws, all chains (-1: not reported by the backend)
    #: Users the pilot was fitted to (a seeded subset of a large cohort).
    users: tuple[str, ...] = ()


def pilot_max_treedepth(config: SamplerConfig) -> int:
    """The pilot's maximum tree depth under ``config``: at least ``PILOT_MAX_TREEDEPTH``."""
    return max(config.max_treedepth, PILOT_MAX_TREEDEPTH)


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
        ``model`` compiled by the backend (``Backend.compile``), reused afterwards by the main
        fit; ``None`` when the backend compiles in its sample call.

    Returns
    -------
    PilotResult
        The ``PILOT_QUANTILE`` of each spread, the time and the leapfrog steps taken.
    """
    t0 = time.perf_counter()
    run = NutsRun(PILOT_CHAINS, PILOT_TUNE, PILOT_DRAWS, config.seed + 7919, progressbar=False)
    pilot_config = replace(config, max_treedepth=pilot_max_treedepth(config))
    dt = run_nuts(model, pilot_config, run, compiled)
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
        users=tuple(design.users),
    )


def run_pilot(
    model: pm.Model,
    compiled: Any,
    design: Design,
    priors: Priors,
    pooling: Pooling,
    config: SamplerConfig,
    backend: Backend,
    likelihood: Likelihood,
) -> tuple[PilotResult, dict[str, float]]:
    """The pilot of a fit: on the fit's own model, or on a model of a subset of its users.

    Parameters
    ----------
    model, compiled
        The fit's non-centred model and its compiled form (``Backend.compile``, or ``None``).
    design, priors, pooling
        What the fit's model was built from.
    config, backend
        The fit's settings and its backend.
    likelihood
        The form the fit samples (``build_model``'s ``likelihood``).

    Returns
    -------
    PilotResult, timings
        The spreads, and ``pilot_s`` (with ``pilot_compile_s`` when the subset needed a model of
        its own).
    """
    sub = pilot_design(design, config.seed)
    timings: dict[str, float] = {}
    if sub is design:  # the same model, compiled once, sampled twice
        pilot = pilot_spreads(model, design, config, compiled)
    else:
        t1 = time.perf_counter()
        sub_cen = choose_centring(sub, priors, "noncentred")
        sub_model = build_model(sub, priors, pooling, sub_cen, likelihood, backend.layout)
        sub_compiled = backend.compile(sub_model)
        t2 = time.perf_counter()
        pilot = pilot_spreads(sub_model, sub, config, sub_compiled)
        timings["pilot_compile_s"] = t2 - t1
    timings["pilot_s"] = pilot.seconds
    return pilot, timings
