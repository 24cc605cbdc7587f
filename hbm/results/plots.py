"""Diagnostic and posterior figures with arviz_plots (matplotlib backend).

Functions return ``PlotCollection`` objects; callers (CLI, report) decide where to save them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import arviz_plots as azp
import matplotlib
import numpy as np
import xarray as xr
from arviz_base import rc_context

from hbm.defaults import CI_KIND, CI_PROB, CiKind

matplotlib.use("Agg")  # files only; no display on the machines this runs on

Backend = Literal["matplotlib", "bokeh", "plotly"]

#: Population-level variables shown in rank/trace plots (per-user ones would be hundreds of panels).
POPULATION_VARS = ("a0", "sigma_a", "mu", "tau")


def _present(tree: xr.DataTree, names: tuple[str, ...]) -> list[str]:
    post = tree["posterior"]
    return [n for n in names if n in post.data_vars]


def _panels(
    ds: xr.Dataset, names: list[str], backend: Backend, row_inches: float
) -> tuple[int, dict[str, Any]]:
    """Panels of a figure with one per element of ``names`` (beyond chain and draw), and the
    matplotlib figure arguments: four panels a row, tall enough that two-line titles do not
    overlap the row above."""
    panels = sum(
        int(np.prod([n for d, n in ds[v].sizes.items() if d not in ("chain", "draw")]))
        for v in names
    )
    kwargs: dict[str, Any] = {}
    if backend == "matplotlib":
        size = (13, row_inches * -(-panels // 4))
        kwargs["figure_kwargs"] = {"figsize": size, "layout": "constrained"}
    return panels, kwargs


def rank_plot(tree: xr.DataTree, backend: Backend = "matplotlib") -> Any:
    """Rank plots of the population-level variables (chains should overlap uniformly)."""
    names = _present(tree, POPULATION_VARS)
    panels, kwargs = _panels(tree["posterior"].to_dataset(), names, backend, 2.1)
    # arviz_plots refuses more than 40 panels by default; the population variables are every
    # panel of this figure (2 + 2 x features: 42 with the shipped priors and clustering)
    with rc_context({"plot.max_subplots": max(panels, 40)}):
        return azp.plot_rank(tree, var_names=names, backend=backend, **kwargs)


def energy_plot(tree: xr.DataTree, backend: Backend = "matplotlib") -> Any:
    """Marginal energy against energy transitions, with E-BFMI per chain."""
    return azp.plot_energy(tree, backend=backend)


def forest_plot(
    tree: xr.DataTree,
    var_names: tuple[str, ...] = ("mu", "tau"),
    ci_prob: float = CI_PROB,
    ci_kind: CiKind = CI_KIND,
    backend: Literal["matplotlib", "bokeh"] = "matplotlib",
) -> Any:
    """Forest plot of the population weights and spreads with the run's interval choice."""
    return azp.plot_forest(
        tree,
        var_names=_present(tree, var_names),
        combined=True,
        ci_kind=ci_kind,
        ci_probs=[0.5, ci_prob],
        backend=backend,
    )


DIAGNOSTIC_FIGURES: dict[str, Callable[..., Any]] = {
    "rank.png": rank_plot,
    "energy.png": energy_plot,
    "forest.png": forest_plot,
}


#: Variables of the SBC figure: the intercept hyper-parameters and the population means.
SBC_FIGURE_VARS = ("a0", "sigma_a", "mu")


def sbc_ecdf_plot(ranks: xr.Dataset, n_draws: int, backend: Backend = "matplotlib") -> Any:
    """Delta-ECDF of the SBC ranks with ArviZ's simultaneous uniformity test (one panel per
    population parameter; ranks of ``n_draws`` posterior draws as PIT values)."""
    names = [n for n in SBC_FIGURE_VARS if n in ranks.data_vars]
    # a rank r of n_draws draws (0..n_draws) is the PIT interval's midpoint
    pit = ((ranks[names] + 0.5) / (n_draws + 1)).rename(simulation="draw").expand_dims(chain=1)
    tree = xr.DataTree.from_dict({"prior_sbc": pit})
    panels, kwargs = _panels(pit, names, backend, 2.4)
    with rc_context({"plot.max_subplots": max(panels, 40)}):
        return azp.plot_ecdf_pit(tree, var_names=names, backend=backend, **kwargs)
