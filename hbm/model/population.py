"""A new user drawn from the population: the generative process of one user, written once.

A user's intercept and weights are ``a = a_loc + a_scale * z_a`` and
``w[k] = w_loc[k] + w_scale[k] * z_w[k]`` with standard normal ``z``. The population is

* partial pooling: ``(a0, sigma_a, mu[k], tau[k])``;
* complete pooling: the same with ``tau = 0`` (every user has the population weights);
* no pooling: the priors' means with the wide SDs the model gives each user
  (``NO_POOLING_INTERCEPT_SD``, ``NO_POOLING_SD``).

``standard_noise`` fixes the layout of the random numbers (all weights' ``z_w`` first, then the
intercepts' ``z_a``), and simulation, prediction for unseen users, cold-start profiles and the
days-needed section all draw through it, so one seed gives one set of new-user draws everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from hbm.data.priors import Priors

#: Under no pooling each user stands alone: ``w[u, k] ~ Normal(prior mean, NO_POOLING_SD)``,
#: ``a[u] ~ Normal(logit(base rate), NO_POOLING_INTERCEPT_SD)`` (``hbm.model.build``).
NO_POOLING_SD = 1.0
NO_POOLING_INTERCEPT_SD = 1.5


@dataclass(frozen=True)
class Population:
    """A new user's distribution per population draw: ``(S,)`` intercepts, ``(S, K)`` weights."""

    a_loc: np.ndarray
    a_scale: np.ndarray
    w_loc: np.ndarray
    w_scale: np.ndarray

    @property
    def n_draws(self) -> int:
        return int(self.w_loc.shape[0])

    def take(self, index: np.ndarray | slice) -> Population:
        """The population draws at ``index`` (thinning, or one draw per simulated user)."""
        return Population(
            self.a_loc[index], self.a_scale[index], self.w_loc[index], self.w_scale[index]
        )


def _stack(post: xr.Dataset, name: str) -> np.ndarray:
    # chain-major, the order of numpy's reshape of (chain, draw, ...)
    arr = post[name].stack(sample=("chain", "draw")).transpose("sample", ...)
    return np.asarray(arr.values, dtype=float)


def pooling_of(post: xr.Dataset) -> str:
    """The pooling a posterior was fitted with, read from the variables it holds."""
    if "mu" not in post:
        return "none"
    return "partial" if "tau" in post else "complete"


def population_of(post: xr.Dataset, priors: Priors | None = None) -> Population:
    """The population of a posterior, one entry per draw (chain-major).

    ``priors`` is needed only for a no-pooling fit, whose "population" is the priors. A posterior
    loaded without ``a0`` (weights only) gives NaN intercepts.
    """
    n = post.sizes["chain"] * post.sizes["draw"]
    pooling = pooling_of(post)
    if pooling == "none":
        if priors is None:
            raise ValueError("a no-pooling fit's new users come from the priors: pass them")
        means = priors.weight_priors()[0]
        return Population(
            np.full(n, priors.intercept.logit_base_rate),
            np.full(n, NO_POOLING_INTERCEPT_SD),
            np.tile(means, (n, 1)),
            np.full((n, len(means)), NO_POOLING_SD),
        )
    mu = _stack(post, "mu")
    tau = _stack(post, "tau") if pooling == "partial" else np.zeros_like(mu)
    if "a0" not in post:  # loaded for weights only (the service's cold-start profile)
        return Population(np.full(n, np.nan), np.full(n, np.nan), mu, tau)
    return Population(_stack(post, "a0"), _stack(post, "sigma_a"), mu, tau)


def standard_noise(
    rng: np.random.Generator, n: int, n_features: int
) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``(z_a (n,), z_w (n, K))`` in hbm's one layout: ``z_w`` drawn first."""
    z_w = rng.standard_normal((n, n_features))
    z_a = rng.standard_normal(n)
    return z_a, z_w


def new_users(pop: Population, z_a: np.ndarray, z_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intercepts ``(n,)`` and weights ``(n, K)`` of new users, one per population draw."""
    return pop.a_loc + pop.a_scale * z_a, pop.w_loc + pop.w_scale * z_w


def new_user_draws(
    post: xr.Dataset, priors: Priors | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One new user per posterior draw (chain-major), from ``numpy.random.default_rng(seed)``.

    Returns
    -------
    a, w
        ``(S,)`` intercepts and ``(S, K)`` weights, K in the posterior's feature order.
    """
    pop = population_of(post, priors)
    z_a, z_w = standard_noise(np.random.default_rng(seed), pop.n_draws, pop.w_loc.shape[1])
    return new_users(pop, z_a, z_w)
