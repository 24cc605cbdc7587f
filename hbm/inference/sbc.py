"""Simulation-based calibration of the hierarchical model with simuk.

simuk draws parameters and data from the model's prior, refits the model to each simulated data
set and records the rank of each true parameter among its posterior draws. A calibrated model
gives uniform ranks. Each simulation is a task (``sbc_tasks``): simuk run for one simulation
with a seed from the SBC's seed and the simulation's index, so a simulation's ranks are the same
in any process and any order (``hbm sbc`` runs them on Dask, ``hbm.app.engine``).
Uniformity is tested per parameter element with a chi-square test on ``bins`` equal-width rank
bins (``scipy.stats.chisquare``).
"""

from __future__ import annotations

import io
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import redirect_stderr
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import simuk
import xarray as xr
from scipy import stats

from hbm.data.exposures import Design
from hbm.data.priors import Priors
from hbm.errors import FitError
from hbm.inference.backends import get_backend
from hbm.inference.config import SamplerConfig
from hbm.interrupts import check
from hbm.model.build import build_model, choose_centring
from hbm.tasks import Runner, Task, run_serial, task_seed

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
    runner: Runner = run_serial,
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
        Seed of the simulations: simulation ``i`` draws and fits with ``task_seed(seed, "sbc",
        i)``, whichever process runs it (``sbc_tasks``).
    bins
        Rank bins of the chi-square uniformity test.
    max_w
        Per-user weights tested: the first ``max_w`` (user, feature) cells, user-major.
    runner
        Runs the simulations (``run_serial``; ``hbm.app.engine`` on Dask).
    """
    cfg = config or SBC_SAMPLER
    tasks = sbc_tasks(design, priors, n_simulations, cfg, seed)
    done = runner(tasks)
    return sbc_result(design, priors, [done[t.key] for t in tasks], cfg, bins, max_w)


#: Each SBC fit's default settings: small, since an SBC runs hundreds of fits.
SBC_SAMPLER = SamplerConfig(chains=2, tune=300, draws=200, progressbar=False)


def sbc_tasks(
    design: Design, priors: Priors, n_simulations: int, config: SamplerConfig, seed: int
) -> list[Task]:
    """One task per simulation, keyed ``sim-<index>`` and seeded from (``seed``, index); each
    runs in a recycled child process (``in_recycled_process``)."""
    return [
        Task(
            f"sim-{i:05d}",
            in_recycled_process,
            (simulate_and_rank, design, priors, config, task_seed(seed, "sbc", i)),
        )
        for i in range(n_simulations)
    ]


#: Simulations one child process runs before a fresh one replaces it. Each PyMC fit loads its
#: compiled functions from PyTensor's numba cache as new numba dispatchers (about 300), which
#: numba never frees: a process that ran hundreds of fits holds gigabytes and runs each fit about
#: twice as slowly. A fresh process costs a few seconds of imports, 1-2% of this many fits.
RECYCLE_AFTER = 40
_POOL: ProcessPoolExecutor | None = None


def in_recycled_process[T](fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in this process's child, replaced every ``RECYCLE_AFTER`` calls.

    A daemonic process (a Dask worker under a nanny with ``distributed.worker.daemon``, the
    default) may not start children: there the call runs in this process.
    """
    global _POOL
    if multiprocessing.current_process().daemon:
        return fn(*args)
    if _POOL is None:
        _POOL = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            max_tasks_per_child=RECYCLE_AFTER,
            initializer=_die_with_parent,
            initargs=(os.getpid(),),
        )
    try:
        return _POOL.submit(fn, *args).result()
    except BaseException as exc:
        if not isinstance(exc, Exception) or isinstance(exc, BrokenProcessPool):
            # a signal stops this process (the child would otherwise finish its fit first),
            # or the child died: a later call starts a new one
            stop_child()
        check()  # the signal that stopped the child stops this process too
        raise


