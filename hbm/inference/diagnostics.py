"""The reliability gate: ArviZ diagnostics of a fit and the thresholds it must meet.

``GATE``: R-hat <= 1.01, bulk and tail ESS >= 400, no divergences, E-BFMI >= 0.3 on every chain,
and chains whose ranks agree on every population cell (``rank_p_values``: ArviZ's multi-chain
rank-ECDF test at a family-wise 1%), so that a reliable fit is not one whose chains disagree in a
way R-hat misses.
A fit that fails is still returned and saved, with ``reliable = False`` and its reasons in words.
A diagnostic the draws cannot define (R-hat of one chain, ESS or E-BFMI of too few draws) is NaN,
``not_available`` says why, and the gate fails with that reason.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from hbm.defaults import GATE, Gate


@dataclass(frozen=True)
class Diagnostics:
    """What the gate saw, per variable and overall."""

    reliable: bool
    reasons: tuple[str, ...]
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    ebfmi: tuple[float, ...]
    #: Draws whose trajectory stopped at ``SamplerConfig.max_treedepth`` (-1: not reported). Not
    #: gated: such draws are valid but cost the sampler efficiency (Stan reports them likewise).
    max_treedepth_hits: int = -1
    per_variable: dict[str, dict[str, float]] = field(default_factory=dict)
    gate: Gate = GATE
    #: Why a diagnostic is NaN (``null`` in diagnostics.json), by field name (``not_available``).
    not_available: dict[str, str] = field(default_factory=dict)
    #: The rank-ECDF test's p-value by population cell (``rank_p_values``; empty: one chain).
    rank_p: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Sampled and derived variables whose convergence the gate checks (those present in a model).
GATED_VARS = ("a0", "sigma_a", "mu", "tau", "a", "w")
#: The population variables whose chains the rank-ECDF test compares, cell by cell.
RANK_VARS = ("a0", "sigma_a", "mu", "tau")


def diagnose(dt: xr.DataTree, gate: Gate = GATE) -> Diagnostics:
    """Compute R-hat, ESS, divergences and E-BFMI with ArviZ and apply the gate."""
    post = dt["posterior"].to_dataset()
    names = [v for v in GATED_VARS if v in post.data_vars]
    with _quiet():
        rhat = az.rhat(dt, var_names=names)
        ess_bulk = az.ess(dt, var_names=names, method="bulk")
        ess_tail = az.ess(dt, var_names=names, method="tail")
        ebfmi = tuple(float(v) for v in np.atleast_1d(az.bfmi(dt)["energy"].values))
    per_var: dict[str, dict[str, float]] = {}
    for name in names:
        # A weight fixed by construction (complete pooling repeats mu) has NaN diagnostics per
        # copy; nanmax/nanmin read the copies that vary.
        per_var[name] = {
            "max_rhat": _nan_extreme(rhat[name].values, largest=True),
            "min_ess_bulk": _nan_extreme(ess_bulk[name].values, largest=False),
            "min_ess_tail": _nan_extreme(ess_tail[name].values, largest=False),
        }
    max_rhat = _worst(per_var, "max_rhat", largest=True)[0]
    min_bulk = _worst(per_var, "min_ess_bulk", largest=False)[0]
    min_tail = _worst(per_var, "min_ess_tail", largest=False)[0]
    stats = dt["sample_stats"].to_dataset()
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    depth_hits = max_treedepth_hits(stats, dt.attrs.get("max_treedepth"))
    unavailable = not_available(per_var, ebfmi, int(post.sizes["chain"]))
    rank_p = rank_p_values(post, ess_bulk)
    reasons = gate_reasons(per_var, divergences, ebfmi, gate, unavailable, rank_p)
    return Diagnostics(
        reliable=not reasons,
        reasons=tuple(reasons),
        max_rhat=max_rhat,
        min_ess_bulk=min_bulk,
        min_ess_tail=min_tail,
        divergences=divergences,
        ebfmi=ebfmi,
        max_treedepth_hits=depth_hits,
        per_variable=per_var,
        gate=gate,
        not_available=unavailable,
        rank_p=rank_p,
    )


def _cell_label(da: xr.DataArray, cell: dict[Hashable, int]) -> str:
    if not cell:
        return str(da.name)
    return f"{da.name}[{','.join(str(da[d].values[i]) for d, i in cell.items())}]"


def rank_p_values(post: xr.Dataset, ess_bulk: xr.Dataset) -> dict[str, float]:
    """P-values of ArviZ's multi-chain rank-ECDF uniformity test, by population cell.

    The test (Säilynoja, Bürkner and Vehtari 2022; ``mchain_uniformity_test``) asks whether the
    chains' rank distributions agree. It assumes independent draws, so each cell's chains are
    thinned first to about its bulk ESS (step ``ceil(chains * draws / ESS)``): autocorrelation
    alone does not reject, disagreement does. Cells of ``RANK_VARS`` only, labelled like
    ``tau[stress]``; a cell whose ESS is undefined or whose draws never change, and a fit of one
    chain, have none.
    """
    if post.sizes["chain"] < 2:
        return {}
    sample = ["chain", "draw"]
    out: dict[str, float] = {}
    for name in [v for v in RANK_VARS if v in post.data_vars]:
        da = post[name]
        cell_dims = [d for d in da.dims if d not in sample]
        for index in np.ndindex(*(da.sizes[d] for d in cell_dims)):
            cell = dict(zip(cell_dims, index, strict=True))
            ess, values = float(ess_bulk[name].isel(cell)), da.isel(cell)
            if not ess > 0 or float(values.max()) == float(values.min()):
                continue  # draws that never change have no ranks to compare
            n = post.sizes["chain"] * post.sizes["draw"]
            thinned = values.isel(draw=slice(None, None, math.ceil(n / ess)))
            ranks = thinned.azstats.compute_ranks(dim=sample, relative=True)
            out[_cell_label(da, cell)] = float(ranks.azstats.mchain_uniformity_test(dim=sample)[0])
    return out


def gate_reasons(
    per_var: dict[str, dict[str, float]],
    divergences: int,
    ebfmi: tuple[float, ...],
    gate: Gate = GATE,
    unavailable: dict[str, str] | None = None,
    rank_p: dict[str, float] | None = None,
) -> list[str]:
    """Why a fit fails ``gate``, in words (empty when it passes).

    Parameters
    ----------
    per_var
        Per gated variable: ``max_rhat``, ``min_ess_bulk`` and ``min_ess_tail``. A NaN fails.
    divergences
        Divergent transitions after warm-up, all chains.
    ebfmi
        E-BFMI of each chain.
    gate
        The thresholds.
    unavailable
        ``not_available``: a diagnostic named there fails with its reason instead of its value.
    rank_p
        ``rank_p_values``: the worst cell fails below ``gate.min_rank_p / len(rank_p)``.
    """
    na = unavailable or {}
    reasons = []
    max_rhat, worst = _worst(per_var, "max_rhat", largest=True)
    if "max_rhat" in na:
        reasons.append(f"R-hat not available: {na['max_rhat']}")
    elif not max_rhat <= gate.max_rhat:
        reasons.append(f"max R-hat {max_rhat:.3f} > {gate.max_rhat} (worst: {worst})")
    min_bulk, worst = _worst(per_var, "min_ess_bulk", largest=False)
    if "min_ess_bulk" in na:
        reasons.append(f"bulk ESS not available: {na['min_ess_bulk']}")
    elif not min_bulk >= gate.min_ess_bulk:
        reasons.append(f"min bulk ESS {min_bulk:.0f} < {gate.min_ess_bulk:.0f} (worst: {worst})")
    min_tail, worst = _worst(per_var, "min_ess_tail", largest=False)
    if "min_ess_tail" in na:
        reasons.append(f"tail ESS not available: {na['min_ess_tail']}")
    elif not min_tail >= gate.min_ess_tail:
        reasons.append(f"min tail ESS {min_tail:.0f} < {gate.min_ess_tail:.0f} (worst: {worst})")
    if divergences > gate.max_divergences:
        reasons.append(f"{divergences} divergent transitions (allowed {gate.max_divergences})")
    if "ebfmi" in na:
        reasons.append(f"E-BFMI not available: {na['ebfmi']}")
    elif ebfmi and min(ebfmi) < gate.min_ebfmi:
        reasons.append(f"E-BFMI {min(ebfmi):.2f} < {gate.min_ebfmi} on some chain")
    if rank_p:
        worst_cell = min(rank_p, key=lambda k: rank_p[k])
        if rank_p[worst_cell] < gate.min_rank_p / len(rank_p):
            reasons.append(
                f"chains disagree (rank-ECDF p {rank_p[worst_cell]:.1e} < {gate.min_rank_p}/"
                f"{len(rank_p)} cells; worst: {worst_cell})"
            )
    return reasons


def not_available(
    per_var: dict[str, dict[str, float]], ebfmi: tuple[float, ...], chains: int
) -> dict[str, str]:
    """Why a diagnostic is NaN, by ``Diagnostics`` field (empty when every one is a number).

    R-hat compares chains, so one chain has none; ESS and E-BFMI are undefined for too few
    draws or draws that never change.
    """
    out = {}
    if chains < 2:
        out["max_rhat"] = (
            f"it needs at least 2 chains and this fit has {chains}, so convergence cannot be "
            "checked"
        )
    for key in ("max_rhat", "min_ess_bulk", "min_ess_tail"):
        names = [name for name, values in per_var.items() if np.isnan(values[key])]
        if names and key not in out:
            out[key] = (
                f"undefined for {', '.join(names)} (too few draws, or draws that never change)"
            )
    chains_nan = [i for i, e in enumerate(ebfmi) if np.isnan(e)]
    if chains_nan:
        out["ebfmi"] = f"undefined on chain(s) {chains_nan} (too few draws)"
    return out


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's warnings about empty slices: one chain or too few draws make ArviZ's
    diagnostics NaN, and ``not_available`` says why in words instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _nan_extreme(values: np.ndarray, largest: bool) -> float:
    """The largest (or smallest) value that is a number; NaN, without a warning, when none is."""
    finite = np.asarray(values, dtype=float)
    finite = finite[~np.isnan(finite)]
    if finite.size == 0:
        return float("nan")
    return float(finite.max() if largest else finite.min())


def _worst(per_var: dict[str, dict[str, float]], key: str, largest: bool) -> tuple[float, str]:
    """The worst value of ``key`` over the variables and its variable; a NaN is the worst."""
    for name, values in per_var.items():
        if np.isnan(values[key]):
            return float("nan"), name
    pick = max if largest else min
    name = pick(per_var, key=lambda k: per_var[k][key])
    return per_var[name][key], name


def max_treedepth_hits(stats: xr.Dataset, max_treedepth: Any = None) -> int:
    """Draws that stopped at the maximum tree depth, from a backend's sample statistics.

    nutpie and PyMC's NUTS flag them; numpyro reports each draw's depth, compared with
    ``max_treedepth``. -1 when neither is available.
    """
    for flag in ("maxdepth_reached", "reached_max_treedepth"):
        if flag in stats:
            return int(stats[flag].sum())
    if "tree_depth" in stats and max_treedepth is not None:
        return int((stats["tree_depth"] >= int(max_treedepth)).sum())
    return -1
