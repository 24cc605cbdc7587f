"""The SBC figure: ArviZ's Delta-ECDF of the ranks, one panel per population parameter."""

from __future__ import annotations

import numpy as np
import xarray as xr

from hbm.results.plots import SBC_FIGURE_VARS, sbc_ecdf_plot
from hbm.results.report_figures import pc_png


def _ranks(n_sims: int = 40, n_draws: int = 200) -> xr.Dataset:
    rng = np.random.default_rng(0)
    ranks = {
        "a0": ("simulation", rng.integers(0, n_draws + 1, n_sims)),
        "sigma_a": ("simulation", rng.integers(0, n_draws + 1, n_sims)),
        "mu": (("simulation", "feature"), rng.integers(0, n_draws + 1, (n_sims, 3))),
        "tau": (("simulation", "feature"), rng.integers(0, n_draws + 1, (n_sims, 3))),
    }
    return xr.Dataset(ranks, coords={"feature": ["stress", "alcohol", "sleep"]})


def test_one_panel_per_population_parameter_as_pit_values():
    pc = sbc_ecdf_plot(_ranks(), n_draws=200)
    assert SBC_FIGURE_VARS == ("a0", "sigma_a", "mu")  # tau is in the tests, not the figure
    data = pc.data  # the PIT values the figure tests: ranks mapped into (0, 1)
    assert set(data.data_vars) == {"a0", "sigma_a", "mu"}
    for name in data.data_vars:
        values = data[name].values
        assert ((values > 0) & (values < 1)).all()
    assert float(data["a0"].max()) <= (200 + 0.5) / 201
    assert pc_png(pc).startswith(b"\x89PNG")