def _die_with_parent(parent: int) -> None:
    """In the child: end when the parent process ends, however it ends (a killed Dask worker's
    child would otherwise finish its fit and wait forever for the next one). A thread polls the
    parent's id: Linux's parent-death signal follows the parent *thread*, which may end first."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="hbm-parent-watch", daemon=True).start()


def stop_child() -> None:
    """End ``in_recycled_process``'s child now, whatever it is running."""
    global _POOL
    if _POOL is None:
        return
    # ProcessPoolExecutor.terminate_workers comes with Python 3.14; its processes before that
    for process in list(getattr(_POOL, "_processes", {}).values()):
        process.terminate()
    _POOL.shutdown(wait=False, cancel_futures=True)
    _POOL = None


def sbc_model(design: Design, priors: Priors) -> pm.Model:
    """The model SBC checks: partial pooling, non-centred, the design's shape."""
    return build_model(design, priors, "partial", choose_centring(design, priors, "noncentred"))


def simulate_and_rank(
    design: Design, priors: Priors, config: SamplerConfig, seed: int
) -> dict[str, np.ndarray]:
    """One SBC simulation (simuk with ``seed``): a prior draw, its outcomes, a fit, the ranks of
    the drawn ``SBC_VARS`` among the fit's draws."""
    backend = get_backend(config.backend)
    backend.prepare()
    sbc = simuk.SBC(
        sbc_model(design, priors),
        num_simulations=1,
        sample_kwargs={
            "draws": config.draws,
            "tune": config.tune,
            "chains": config.chains,
            "progressbar": False,
            "compute_convergence_checks": False,
            # nuts_sampler, nuts (target_accept inside it: simuk hands the same dict to every
            # fit) and cores, as every fit of this backend samples
            **backend.pm_sample_kwargs(config, config.chains),
        },
        seed=seed,
        progress_bar=False,
    )
    sbc.var_names = list(SBC_VARS)  # simuk ranks free RVs by default; w is a deterministic
    # simuk prints a failed fit's traceback and logs it, then carries on: keep that off the
    # terminal and say it in one line
    said = io.StringIO()
    with redirect_stderr(said):
        sbc.run_simulations()
    if sbc._simulations_complete != 1:
        last = [line for line in said.getvalue().splitlines() if line.strip()][-1:]
        raise FitError(f"SBC simulation with seed {seed}: the fit failed ({''.join(last)})")
    raw = sbc.simulations["prior_sbc"].to_dataset()
    # (chain, draw) is simuk's (1, simulation) axis here: one simulation
    return {name: np.asarray(raw[name].values[0, 0]) for name in SBC_VARS}


def sbc_result(
    design: Design,
    priors: Priors,
    ranks: list[dict[str, np.ndarray]],
    config: SamplerConfig,
    bins: int = 10,
    max_w: int = 6,
) -> SBCResult:
    """The ranks of every simulation (in order) with the model's dims, and the uniformity tests."""
    model = sbc_model(design, priors)
    dims = {name: model.named_vars_to_dims.get(name, ()) for name in SBC_VARS}
    ds = xr.Dataset(
        {
            name: xr.DataArray(
                np.stack([r[name] for r in ranks]),
                dims=("simulation", *dims[name]),
                coords={d: list(model.coords[d]) for d in dims[name]},
            )
            for name in SBC_VARS
        }
    )
    n_draws = config.draws * config.chains
    rows = []
    for name in SBC_VARS:
        arr = ds[name]
        other = [d for d in arr.dims if d != "simulation"]
        flat = arr.stack(element=other) if other else arr.expand_dims(element=[name])
        n_elem = flat.sizes["element"] if name != "w" else min(max_w, flat.sizes["element"])
        for i in range(n_elem):
            r = flat.isel(element=i).values
            counts = np.histogram(r, bins=bins, range=(0, n_draws + 1))[0]
            chi2, p = stats.chisquare(counts)
            label = name if not other else f"{name}[{_label(flat.isel(element=i))}]"
            rows.append({"parameter": label, "chi2": float(chi2), "p_value": float(p)})
    return SBCResult(ranks=ds, n_draws=n_draws, tests=pd.DataFrame(rows), n_simulations=len(ranks))


def _label(item: xr.DataArray) -> str:
    element = item["element"].values.item()
    return ",".join(str(v) for v in element) if isinstance(element, tuple) else str(element)
