"""Simulation-based calibration of the hierarchical model with simuk.

simuk draws parameters and data from the model's prior, refits the model to each simulated data
set and records the rank of each true parameter among its posterior draws. A calibrated model
gives uniform ranks. Uniformity is tested per parameter element with a chi-square test on
``bins`` equal-width rank bins (``scipy.stats.chisquare``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import simuk
import xarray as xr
from scipy import stats

from hbm.data.exposures import Design
from hbm.data.priors import Priors
from hbm.errors import FitError
from hbm.inference.backends import get_backend
from hbm.inference.config import SamplerConfig
from hbm.model.build import build_model, choose_centring

#: Variables whose ranks are tested: population means and spreads, intercept hyper-parameters and
#: the per-user weights (a deterministic of the raw ``z``; simuk ranks it from prior and posterior
#: draws like any other variable).
SBC_VARS = ("a0", "sigma_a", "mu", "tau", "w")


@dataclass(frozen=True)
class SBCResult:
    """Ranks per simulation and one uniformity test per tested parameter element."""

    ranks: xr.Dataset  # (simulation, user/feature) ranks in 0..n_draws
    n_draws: int
    tests: pd.DataFrame  # parameter, chi2, p_value
    n_simulations: int


def run_sbc(
    design: Design,
    priors: Priors,
    n_simulations: int = 100,
    config: SamplerConfig | None = None,
    seed: int = 0,
    bins: int = 10,
    max_w: int = 6,
) -> SBCResult:
    """Run prior SBC on the model of a design (its shape; its outcomes are re-simulated).

    Parameters
    ----------
    design, priors
        Shape of the data (users, days, exposures) and the priors to calibrate.
    n_simulations
        Number of simulated data sets (each one a full NUTS fit).
    config
        Sampler settings for each fit (backend, chains, tune, draws).
    seed
        Seed of simuk's draws.
    bins
        Rank bins of the chi-square uniformity test.
    max_w
        Per-user weights tested: the first ``max_w`` (user, feature) cells, user-major.
    """
    cfg = config or SamplerConfig(chains=2, tune=300, draws=200, progressbar=False)
    backend = get_backend(cfg.backend)
    backend.prepare()
    model = build_model(design, priors, "partial", choose_centring(design, priors, "noncentred"))
    sbc = simuk.SBC(
        model,
        num_simulations=n_simulations,
        sample_kwargs={
            "draws": cfg.draws,
            "tune": cfg.tune,
            "chains": cfg.chains,
            "progressbar": False,
            "compute_convergence_checks": False,
            # nuts_sampler, nuts (target_accept inside it: simuk hands the same dict to every
            # fit) and cores, as every fit of this backend samples
            **backend.pm_sample_kwargs(cfg, cfg.chains),
        },
        seed=seed,
        progress_bar=cfg.progressbar,
    )
    sbc.var_names = list(SBC_VARS)  # simuk ranks free RVs by default; w is a deterministic
    sbc.run_simulations()
    if sbc._simulations_complete != n_simulations:  # simuk logs and swallows fit errors
        raise FitError(f"SBC stopped after {sbc._simulations_complete} of {n_simulations} fits")
    raw = sbc.simulations["prior_sbc"].to_dataset().squeeze("chain", drop=True)
    # simuk returns positional dims; give them the model's names back.
    ranks = xr.Dataset(
        {
            name: xr.DataArray(
                raw[name].values,
                dims=("simulation", *model.named_vars_to_dims.get(name, ())),
                coords={d: list(model.coords[d]) for d in model.named_vars_to_dims.get(name, ())},
            )
            for name in SBC_VARS
        }
    )
    n_draws = cfg.draws * cfg.chains
    rows = []
    for name in SBC_VARS:
        arr = ranks[name]
        other = [d for d in arr.dims if d != "simulation"]
        flat = arr.stack(element=other) if other else arr.expand_dims(element=[name])
        n_elem = flat.sizes["element"] if name != "w" else min(max_w, flat.sizes["element"])
        for i in range(n_elem):
            r = flat.isel(element=i).values
            counts = np.histogram(r, bins=bins, range=(0, n_draws + 1))[0]
            chi2, p = stats.chisquare(counts)
            label = name if not other else f"{name}[{_label(flat.isel(element=i))}]"
            rows.append({"parameter": label, "chi2": float(chi2), "p_value": float(p)})
    return SBCResult(
        ranks=ranks, n_draws=n_draws, tests=pd.DataFrame(rows), n_simulations=n_simulations
    )


def _label(item: xr.DataArray) -> str:
    element = item["element"].values.item()
    return ",".join(str(v) for v in element) if isinstance(element, tuple) else str(element)
