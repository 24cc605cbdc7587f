"""A fit's pointwise log-likelihood, posterior predictive and observed data, after sampling.

The fit samples the fused likelihood, which has no ``y``; these groups come from thinned draws
through one numba kernel (``hbm.model.likelihood.rows_logp_draw``) instead.
"""

from __future__ import annotations

import time

import numpy as np
import xarray as xr

from hbm.data.exposures import Design
from hbm.inference.config import SamplerConfig, thinning_step
from hbm.model.build import grouped_rows
from hbm.model.likelihood import rows_logp_draw


def _thinned_posterior(dt: xr.DataTree, max_draws: int) -> xr.Dataset:
    post = dt["posterior"].to_dataset()
    step = thinning_step(post.sizes["chain"] * post.sizes["draw"], max_draws)
    return post.isel(draw=slice(None, None, step))


def add_predictive(
    dt: xr.DataTree,
    design: Design,
    cfg: SamplerConfig,
    quantized: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """Add ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` to a fit's tree.

    On at most ``cfg.predictive_draws`` evenly thinned draws of ``w`` and ``a``: each row's
    Bernoulli log-mass (float32) and one predictive outcome per draw (int8, seeded by
    ``cfg.seed``), by ``hbm.model.likelihood.rows_logp_draw`` (the pointwise model's ``y``; a test
    holds it to PyMC's ``compute_log_likelihood``). It releases the interpreter, so the
    diagnostics run beside it (``fit``).

    Parameters
    ----------
    dt
        The fit's tree, with its posterior.
    design
        The design it was fitted to.
    cfg
        Its sampler settings (``predictive_draws``, ``seed``).
    quantized
        ``quantize_exposures(design.x)`` when the caller has it already.

    Returns
    -------
    float
        The seconds taken.
    """
    t1 = time.perf_counter()
    thin = _thinned_posterior(dt, cfg.predictive_draws)
    rows = grouped_rows(design, "blocked", quantized)
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
