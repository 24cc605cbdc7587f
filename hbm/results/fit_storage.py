"""How fit.nc stores a fit's groups beyond what netCDF does by itself (``hbm.results.io``).

Pure functions on datasets; ``hbm.results.io.save_fit`` and ``load_fit`` apply them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

#: fit.nc stores the exposures as the fit read them: 16-bit codes and a scale per feature, with
#: ``x == codes * scale`` exactly (``hbm.model.likelihood.quantize_exposures``; the attrs'
#: ``exposure_scale``), a tenth of float64's bytes once compressed; ``load_fit`` restores ``x``.
X_CODES, X_SCALE = "x_codes", "x_scale"


def encode_exposures(data: xr.Dataset, attrs: Any) -> xr.Dataset:
    """``constant_data`` with ``x`` as codes and scales, when they give back ``x`` exactly."""
    if "x" not in data or "exposure_scale" not in attrs:
        return data
    x = data["x"].transpose("obs", "feature")
    by_feature = json.loads(attrs["exposure_scale"])
    try:
        scale = np.array([by_feature[str(f)] for f in x["feature"].values], dtype=np.float64)
    except KeyError:
        return data
    with np.errstate(all="ignore"):
        codes = np.rint(x.values / scale)
    if not (np.abs(codes) <= np.iinfo(np.int16).max).all():
        return data
    codes16 = codes.astype(np.int16)
    if not np.array_equal(codes16 * scale, x.values):
        return data  # x is not what the fit's codes give: kept as it is
    return data.drop_vars("x").assign(
        {X_CODES: (("obs", "feature"), codes16), X_SCALE: ("feature", scale)}
    )


def decode_exposures(data: xr.Dataset) -> xr.Dataset:
    """``constant_data`` with ``x`` (float64) in place of its codes and scales."""
    if X_CODES not in data:
        return data
    x = data[X_CODES].astype(np.float64) * data[X_SCALE]
    return data.drop_vars([X_CODES, X_SCALE]).assign(x=x.transpose("obs", "feature"))
