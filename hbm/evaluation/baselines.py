"""The models a personalization study compares, behind one interface.

``fit_model(name, train, priors, ...)`` returns a ``Fitted`` whose ``predict(design)`` gives
P(migraine) for every row of a design built with the training centring; a user the model has not
seen gets its population (cold-start) prediction. Models (``MODELS``):

* ``seed-fixed``: the earlier production model, ``p = sigmoid(w . g + b)``, ``w = (0.5, 0.4, 0.45,
  0.35)`` for the groups stress, sleep_debt, hormonal, environmental, ``b = -1.8``, where ``g`` is
  each group's mean centred exposure (the mean over the group's features of ``Design.x``; a group
  the priors lack contributes 0). Nothing is fitted.
* ``global``: complete pooling, one set of weights for everyone (intercepts per user, pooled), the
  same priors, NUTS.
* ``no-pooling``: each user alone, weights around the priors' means (``hbm.model.build``), NUTS.
* ``hbm``: partial pooling, NUTS.
* ``embedding``: features concatenated with a 16-dimensional user embedding, Linear(., 32), ReLU,
  Dropout(0.2), Linear(32, 1); Adam; binary cross-entropy; early stopping on the last
  ``VALIDATION_FRACTION`` of each user's training days (time-ordered). Unseen users get the mean
  embedding. JAX + flax (nnx) + optax.
* ``embedding-reg``: plus ``lambda * ||W1_features - W_prior||^2`` (lambda 0.1), with the prior
  layer's rows ``W_prior[k, :] = m_k`` (the priors' mean log-odds of feature ``k``) in every hidden
  unit: with the second layer at ``1/32`` each, that network's logit is the prior linear score
  wherever the units are active.
* ``embedding-prior-init``: the first layer's feature rows start at ``W_prior`` and the second
  layer at ``1/32`` (then trained without the penalty).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from hbm.data.exposures import Design
from hbm.data.priors import Priors
from hbm.errors import HBMError
from hbm.inference.fitting import FitResult, SamplerConfig, fit
from hbm.model.options import Pooling

MODELS = (
    "seed-fixed",
    "global",
    "no-pooling",
    "hbm",
    "embedding",
    "embedding-reg",
    "embedding-prior-init",
)
NUTS_POOLING: dict[str, Pooling] = {"global": "complete", "no-pooling": "none", "hbm": "partial"}
SEED_FIXED_WEIGHTS = {"stress": 0.5, "sleep_debt": 0.4, "hormonal": 0.45, "environmental": 0.35}
SEED_FIXED_BIAS = -1.8
#: L2 penalty of the regularized embedding model (the network's settings are in ``neural``).
REG_LAMBDA = 0.1


@dataclass(frozen=True)
class Fitted:
    """A fitted model: its name, a predictor and, for per-user models, the fit itself."""

    name: str
    predict: Callable[[Design], np.ndarray]
    result: FitResult | None = None
    info: dict[str, Any] = field(default_factory=dict)


def seed_fixed_logit(design: Design, priors: Priors) -> np.ndarray:
    """Linear predictor of the earlier production model (module doc)."""
    groups = np.array([f.group for f in priors.features])
    eta = np.full(design.n_obs, SEED_FIXED_BIAS)
    for group, weight in SEED_FIXED_WEIGHTS.items():
        cols = groups == group
        if cols.any():
            eta += weight * design.x[:, cols].mean(axis=1)
    return eta


def fit_model(
    name: str,
    train: Design,
    priors: Priors,
    sampler: SamplerConfig | None = None,
    seed: int = 0,
) -> Fitted:
    """Fit one of ``MODELS`` on a training design.

    Parameters
    ----------
    name
        The model (module doc).
    train
        Training rows (centred with their own means; predict on designs with that centring).
    priors
        Features and priors.
    sampler
        NUTS settings for ``global``, ``no-pooling`` and ``hbm``.
    seed
        Seed of the neural models (initialisation, dropout).
    """
    if name not in MODELS:
        raise HBMError(f"model '{name}' is unknown; expected one of {MODELS}")
    if name == "seed-fixed":
        return Fitted(name, lambda d: special.expit(seed_fixed_logit(d, priors)))
    if name in NUTS_POOLING:
        from hbm.results.prediction import predict_design

        result = fit(train, priors, sampler or SamplerConfig(), pooling=NUTS_POOLING[name])
        tree = result.tree

        def predict_nuts(d: Design) -> np.ndarray:
            return np.asarray(predict_design(tree, d, seed=seed)["risk_mean"].to_numpy())

        return Fitted(name, predict_nuts, result, {"reliable": result.diagnostics.reliable})
    from hbm.evaluation.neural import fit_embedding

    prior_means = priors.weight_priors()[0]
    predict, info = fit_embedding(
        train,
        prior_means,
        reg=REG_LAMBDA if name == "embedding-reg" else 0.0,
        prior_init=name == "embedding-prior-init",
        seed=seed,
    )
    return Fitted(name, predict, None, info)


def weights_of(fitted: Fitted) -> pd.DataFrame | None:
    """Per-user weight table of a NUTS model (``hbm.results.tables.weights_table``), else
    ``None``."""
    if fitted.result is None or "w" not in fitted.result.tree["posterior"].data_vars:
        return None
    from hbm.results.tables import weights_table

    return weights_table(fitted.result.tree, fitted.result.priors)
