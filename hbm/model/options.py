"""The model's options by name, in a module light enough for the CLI and config to read.

``hbm.model.build`` validates against these; importing them loads no PyMC.
"""

from __future__ import annotations

from typing import Literal

Pooling = Literal["partial", "none", "complete"]
POOLINGS: tuple[str, ...] = ("partial", "none", "complete")
Parameterization = Literal["auto", "centred", "noncentred"]
PARAMETERIZATIONS: tuple[str, ...] = ("auto", "centred", "noncentred")
Likelihood = Literal["pointwise", "fused"]
LIKELIHOODS: tuple[str, ...] = ("pointwise", "fused")
#: A fit's groups computed from its posterior and data when asked
#: (``hbm.inference.predictive.with_predictive``), never stored in fit.nc.
COMPUTED_GROUPS: tuple[str, ...] = ("log_likelihood", "posterior_predictive")
