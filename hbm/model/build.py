"""The hierarchical logistic model: ``build_model(design, priors, pooling)``.

``logit P(migraine[u,t]) = a[u] + sum_k w[u,k] x[u,t,k]`` with ``x`` the centred exposures.

* ``partial`` (default): ``w[u,k] ~ Normal(mu[k], tau[k])``, ``mu[k] ~ Normal(m_k, s_k)``,
  ``tau[k] ~ HalfNormal(t_k)`` from the priors file; ``a[u] ~ Normal(a0, sigma_a)``.
* ``none``: ``w[u,k] ~ Normal(m_k, NO_POOLING_SD)`` independently, ``a[u] ~ Normal(logit(base
  rate), NO_POOLING_INTERCEPT_SD)``: each user alone with the prior means.
* ``complete``: ``w[u,k] = mu[k]`` for every user (intercepts stay per user and pooled), the
  one-size-fits-all model.

Parameterization (partial pooling) is chosen per (user, feature) cell from the data
(``choose_centring``): each cell gets a degree of centring ``lambda = spread^2 / (spread^2 + se^2)``
in [0, 1], with ``se`` the user's own standard error of the weight and ``spread`` the between-user
SD (from a pilot fit, see ``hbm.inference.fitting.fit``). ``lambda = 1`` is the centred form (``w =
z``,
``z ~ Normal(mu, tau)``), ``lambda = 0`` the non-centred one (``w = mu + tau z``, ``z ~ Normal(0,
1)``). Every cell is one element of the random variable ``z[user, feature]``, so the sampler
sees one vector whatever the mix.

Two forms of one model (``likelihood``): ``"pointwise"`` has the outcome ``y`` as a random
variable (prior draws, SBC, the reference for ``hbm.inference.fitting``'s log-likelihood per row);
``"fused"``
computes the same log density with the likelihood as one operation (``hbm.model.likelihood``) and is
what ``hbm.inference.fitting`` samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from hbm.data.exposures import Design
from hbm.data.priors import Priors
from hbm.errors import FitError
from hbm.model.likelihood import LAYOUTS, Layout, flat_exposures, quantize_exposures, segment_logp
from hbm.model.options import (
    LIKELIHOODS,
    PARAMETERIZATIONS,
    POOLINGS,
    Likelihood,
    Parameterization,
    Pooling,
)
from hbm.model.population import NO_POOLING_INTERCEPT_SD, NO_POOLING_SD

#: Model data of the fused likelihood: the rows regrouped by user and the exposures' scale per
#: feature. They are data (shared variables), not constants: numba cannot cache a function with
#: large constant arrays inside, and a constant would tie the compiled log density to one diary.
#: A fit drops them from its saved ``constant_data`` (``hbm.inference.fitting.draw``).
FUSED_DATA = ("x_by_user", "y_by_user", "user_offsets", "exposure_scale")
#: The raw variables behind the partially centred ``a`` and ``w`` (``_partially_centred``): the
#: sampler's coordinates, which ``a`` and ``w`` express; a fit does not keep their draws.
RAW_INTERCEPTS, RAW_WEIGHTS = "za", "z"
RAW_VARS = (RAW_INTERCEPTS, RAW_WEIGHTS)


def rows_by_user(user_index: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Row order that groups the rows by user, and each user's offsets into it.

    Returns
    -------
    (order, offsets)
        ``x[order]`` lists user 0's rows first (in their original order), then user 1's; user
        ``u`` owns positions ``offsets[u]:offsets[u + 1]``.
    """
    counts = np.bincount(user_index, minlength=n_users)
    order = np.argsort(user_index, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return order, offsets


@dataclass(frozen=True)
class GroupedRows:
    """A design's rows as the fused likelihood reads them (``hbm.model.likelihood``): sorted by
    user,
    exposures as 16-bit codes flattened in ``layout``, outcomes in float32."""

    x_flat: np.ndarray  # int16 codes, (obs * feature,) in ``layout``
    y: np.ndarray  # float32 (obs,), sorted
    offsets: np.ndarray  # (user + 1,): user u owns sorted rows offsets[u]:offsets[u + 1]
    order: np.ndarray  # (obs,): sorted row j is the design's row order[j]
    scale: np.ndarray  # (feature,): x ~= codes * scale


def grouped_rows(
    design: Design,
    layout: Layout = "blocked",
    quantized: tuple[np.ndarray, np.ndarray] | None = None,
) -> GroupedRows:
    """The design's rows grouped by user for the fused likelihood (``GroupedRows``);
    ``quantized``: ``quantize_exposures(design.x)`` when the caller has it already."""
    codes, scale = quantized if quantized is not None else quantize_exposures(design.x)
    return group_rows(codes, scale, design.y, design.user_index, len(design.users), layout)


def group_rows(
    codes: np.ndarray,
    scale: np.ndarray,
    y: np.ndarray,
    user_index: np.ndarray,
    n_users: int,
    layout: Layout = "blocked",
) -> GroupedRows:
    """``grouped_rows`` from the arrays themselves (a saved fit's ``constant_data``)."""
    order, offsets = rows_by_user(user_index, n_users)
    return GroupedRows(
        x_flat=np.ascontiguousarray(flat_exposures(codes[order], offsets, layout), dtype=np.int16),
        y=np.ascontiguousarray(y[order], dtype=np.float32),
        offsets=offsets,
        order=order,
        scale=scale,
    )


def _bernoulli_logit_logp(value: pt.TensorVariable, eta: pt.TensorVariable) -> pt.TensorVariable:
    # Bernoulli log-mass of a 0/1 outcome: y * eta - log(1 + exp(eta)). PyMC's Bernoulli(logit_p)
    # evaluates both branches of a switch; this form takes about a third off a gradient (medium).
    out: pt.TensorVariable = value * eta - pt.softplus(eta)
    return out


def _bernoulli_logit_dist(eta: pt.TensorVariable, size: pt.TensorVariable) -> pt.TensorVariable:
    # Draws (prior and posterior predictive) come from PyMC's Bernoulli; only its logp is replaced.
    out: pt.TensorVariable = pm.Bernoulli.dist(logit_p=eta, size=size)
    return out


def _user_rates(design: Design) -> tuple[np.ndarray, np.ndarray]:
    """Days logged and a smoothed attack rate per user."""
    n_users = len(design.users)
    counts = np.bincount(design.user_index, minlength=n_users).astype(float)
    attacks = np.bincount(design.user_index, weights=design.y, minlength=n_users)
    return counts, (attacks + 0.5) / (counts + 1.0)


def weight_standard_errors(design: Design) -> np.ndarray:
    """Approximate SE of each user's own weight estimate, ``(user, feature)``.

    The Fisher information of a logistic weight is ``sum_t p(1-p) (x - mean_u x)^2``, taken at the
    user's smoothed attack rate ``p``. Cells with no exposure variation get an infinite SE.
    """
    n_users, n_feat = len(design.users), len(design.features)
    counts, rate = _user_rates(design)
    sums = np.zeros((n_users, n_feat))
    np.add.at(sums, design.user_index, design.x)
    means = sums / np.maximum(counts, 1.0)[:, None]
    dev2 = np.zeros((n_users, n_feat))
    np.add.at(dev2, design.user_index, (design.x - means[design.user_index]) ** 2)
    info = (rate * (1.0 - rate))[:, None] * dev2
    with np.errstate(divide="ignore"):
        se: np.ndarray = np.where(info > 0, 1.0 / np.sqrt(info), np.inf)
    return se


def intercept_standard_errors(design: Design) -> np.ndarray:
    """Approximate SE of each user's own logit attack rate, ``(user,)``."""
    counts, rate = _user_rates(design)
    with np.errstate(divide="ignore"):
        se: np.ndarray = np.where(counts > 0, 1.0 / np.sqrt(counts * rate * (1 - rate)), np.inf)
    return se


def centring(se: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Degree of centring ``lambda = spread^2 / (spread^2 + se^2)`` of each cell, in [0, 1].

    This is the optimal partial centring of a normal hierarchy (Papaspiliopoulos, Roberts & Sköld
    2007): 1 (centred) when the user's own data pin the cell down far more tightly than the
    between-user spread, 0 (non-centred) when they say little next to it.
    """
    spread2 = np.square(spread)
    lam: np.ndarray = spread2 / (spread2 + np.square(se))
    return np.clip(np.nan_to_num(lam, nan=0.0), 0.0, 1.0)


def _partially_centred(
    name: str,
    loc: pt.TensorVariable,
    scale: pt.TensorVariable,
    lam: np.ndarray,
    dims: tuple[str, ...],
) -> pt.TensorVariable:
    """``loc + scale * eps`` written with centring ``lam`` per cell, from one RV ``name``.

    ``raw ~ Normal(lam * loc, scale**lam)``, ``value = loc + scale**(1 - lam) * (raw - lam * loc)``:
    ``lam = 0`` is the non-centred form, ``lam = 1`` the centred one; the value's distribution is
    ``Normal(loc, scale)`` for every ``lam``.
    """
    # Data, not a constant: a compiled model can be refitted with another centring (the pilot
    # fit's model serves the main fit, see hbm.inference.fitting), and the fit file records it.
    lam_t = pm.Data(f"centring_{name}", lam, dims=dims)
    # scale**lam as exp(lam * log scale): one exponential per cell serves the prior's sigma, its
    # log (PyTensor folds log(exp(.))) and scale**(1 - lam) = scale / scale**lam
    scale_lam = pt.exp(lam_t * pt.log(scale))
    raw = pm.Normal(name, mu=lam_t * loc, sigma=scale_lam, dims=dims)
    out: pt.TensorVariable = loc + scale / scale_lam * (raw - lam_t * loc)
    return out


@dataclass(frozen=True)
class Centring:
    """Degree of centring (0 = non-centred, 1 = centred) of each weight and intercept."""

    weights: np.ndarray  # (user, feature)
    intercepts: np.ndarray  # (user,)
    rule: str

    def summary(self) -> dict[str, float]:
        return {
            "weights_mean_lambda": float(self.weights.mean()) if self.weights.size else 0.0,
            "weights_share_mostly_centred": float((self.weights > 0.5).mean())
            if self.weights.size
            else 0.0,
            "intercepts_mean_lambda": float(self.intercepts.mean())
            if self.intercepts.size
            else 0.0,
        }


def choose_centring(
    design: Design,
    priors: Priors,
    parameterization: Parameterization = "auto",
    tau: np.ndarray | None = None,
    sigma_a: float | None = None,
) -> Centring:
    """Centring of every cell from the data (see ``centring``).

    Parameters
    ----------
    design, priors
        The data and priors of the model.
    parameterization
        ``"auto"`` (the rule), ``"centred"`` (all 1) or ``"noncentred"`` (all 0).
    tau, sigma_a
        Estimates of the between-user spreads (a pilot fit's); ``None`` uses the prior scales.
    """
    shape = (len(design.users), len(design.features))
    if parameterization not in PARAMETERIZATIONS:
        raise FitError(
            f"parameterization '{parameterization}' is unknown; expected one of {PARAMETERIZATIONS}"
        )
    if parameterization != "auto":
        value = 1.0 if parameterization == "centred" else 0.0
        return Centring(np.full(shape, value), np.full(len(design.users), value), parameterization)
    spread = np.asarray(tau, dtype=float) if tau is not None else priors.weight_priors()[2]
    spread_a = sigma_a if sigma_a is not None else priors.intercept.sigma_a_scale
    source = "pilot-fit spreads" if tau is not None else "prior scales"
    return Centring(
        weights=centring(weight_standard_errors(design), spread[None, :]),
        intercepts=centring(intercept_standard_errors(design), np.asarray(spread_a)),
        rule=f"lambda = spread^2 / (spread^2 + se^2) per cell, spreads from {source}",
    )


def _narrow_data(name: str, value: np.ndarray, dtype: type) -> pt.TensorVariable:
    """A data container of the current model in ``dtype`` (C-contiguous).

    ``pm.Data`` would cast it back to float64 (``floatX``) or int64: the fused likelihood's data
    stay narrow, because each gradient streams all of them (BENCHMARKS.md, "What changed").
    """
    shared = pytensor.shared(np.ascontiguousarray(value, dtype=dtype), name)
    pm.modelcontext(None).register_data_var(shared)
    out: pt.TensorVariable = shared
    return out


def check_exposures(design: Design) -> None:
    """A ``FitError`` naming the first exposure that is not finite, if any.

    16-bit codes (``quantize_exposures``) would turn such a value into a number silently.
    """
    bad = np.argwhere(~np.isfinite(design.x))
    if bad.size:
        row, col = bad[0]
        raise FitError(
            f"{len(bad)} exposure values are not finite; the first is row {row}, feature "
            f"'{design.features[col]}' ({design.x[row, col]}); expected finite numbers"
        )


def build_model(
    design: Design,
    priors: Priors,
    pooling: Pooling = "partial",
    centring: Centring | None = None,
    likelihood: Likelihood = "pointwise",
    layout: Layout = "blocked",
    *,
    quantized: tuple[np.ndarray, np.ndarray] | None = None,
) -> pm.Model:
    """Build the PyMC model of a design.

    Parameters
    ----------
    design
        Centred exposures, user index and outcomes (``hbm.data.exposures.exposures``).
    priors
        Population priors; features must match ``design.features`` in order.
    pooling
        ``"partial"`` (hierarchical), ``"none"`` or ``"complete"``.
    centring
        Partial centring per cell (``choose_centring``; ``None``: the rule on the priors' spreads).
    likelihood
        ``"pointwise"``: the outcome ``y`` is a random variable (prior and predictive draws,
        log-likelihood per row, SBC), observed through ``pm.Data`` so that refits with other
        outcomes reuse the compiled code (ARCHITECTURE.md). ``"fused"``: the same log density
        as one ``Potential`` (``hbm.model.likelihood``), faster a gradient (BENCHMARKS.md); for
        sampling only, no ``y``.
    layout
        With the fused likelihood, how the exposures are stored
        (``hbm.model.likelihood.flat_exposures``):
        ``"blocked"`` for numba (nutpie, PyMC's NUTS), ``"feature"`` for JAX (numpyro).
    quantized
        ``hbm.model.likelihood.quantize_exposures(design.x)`` if the caller has it (else computed).

    Returns
    -------
    pm.Model
        Variables ``a0, sigma_a, za, a, mu, tau, z, w`` (as the pooling has them) and ``y``
        (Bernoulli on the logit scale, a ``CustomDist``; the potential ``loglik`` when fused),
        with dims ``user``, ``feature``, ``obs``.
    """
    _check_inputs(design, priors, pooling, layout)
    cen = centring if centring is not None else choose_centring(design, priors)
    if likelihood not in LIKELIHOODS:
        raise FitError(f"likelihood '{likelihood}' is unknown; expected one of {LIKELIHOODS}")
    coords: dict[str, Any] = {"user": list(design.users), "feature": list(design.features)}
    coords["obs"] = np.arange(design.n_obs)
    # both forms see the exposures as the fused one stores them, 16-bit codes x a scale per
    # feature (rounded by at most 1/65534 of each feature's largest |x|): one model
    codes, scale = quantized if quantized is not None else quantize_exposures(design.x)
    with pm.Model(coords=coords) as model:
        x = pm.Data("x", codes * scale, dims=("obs", "feature"))
        uidx = pm.Data("user_index", design.user_index, dims="obs")
        a, w = _user_parameters(design, priors, pooling, cen)
        if likelihood == "fused":
            rows = grouped_rows(design, layout, (codes, scale))
            logp = segment_logp(
                _narrow_data("x_by_user", rows.x_flat, np.int16),
                _narrow_data("y_by_user", rows.y, np.float32),
                pm.Data("user_offsets", rows.offsets),
                # x . w = codes . (w * scale); the scale as data, not a constant, so that the
                # compiled log density serves every diary of this form (hbm.inference.nutpie_cache
                # caches it)
                w * pm.Data("exposure_scale", scale, dims="feature"),
                a,
                layout,
            )
            pm.Potential("loglik", logp)
        else:
            pm.CustomDist(
                "y",
                a[uidx] + (x * w[uidx]).sum(axis=-1),
                logp=_bernoulli_logit_logp,
                dist=_bernoulli_logit_dist,
                observed=pm.Data("y_observed", design.y, dims="obs"),
                dims="obs",
            )
    return model


def _check_inputs(design: Design, priors: Priors, pooling: str, layout: str) -> None:
    if pooling not in POOLINGS:
        raise FitError(f"pooling '{pooling}' is unknown; expected one of {POOLINGS}")
    if layout not in LAYOUTS:
        raise FitError(f"layout '{layout}' is unknown; expected one of {LAYOUTS}")
    if design.features != priors.keys:
        raise FitError(
            f"design features {list(design.features)} do not match the priors' {list(priors.keys)}"
        )
    if design.n_obs == 0:
        raise FitError("the design has no observations to fit")
    check_exposures(design)


def _user_parameters(
    design: Design, priors: Priors, pooling: str, cen: Centring
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Each user's intercept ``a`` and weights ``w`` under the pooling (inside the model)."""
    m, s, t = priors.weight_priors()
    ip = priors.intercept
    if pooling == "none":
        a = pm.Normal("a", mu=ip.logit_base_rate, sigma=NO_POOLING_INTERCEPT_SD, dims="user")
        w = pm.Normal("w", mu=m, sigma=NO_POOLING_SD, dims=("user", "feature"))
        return a, w
    a0 = pm.Normal("a0", mu=ip.logit_base_rate, sigma=ip.a0_sd)
    sigma_a = pm.HalfNormal("sigma_a", sigma=ip.sigma_a_scale)
    a = pm.Deterministic(
        "a", _partially_centred(RAW_INTERCEPTS, a0, sigma_a, cen.intercepts, ("user",)), dims="user"
    )
    mu = pm.Normal("mu", mu=m, sigma=s, dims="feature")
    if pooling == "complete":
        shape = (len(design.users), len(design.features))
        w = pm.Deterministic("w", pt.broadcast_to(mu, shape), dims=("user", "feature"))
        return a, w
    tau = pm.HalfNormal("tau", sigma=t, dims="feature")
    w = pm.Deterministic(
        "w",
        _partially_centred(RAW_WEIGHTS, mu, tau, cen.weights, ("user", "feature")),
        dims=("user", "feature"),
    )
    return a, w
