"""hbm.inference.nutpie_cache: nutpie's compiled model with disk-cached callbacks."""

from __future__ import annotations

import ctypes
import shutil

import numpy as np
import nutpie
import pytest

from hbm.data.exposures import exposures
from hbm.errors import FitError
from hbm.inference.nutpie_cache import compile_cached
from hbm.model.build import build_model, choose_centring
from hbm.model.simulation import SimulationConfig, simulate

# Every test here compiles a model or samples: left out of mutation runs.
pytestmark = pytest.mark.fits


def _fused(priors, n_days: int = 60, seed: int = 4):
    cohort = simulate(priors, SimulationConfig(n_users=5, n_days=n_days, seed=seed))
    design = exposures(cohort.diary, priors)
    cen = choose_centring(design, priors, "noncentred")
    return build_model(design, priors, "partial", cen, likelihood="fused"), len(design.users)


@pytest.fixture()
def fused_model(small_priors):
    return _fused(small_priors)


def _call(cfunc, sizes: tuple[int, ...], *pointers: int) -> int:
    """Call a nutpie callback by its address, as nutpie's sampler does: sizes, then pointers."""
    kinds = [ctypes.c_uint64] * len(sizes) + [ctypes.c_void_p] * len(pointers)
    return int(ctypes.CFUNCTYPE(ctypes.c_int64, *kinds)(cfunc.address)(*sizes, *pointers))


def _logp(compiled, point: np.ndarray) -> tuple[int, float, np.ndarray]:
    grad = np.zeros(compiled.n_dim)
    logp = np.zeros(())
    rc = _call(
        compiled.compiled_logp_func,
        (compiled.n_dim,),
        point.ctypes.data,
        grad.ctypes.data,
        logp.ctypes.data,
        compiled.user_data.ctypes.data,
    )
    return int(rc), float(logp), grad


def _expand(compiled, point: np.ndarray) -> tuple[int, np.ndarray]:
    out = np.zeros(compiled.n_expanded)
    rc = _call(
        compiled.compiled_expand_func,
        (compiled.n_dim, compiled.n_expanded),
        point.ctypes.data,
        out.ctypes.data,
        compiled.user_data.ctypes.data,
    )
    return int(rc), out


@pytest.mark.heavy
def test_callbacks_compute_what_nutpies_own_compute(fused_model):
    model, n_users = fused_model
    names = [v.name for v in model.free_RVs]
    ours = compile_cached(model, var_names=names)
    theirs = nutpie.compile_pymc_model(model, backend="numba", var_names=names)
    assert (ours.n_dim, ours.n_expanded) == (theirs.n_dim, theirs.n_expanded)
    assert ours.shapes == theirs.shapes and ours.dims == theirs.dims
    rng = np.random.default_rng(0)
    new_centring = {"centring_z": rng.uniform(size=(n_users, 3)), "centring_za": np.ones(n_users)}
    pairs = [(ours, theirs), (ours.with_data(**new_centring), theirs.with_data(**new_centring))]
    for a, b in pairs:
        for _ in range(3):
            point = rng.normal(0, 0.5, ours.n_dim)
            rc_a, lp_a, g_a = _logp(a, point)
            rc_b, lp_b, g_b = _logp(b, point)
            assert rc_a == rc_b == 0
            assert lp_a == pytest.approx(lp_b, rel=1e-12)
            np.testing.assert_allclose(g_a, g_b, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(_expand(a, point)[1], _expand(b, point)[1], rtol=1e-12)
    # the new data reached the callbacks: the centring changes the log density
    point = rng.normal(0, 0.5, ours.n_dim)
    assert _logp(pairs[0][0], point)[1] != _logp(pairs[1][0], point)[1]
    # a wrong dimension is refused, as nutpie's callbacks refuse it
    assert _logp(ours, np.zeros(ours.n_dim))[0] == 0
    bad = _call(ours.compiled_logp_func, (ours.n_dim + 1,), 0, 0, 0, ours.user_data.ctypes.data)
    assert bad == -1


@pytest.mark.heavy
def test_callbacks_are_always_the_copy_numba_cached(fused_model, tmp_path, monkeypatch):
    model, _ = fused_model
    # an empty cache: the first compile below compiles afresh, in a child process
    monkeypatch.setattr("pytensor.link.numba.cache.NUMBA_CACHE_PATH", tmp_path)
    # the first compile of a form runs the cached copy too, and this process never compiles the
    # log density itself: a copy compiled here would round otherwise, so the first fit on a
    # machine would take other draws than every later one with its seed. A callback holding
    # per-process constants could not be cached and would fail here.
    for compiled in (compile_cached(model), compile_cached(model)):
        assert compiled.compiled_logp_func.cache_hits == 1
        assert compiled.compiled_expand_func.cache_hits == 1
        assert not compiled.logp_func.vm.jit_fn.signatures


def test_a_failed_compile_in_the_child_process_is_an_error(fused_model, tmp_path, monkeypatch):
    model, _ = fused_model
    monkeypatch.setattr("pytensor.link.numba.cache.NUMBA_CACHE_PATH", tmp_path)
    monkeypatch.setattr("sys.executable", shutil.which("false"))
    with pytest.raises(FitError, match="compiling the model's nutpie callbacks failed"):
        compile_cached(model)


@pytest.mark.heavy
def test_diaries_of_one_form_share_the_compiled_callbacks(small_priors, tmp_path, monkeypatch):
    monkeypatch.setattr("pytensor.link.numba.cache.NUMBA_CACHE_PATH", tmp_path)
    compile_cached(_fused(small_priors)[0])
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert any(name.startswith("string.hbm_nutpie_logp") for name in cached)
    # other days, other exposures and their scales, same users and features: nothing compiles
    other, _ = _fused(small_priors, n_days=45, seed=9)
    compile_cached(other)
    assert sorted(p.name for p in tmp_path.iterdir()) == cached


def test_the_cached_model_samples(fused_model):
    model, _ = fused_model
    compiled = compile_cached(model, var_names=[v.name for v in model.free_RVs])
    tree = nutpie.sample(compiled, draws=30, tune=30, chains=1, seed=1, progress_bar=False)
    post = tree["posterior"]
    assert post["mu"].shape == (1, 30, 3)
    assert np.isfinite(post["mu"].values).all()
