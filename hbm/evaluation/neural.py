"""The neural user-embedding baseline (JAX + flax nnx + optax); see ``hbm.evaluation.baselines``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hbm.data.exposures import Design, day_rank
from hbm.inference.backends import expose_cpu_devices

EMBED_DIM, HIDDEN, DROPOUT = 16, 32, 0.2
VALIDATION_FRACTION = 0.2
LEARNING_RATE = 0.01
MAX_EPOCHS, PATIENCE = 400, 25


class EmbeddingMLP(nnx.Module):
    """``[x, e_u] -> Linear(., 32) -> ReLU -> Dropout(0.2) -> Linear(32, 1)``."""

    def __init__(self, n_users: int, n_features: int, rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(n_users, EMBED_DIM, rngs=rngs)
        self.l1 = nnx.Linear(n_features + EMBED_DIM, HIDDEN, rngs=rngs)
        self.drop = nnx.Dropout(DROPOUT, rngs=rngs)
        self.l2 = nnx.Linear(HIDDEN, 1, rngs=rngs)

    def logits(self, x: jax.Array, e: jax.Array) -> jax.Array:
        h = nnx.relu(self.l1(jnp.concatenate([x, e], axis=-1)))
        return self.l2(self.drop(h))[..., 0]

    def __call__(self, x: jax.Array, u: jax.Array) -> jax.Array:
        return self.logits(x, self.embed(u))


def _validation_mask(design: Design, fraction: float) -> np.ndarray:
    """The last ``floor(n * fraction)`` of each user's ``n`` (time-ordered) training rows."""
    rank, size = day_rank(design)
    return np.asarray(rank >= size - np.floor(size * fraction))


def fit_embedding(
    train: Design,
    prior_means: np.ndarray,
    reg: float = 0.0,
    prior_init: bool = False,
    seed: int = 0,
) -> tuple[Callable[[Design], np.ndarray], dict[str, Any]]:
    """Train the embedding network with early stopping.

    Returns
    -------
    predict, info
        Risk per row of a design (users mapped by id; unseen users get the mean embedding), and
        the epochs run, best validation loss and validation rows.
    """
    # the first JAX computation fixes the device count for the process: keep one per chain for a
    # numpyro fit after it (``hbm compare``); the network itself runs on the first device
    expose_cpu_devices()
    n_users, n_k = len(train.users), train.x.shape[1]
    model = EmbeddingMLP(n_users, n_k, nnx.Rngs(params=seed, dropout=seed + 1))
    w_prior = jnp.asarray(np.repeat(prior_means[:, None], HIDDEN, axis=1), dtype=jnp.float32)
    if prior_init:
        model.l1.kernel[...] = model.l1.kernel[...].at[:n_k, :].set(w_prior)
        model.l2.kernel[...] = jnp.full_like(model.l2.kernel[...], 1.0 / HIDDEN)
    optimizer = nnx.Optimizer(model, optax.adam(LEARNING_RATE), wrt=nnx.Param)

    val = _validation_mask(train, VALIDATION_FRACTION)
    x = jnp.asarray(train.x, dtype=jnp.float32)
    u = jnp.asarray(train.user_index)
    y = jnp.asarray(train.y, dtype=jnp.float32)
    tr, va = jnp.asarray(~val), jnp.asarray(val)

    def loss_fn(m: EmbeddingMLP, mask: jax.Array) -> jax.Array:
        bce = optax.sigmoid_binary_cross_entropy(m(x, u), y)
        loss = jnp.sum(bce * mask) / jnp.maximum(jnp.sum(mask), 1)
        if reg:
            loss = loss + reg * jnp.sum((m.l1.kernel[...][:n_k, :] - w_prior) ** 2)
        return loss

    @nnx.jit
    def step(m: EmbeddingMLP, opt: nnx.Optimizer[Any]) -> jax.Array:
        loss, grads = nnx.value_and_grad(loss_fn)(m, tr)
        opt.update(m, grads)
        return loss

    @nnx.jit
    def val_loss(m: EmbeddingMLP) -> jax.Array:
        bce = optax.sigmoid_binary_cross_entropy(m(x, u), y)
        return jnp.sum(bce * va) / jnp.maximum(jnp.sum(va), 1)

    best, best_state, since, epochs = np.inf, nnx.state(model), 0, 0
    while epochs < MAX_EPOCHS:
        epochs += 1
        model.train()
        step(model, optimizer)
        model.eval()
        current = float(val_loss(model)) if val.any() else float(loss_fn(model, tr))
        if current < best - 1e-6:
            best, best_state, since = current, jax.tree.map(jnp.copy, nnx.state(model)), 0
        else:
            since += 1
            if since >= PATIENCE:
                break
    nnx.update(model, best_state)
    model.eval()
    pos = {user: i for i, user in enumerate(train.users)}
    mean_embedding = model.embed.embedding[...].mean(axis=0)

    def predict(design: Design) -> np.ndarray:
        users = np.asarray(design.users, dtype=object)[design.user_index]
        idx = np.array([pos.get(str(v), -1) for v in users], dtype=np.int64)
        table = jnp.concatenate([model.embed.embedding[...], mean_embedding[None, :]], axis=0)
        e = table[jnp.asarray(np.where(idx < 0, n_users, idx))]
        logits = model.logits(jnp.asarray(design.x, dtype=jnp.float32), e)
        return np.asarray(jax.nn.sigmoid(logits), dtype=float)

    info = {"epochs": epochs, "best_validation_loss": best, "validation_rows": int(val.sum())}
    return predict, info
