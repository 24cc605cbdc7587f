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
* ``hbm-no-clustering``: ``hbm`` without the clustering term: fitted with
  ``hbm.data.priors.without_clustering(priors)`` on the design without the ``attack_yesterday``
  column (``model_design``; each feature is centred on its own, so that is the design those
  priors build), and it predicts from designs without it. It shows what the clustering term
  adds; with priors that have no clustering block it is the same model as ``hbm``.
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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from hbm.data.exposures import Design, ExposureMeans
from hbm.data.priors import Priors, without_clustering
from hbm.errors import HBMError
from hbm.inference.fitting import FitResult, SamplerConfig, fit
from hbm.model.options import Pooling

MODELS = (
    "seed-fixed",
    "global",
    "no-pooling",
    "hbm",
    "hbm-no-clustering",
    "embedding",
    "embedding-reg",
    "embedding-prior-init",
)
NUTS_POOLING: dict[str, Pooling] = {
    "global": "complete",
    "no-pooling": "none",
    "hbm": "partial",
    "hbm-no-clustering": "partial",
}
#: Models that leave the clustering term out (fitted with ``without_clustering(priors)``).
NO_CLUSTERING = frozenset({"hbm-no-clustering"})
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


def default_models(priors: Priors) -> tuple[str, ...]:
    """Every model of ``MODELS``; ``hbm-no-clustering`` only where the priors have the clustering
    term (otherwise it is ``hbm`` again)."""
    return tuple(m for m in MODELS if m not in NO_CLUSTERING or priors.clustering is not None)


def model_priors(name: str, priors: Priors) -> Priors:
    """The priors a model is fitted with: ``without_clustering(priors)`` for ``NO_CLUSTERING``."""
    return without_clustering(priors) if name in NO_CLUSTERING else priors


def model_design(name: str, design: Design, priors: Priors) -> Design:
    """A design (built with ``priors``) restricted to the features of ``model_priors(name, ...)``.

    Centring is per feature, so the columns kept are those the model's own priors would build.
    """
    keys = model_priors(name, priors).keys
    if keys == design.features:
        return design
    keep = np.array([f in keys for f in design.features])
    features = tuple(f for f in design.features if f in keys)
    if features != keys:
        raise HBMError(f"design features {list(design.features)} lack some of {list(keys)}")
    means = ExposureMeans(features, tuple(design.exposure_means.as_array(features).tolist()))
    return replace(
        design,
        x=design.x[:, keep],
        exposure=design.exposure[:, keep],
        features=features,
        exposure_means=means,
        lag_filled={k: n for k, n in design.lag_filled.items() if k in keys},
    )


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
        Training rows (centred with their own means; predict on designs with that centring),
        built with ``priors``.
    priors
        Features and priors (``hbm-no-clustering`` leaves the clustering term out).
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

        result = fit(
            model_design(name, train, priors),
            model_priors(name, priors),
            sampler or SamplerConfig(),
            pooling=NUTS_POOLING[name],
        )
        tree = result.tree

        def predict_nuts(d: Design) -> np.ndarray:
            risk = predict_design(tree, model_design(name, d, priors), seed=seed)["risk_mean"]
            return np.asarray(risk.to_numpy())

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
