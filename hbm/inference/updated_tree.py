"""The tree and design of a fit with some users updated (``hbm.inference.update.update_fit``):
the fit's population draws as they were, the updated users' draws in place of theirs or appended,
their rows added to ``constant_data`` and ``observed_data``."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import xarray as xr

from hbm.data.exposures import Design
from hbm.inference.provenance import stored_last_days


def fit_rows(tree: xr.DataTree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fit's rows: ``x (obs, feature)``, ``user_index (obs,)``, ``y (obs,)``."""
    data = tree["constant_data"]
    x = np.asarray(data["x"].values, dtype=float)
    return x, np.asarray(data["user_index"].values), np.asarray(tree["observed_data"]["y"].values)


def updated_tree(
    tree: xr.DataTree, design: Design, users: list[str], a: np.ndarray, w: np.ndarray
) -> xr.DataTree:
    """``tree`` with ``a (S, U)`` and ``w (S, U, K)`` (chain-major draws) for ``users`` (the fit's,
    then new ones) and ``design``'s rows appended; ``last_days`` and ``n_obs`` updated."""
    post = tree["posterior"].to_dataset()
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    dtype = post["w"].dtype
    coords = {"chain": post["chain"].values, "draw": post["draw"].values, "user": users}
    new_post = post.drop_vars(["a", "w", "user"]).assign_coords(user=users)
    new_post["a"] = xr.DataArray(
        a.reshape(chains, draws, -1).astype(dtype), dims=("chain", "draw", "user"), coords=coords
    )
    new_post["w"] = xr.DataArray(
        w.reshape(chains, draws, len(users), -1).astype(dtype),
        dims=("chain", "draw", "user", "feature"),
        coords={**coords, "feature": post["feature"].values},
    )
    new_post.attrs = dict(post.attrs)
    x_old, ui_old, y_old = fit_rows(tree)
    index = {u: i for i, u in enumerate(users)}
    ui_new = np.array([index[u] for u in design.users], dtype=ui_old.dtype)[design.user_index]
    n = len(ui_old) + design.n_obs
    data = tree["constant_data"].to_dataset()
    per_user = {
        name: data[name].reindex(user=users)
        for name in data.data_vars
        if "user" in data[name].dims and "obs" not in data[name].dims
    }
    constant = xr.Dataset(
        {
            "user_index": ("obs", np.concatenate([ui_old, ui_new])),
            "x": (("obs", "feature"), np.concatenate([x_old, design.x])),
            **per_user,
        },
        coords={"obs": np.arange(n), "feature": post["feature"].values, "user": users},
        attrs=dict(data.attrs),
    )
    y = np.concatenate([y_old, design.y.astype(y_old.dtype)])
    observed = xr.Dataset({"y": ("obs", y)}, coords={"obs": np.arange(n)})
    observed.attrs = dict(tree["observed_data"].attrs)
    out = tree.copy()
    out["posterior"] = xr.DataTree(new_post)
    out["constant_data"] = xr.DataTree(constant)
    out["observed_data"] = xr.DataTree(observed)
    last = {**stored_last_days(tree.attrs), **design.last_days}
    out.attrs["last_days"] = json.dumps({u: list(v) for u, v in last.items()})
    out.attrs["n_obs"] = n
    return out


def all_rows(tree: xr.DataTree, design: Design, users: list[str]) -> Design:
    """The fit's rows and the new ones as one design (the fit's rows without dates)."""
    x_old, ui_old, y_old = fit_rows(tree)
    index = {u: i for i, u in enumerate(users)}
    ui_new = np.array([index[u] for u in design.users], dtype=np.int64)[design.user_index]
    means = np.asarray(design.exposure_means.as_array(design.features))
    x = np.concatenate([x_old, design.x])
    return replace(
        design,
        x=x,
        exposure=x + means,
        y=np.concatenate([y_old, design.y]).astype(design.y.dtype),
        user_index=np.concatenate([ui_old.astype(np.int64), ui_new]),
        users=tuple(users),
        dates=np.concatenate([np.full(len(ui_old), np.datetime64("NaT", "ns")), design.dates]),
        diary_rows=None,
        last_days={**stored_last_days(tree.attrs), **design.last_days},
    )
