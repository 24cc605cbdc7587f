"""A fit's pointwise log-likelihood and posterior predictive draws, computed when asked.

The fit samples the fused likelihood, which has no ``y``. A fit stores its posterior, the
design it was fitted to (``constant_data``: ``x`` and ``user_index``) and the outcomes
(``observed_data``); ``with_predictive`` computes the groups ArviZ expects for LOO and
predictive checks from them, on evenly thinned draws through one numba kernel
(``hbm.model.likelihood.rows_logp_draw``): about a second for a medium fit, where storing them
took about 120 MB of fit.nc (issue 23; BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from hbm.data.exposures import Design
from hbm.inference.config import SamplerConfig, thinning_step
from hbm.model.build import group_rows
from hbm.model.likelihood import quantize_exposures, rows_logp_draw


def observed_data(design: Design) -> xr.DataTree:
    """The ``observed_data`` group of a fit: each row's outcome (int8, dim ``obs``)."""
    y = np.asarray(design.y, dtype=np.int8)
    return xr.DataTree(xr.Dataset({"y": ("obs", y)}, coords={"obs": np.arange(design.n_obs)}))


def _thinned_posterior(tree: xr.DataTree, max_draws: int) -> xr.Dataset:
    post = tree["posterior"].to_dataset()
    step = thinning_step(post.sizes["chain"] * post.sizes["draw"], max_draws)
    return post.isel(draw=slice(None, None, step))


def _settings(tree: xr.DataTree, max_draws: int | None, seed: int | None) -> tuple[int, int]:
    """The fit's own ``predictive_draws`` and ``seed`` (its attrs) unless given."""
    from hbm.inference.provenance import read_provenance

    defaults = SamplerConfig()
    if "sampler_config" in tree.attrs:
        recorded = read_provenance(tree.attrs).sampler_config
        defaults = SamplerConfig(
            predictive_draws=int(recorded.get("predictive_draws", defaults.predictive_draws)),
            seed=int(recorded.get("seed", defaults.seed)),
        )
    return (
        defaults.predictive_draws if max_draws is None else int(max_draws),
        defaults.seed if seed is None else int(seed),
    )


def _codes(tree: xr.DataTree, x: np.ndarray, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The 16-bit codes and scale the fit read (attrs ``exposure_scale``; else quantized again)."""
    from hbm.inference.provenance import read_provenance

    if "exposure_scale" in tree.attrs:
        by_feature = read_provenance(tree.attrs).exposure_scale
        scale = np.array([by_feature[f] for f in features], dtype=np.float64)
        return np.rint(x / scale).astype(np.int16), scale
    return quantize_exposures(x)


def with_predictive(
    tree: xr.DataTree, max_draws: int | None = None, seed: int | None = None
) -> xr.DataTree:
    """The fit with ``log_likelihood`` and ``posterior_predictive`` added (a shallow copy).

    On at most ``max_draws`` evenly thinned draws of ``w`` and ``a`` (default: the fit's
    ``predictive_draws``): each row's Bernoulli log-mass (float32) and one predictive outcome
    per draw (int8, from ``numpy.random.default_rng(seed)``, default the fit's seed), the
    pointwise model's ``y`` (a test holds it to PyMC's ``compute_log_likelihood``). The same
    tree and settings give the same groups, so LOO from a loaded fit equals LOO at fit time.

    Parameters
    ----------
    tree
        A fit (``hbm.fit``'s tree or ``hbm.results.io.load_fit``'s), with its posterior,
        ``constant_data`` (``x``, ``user_index``) and ``observed_data`` (``y``).
    max_draws, seed
        As above.

    Returns
    -------
    xarray.DataTree
        ``tree``'s groups and attrs, the two groups added (replaced if present).
    """
    max_draws, seed = _settings(tree, max_draws, seed)
    thin = _thinned_posterior(tree, max_draws)
    data = tree["constant_data"].to_dataset()
    users, features = list(thin["user"].values), list(data["feature"].values)
    x = np.asarray(data["x"].transpose("obs", "feature").values, dtype=np.float64)
    y = np.asarray(tree["observed_data"]["y"].values)
    codes, scale = _codes(tree, x, features)
    rows = group_rows(codes, scale, y, np.asarray(data["user_index"].values), len(users))
    # x . w = codes . (w * scale), as the fused likelihood reads them
    w = thin["w"].sel(feature=features).transpose("chain", "draw", "user", "feature")
    ws = np.ascontiguousarray(w.values.astype(np.float64) * rows.scale)
    a = np.ascontiguousarray(thin["a"].transpose("chain", "draw", "user").values, np.float64)
    n_chains, n_draws = ws.shape[:2]
    n_obs = len(y)
    logp = np.empty((n_chains, n_draws, n_obs), dtype=np.float32)
    y_rep = np.empty((n_chains, n_draws, n_obs), dtype=np.int8)
    rng = np.random.default_rng(seed)
    for c, d in np.ndindex(n_chains, n_draws):
        uniform = rng.random(n_obs, dtype=np.float32)
        rows_logp_draw(
            rows.x_flat, rows.y, rows.offsets, rows.order, ws[c, d], a[c, d], uniform,
            logp[c, d], y_rep[c, d],
        )  # fmt: skip
    coords = {"chain": thin["chain"].values, "draw": thin["draw"].values, "obs": np.arange(n_obs)}
    dims = ("chain", "draw", "obs")
    out = tree.copy(deep=False)
    out["log_likelihood"] = xr.DataTree(xr.Dataset({"y": (dims, logp)}, coords=coords))
    out["posterior_predictive"] = xr.DataTree(xr.Dataset({"y": (dims, y_rep)}, coords=coords))
    return out
