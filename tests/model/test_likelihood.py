"""The fused Bernoulli-logit likelihood against a plain numpy reference, and its PyTensor Op."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from hbm.model.likelihood import (
    BLOCK,
    CODE_MAX,
    LAYOUTS,
    SegmentBernoulliLogit,
    flat_exposures,
    quantize_exposures,
    register_jax,
    rows_logp_draw,
    segment_bernoulli_logit,
    segment_logp_grad,
)

# Every test here compiles a model or samples: left out of mutation runs.
pytestmark = pytest.mark.fits


def reference(x_t, y, offsets, w, a):
    user = np.repeat(np.arange(len(a)), np.diff(offsets))
    eta = a[user] + np.einsum("fn,nf->n", x_t, w[user])
    resid = y - np.exp(-np.logaddexp(0.0, -eta))
    gw = np.zeros_like(w)
    np.add.at(gw, user, resid[:, None] * x_t.T)
    return float(np.sum(y * eta - np.logaddexp(0.0, eta))), gw, np.bincount(user, resid, len(a))


def assert_float32_close(got, expected, x_t, offsets, a, w):
    """The kernel's rows are float32 arithmetic and its sums float64: each row's terms carry a
    few float32 roundings (6e-8 relative), so the bounds scale with the sums of magnitudes."""
    lp, gw, ga = got
    lp0, gw0, ga0 = expected
    user = np.repeat(np.arange(len(a)), np.diff(offsets))
    eta = a[user] + np.einsum("fn,nf->n", x_t, w[user])
    assert abs(lp - lp0) <= 1e-6 * np.sum(np.abs(eta) + 1.0)
    abs_x = np.zeros_like(w)
    np.add.at(abs_x, user, np.abs(x_t.T))
    assert np.all(np.abs(gw - gw0) <= 1e-6 * (abs_x + 1.0))
    assert np.all(np.abs(ga - ga0) <= 1e-6 * (np.diff(offsets) + 1.0))


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
    x_t, _, offsets, w, a = args
    got = segment_logp_grad(*flat(*args, layout))
    assert_float32_close(got, reference(*args), x_t, offsets, a, w)


@pytest.mark.parametrize("eta", [-800.0, -745.5, -36.0, -1e-9, 0.0, 1e-9, 36.0, 745.5, 800.0])
@pytest.mark.parametrize("y", [0.0, 1.0])
def test_single_row_in_the_tails(eta, y):
    lp, _, ga = segment_logp_grad(
        np.zeros(1), np.array([y]), np.array([0, 1]), np.zeros((1, 1)), np.array([eta])
    )
    expected = -np.logaddexp(0.0, -eta if y else eta)  # log sigmoid(+-eta), without cancelling
    assert np.isfinite(lp)
    # a float32 row is exact to a few roundings of its largest term, |eta| or 1 (the same
    # absolute bound as the kernel test); where log sigmoid is tiny, that is all of it
    assert abs(lp - expected) <= 1e-6 * (abs(eta) + 1.0)
    assert lp <= 0.0
    # y - sigmoid(eta) is within 6e-8 of the residual, which is all of it near eta = 0 ...
    resid = y - np.exp(-np.logaddexp(0.0, -eta))
    assert ga[0] == pytest.approx(resid, rel=1e-6, abs=1e-7)
    # ... and is exact in sign and scale in the far tail, where it is tiny or near -1/+1
    if abs(eta) >= 36 and (eta < 0) == (y == 0):
        assert abs(ga[0]) <= 1e-15


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", ["NUMBA", "FAST_COMPILE", "JAX"])
def test_op_value_and_gradient(mode, dtype, layout):
    """The Op under PyTensor's numba backend, its Python fallback and JAX give the reference,
    with float64 data and with float32 data (as ``hbm.model.build`` stores them)."""
    if mode == "JAX":
        register_jax()
    x_t, y, offsets, w0, a0 = case([40, 0, 700, 3], seed=2)
    x_t, y = x_t.astype(dtype), y.astype(dtype)
    w, a = pt.dmatrix("w"), pt.dvector("a")
    op = SegmentBernoulliLogit(layout)
    lp = op(flat_exposures(x_t.T, offsets, layout), y, offsets, w, a)[0]
    f = pytensor.function([w, a], [lp, *pt.grad(lp, [w, a])], mode=mode)
    got = f(w0, a0)
    x64 = x_t.astype(float)
    expected = reference(x64, y.astype(float), offsets, w0, a0)
    if mode == "JAX":  # JAX's version is float64 throughout
        assert float(got[0]) == pytest.approx(expected[0], rel=1e-12)
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(got[2], expected[2], rtol=1e-10, atol=1e-10)
    else:
        assert_float32_close((float(got[0]), got[1], got[2]), expected, x64, offsets, a0, w0)


@pytest.mark.parametrize("mode", ["NUMBA", "JAX"])
def test_int16_codes_with_scaled_weights_give_the_decoded_likelihood(mode):
    """``hbm.model.build``'s storage: ``x . w = codes . (w * scale)``, the same under numba and
    JAX."""
    if mode == "JAX":
        register_jax()
    x_t, y, offsets, w0, a0 = case([40, 0, 700, 3], seed=3)
    codes, scale = quantize_exposures(x_t.T)
    assert codes.dtype == np.int16
    w, a = pt.dmatrix("w"), pt.dvector("a")
    lp = segment_bernoulli_logit(flat_exposures(codes, offsets), y, offsets, w * scale, a)[0]
    f = pytensor.function([w, a], [lp, *pt.grad(lp, [w, a])], mode=mode)
    decoded = (codes * scale).T
    expected = reference(decoded, y, offsets, w0, a0)
    assert_float32_close(tuple(f(w0, a0)), expected, decoded, offsets, a0, w0)


def test_quantized_exposures_round_within_their_bound():
    rng = np.random.default_rng(4)
    x = np.column_stack([rng.normal(size=500), np.zeros(500), rng.integers(0, 2, 500) - 0.3])
    x[7, 0] = -9.0  # the feature's largest |x| sets its scale
    codes, scale = quantize_exposures(x)
    assert scale[0] == pytest.approx(9.0 / CODE_MAX) and scale[1] == 1.0
    assert codes[7, 0] == -CODE_MAX and np.all(codes[:, 1] == 0)
    assert np.all(np.abs(codes * scale - x) <= scale / 2 * (1 + 1e-12))
    assert np.abs(codes).max() <= CODE_MAX


def test_second_derivatives_are_refused():
    x_t, y, offsets, _, _ = case([4])
    w, a = pt.dmatrix("w"), pt.dvector("a")
    _, gw, _ = segment_bernoulli_logit(flat_exposures(x_t.T, offsets), y, offsets, w, a)
    with pytest.raises(NotImplementedError, match="second derivatives"):
        pt.grad(gw.sum(), w)


@pytest.mark.parametrize("scale", [0.3, 5.0, 40.0])
def test_rows_logp_draw_puts_each_rows_log_mass_and_outcome_at_its_diary_row(scale):
    """Per row, in the diary's order (not the kernel's by-user order): the log-mass against
    numpy in float64, and ``y_rep = uniform < sigmoid(eta)`` wherever the two are not tied."""
    x_t, y, offsets, w, a = case([0, 7, BLOCK + 3, 1, 2 * BLOCK], scale=scale, seed=8)
    n = y.size
    rows = np.random.default_rng(9).permutation(n)  # sorted row j is diary row rows[j]
    uniform = np.random.default_rng(10).random(n, dtype=np.float32)
    logp = np.full(n, np.nan, dtype=np.float32)
    y_rep = np.full(n, -1, dtype=np.int8)
    x_flat = flat_exposures(x_t.T, offsets, "blocked")
    rows_logp_draw(x_flat, y.astype(np.float32), offsets, rows, w, a, uniform, logp, y_rep)

    user = np.repeat(np.arange(len(a)), np.diff(offsets))
    eta_sorted = a[user] + np.einsum("fn,nf->n", x_t, w[user])
    eta, y_diary = np.empty(n), np.empty(n)
    eta[rows], y_diary[rows] = eta_sorted, y
    expected = y_diary * eta - np.logaddexp(0.0, eta)
    # float32 rows: a few roundings of each term of eta (6e-8 relative)
    bound = 1e-6 * (np.abs(a[user]) + np.abs(x_t * w[user].T).sum(axis=0) + 1.0)
    bound_diary = np.empty(n)
    bound_diary[rows] = bound
    assert np.all(np.abs(logp - expected) <= bound_diary)
    p = 1.0 / (1.0 + np.exp(-eta))
    clear = np.abs(uniform - p) > bound_diary
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(y_rep[clear], (uniform < p)[clear])
    assert set(np.unique(y_rep)) <= {0, 1}
