"""The fused Bernoulli-logit likelihood against a plain numpy reference, and its PyTensor Op."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from hbm.likelihood import (
    BLOCK,
    LAYOUTS,
    SegmentBernoulliLogit,
    flat_exposures,
    register_jax,
    segment_bernoulli_logit,
    segment_logp_grad,
)


def reference(x_t, y, offsets, w, a):
    user = np.repeat(np.arange(len(a)), np.diff(offsets))
    eta = a[user] + np.einsum("fn,nf->n", x_t, w[user])
    resid = y - np.exp(-np.logaddexp(0.0, -eta))
    gw = np.zeros_like(w)
    np.add.at(gw, user, resid[:, None] * x_t.T)
    return float(np.sum(y * eta - np.logaddexp(0.0, eta))), gw, np.bincount(user, resid, len(a))


def flat(x_t, y, offsets, w, a, layout):
    """The kernel's arguments, the exposures flattened in ``layout``."""
    return flat_exposures(x_t.T, offsets, layout), y, offsets, w, a, layout == "blocked"


def test_blocked_layout_stores_each_block_feature_by_feature():
    # users of 3 and BLOCK + 2 rows: blocks (0, 3), (3, BLOCK), (3 + BLOCK, 2); 2 features
    offsets = np.array([0, 3, 5 + BLOCK])
    n = int(offsets[-1])
    x = np.stack([np.arange(n), 1000 + np.arange(n)], axis=1).astype(float)
    expected = []
    for start, size in ((0, 3), (3, BLOCK), (3 + BLOCK, 2)):
        expected += [x[start : start + size, 0], x[start : start + size, 1]]
    np.testing.assert_array_equal(flat_exposures(x, offsets, "blocked"), np.concatenate(expected))
    np.testing.assert_array_equal(flat_exposures(x, offsets, "feature"), x.T.ravel())
    with pytest.raises(ValueError, match="layout"):
        flat_exposures(x, offsets, "rows")


def case(counts, n_feat=3, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    x_t = rng.normal(size=(n_feat, n))
    y = (rng.random(n) < 0.3).astype(float)
    w = rng.normal(scale=scale, size=(len(counts), n_feat))
    a = rng.normal(scale=scale, size=len(counts))
    return x_t, y, offsets, w, a


@pytest.mark.parametrize(
    "counts",
    [[5], [0, 7, 0, 3], [BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17], [1, 1, 1]],
)
@pytest.mark.parametrize("scale", [0.3, 5.0, 300.0])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_kernel_matches_numpy(counts, scale, layout):
    """Users with no rows, blocks split mid-user, and predictors far in both tails."""
    args = case(counts, scale=scale)
    lp, gw, ga = segment_logp_grad(*flat(*args, layout))
    lp0, gw0, ga0 = reference(*args)
    assert lp == pytest.approx(lp0, rel=1e-13, abs=1e-10)
    np.testing.assert_allclose(gw, gw0, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(ga, ga0, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("eta", [-800.0, -745.5, -36.0, -1e-9, 0.0, 1e-9, 36.0, 745.5, 800.0])
@pytest.mark.parametrize("y", [0.0, 1.0])
def test_single_row_in_the_tails(eta, y):
    lp, _, ga = segment_logp_grad(
        np.zeros(1), np.array([y]), np.array([0, 1]), np.zeros((1, 1)), np.array([eta])
    )
    expected = -np.logaddexp(0.0, -eta if y else eta)  # log sigmoid(+-eta), without cancelling
    assert np.isfinite(lp)
    assert lp == pytest.approx(expected, rel=1e-14, abs=1e-300)
    # y - sigmoid(eta) cancels near y for large |eta| (as in PyTensor's graph): 1e-15 absolute
    assert ga[0] == pytest.approx(y - np.exp(-np.logaddexp(0.0, -eta)), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", ["NUMBA", "FAST_COMPILE", "JAX"])
def test_op_value_and_gradient(mode, dtype, layout):
    """The Op under PyTensor's numba backend, its Python fallback and JAX give the reference,
    with float64 data and with float32 data (as ``hbm.model`` stores them)."""
    if mode == "JAX":
        register_jax()
    x_t, y, offsets, w0, a0 = case([40, 0, 700, 3], seed=2)
    x_t, y = x_t.astype(dtype), y.astype(dtype)
    w, a = pt.dmatrix("w"), pt.dvector("a")
    op = SegmentBernoulliLogit(layout)
    lp = op(flat_exposures(x_t.T, offsets, layout), y, offsets, w, a)[0]
    f = pytensor.function([w, a], [lp, *pt.grad(lp, [w, a])], mode=mode)
    got = f(w0, a0)
    expected = reference(x_t.astype(float), y.astype(float), offsets, w0, a0)
    assert float(got[0]) == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[2], expected[2], rtol=1e-10, atol=1e-10)


def test_second_derivatives_are_refused():
    x_t, y, offsets, _, _ = case([4])
    w, a = pt.dmatrix("w"), pt.dvector("a")
    _, gw, _ = segment_bernoulli_logit(flat_exposures(x_t.T, offsets), y, offsets, w, a)
    with pytest.raises(NotImplementedError, match="second derivatives"):
        pt.grad(gw.sum(), w)
