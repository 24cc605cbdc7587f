"""nutpie's compiled model, with C callbacks that numba caches on disk.

nutpie samples through two C callbacks (log density with gradient, and the per-draw expansion)
that it compiles with ``numba.cfunc``. Its own callbacks capture the model's data arrays and a
per-compile record type as constants, so numba cannot cache them. Each fit then compiled them again,
and numba re-optimized the model's whole log density inside them: 4-5 s a fit, 8-10 s for the first
fit in a process (medium benchmark, about half of its wall time).

The callbacks built here read everything from nutpie's user-data record instead. They use the
record's fixed layout of 64-bit words, and each array's dtype and rank are written into their
source. Numba can then cache them under a key made of that source and PyTensor's cache key for the
log-density graph. A refit of a model of the same form loads them from PyTensor's numba cache
directory; only a new form compiles. A new form's callbacks are compiled, cached, then loaded
back from the cache: the freshly compiled code rounded differently from its cached copy, so
without that the first fit of a form on a machine took other draws than later fits with the same
seed.

The rest is nutpie's: the compiled model is nutpie's ``CompiledPyMCModel``, so
``nutpie.sample`` and ``with_data`` work on it unchanged. Its record layout and function
signatures are nutpie internals, so ``pyproject.toml`` pins nutpie's minor version. The tests
compare these callbacks with nutpie's own, value and gradient.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pymc as pm

#: Bump when the generated source changes meaning without its text changing.
_WRAPPER_VERSION = 1

_LOGP_SIG = "int64(uint64, CPointer(double), CPointer(double), CPointer(double), voidptr)"
_EXPAND_SIG = "int64(uint64, uint64, CPointer(double), CPointer(double), voidptr)"


def _word(record_dtype: np.dtype, *path: str) -> int:
    """Index, in 64-bit words, of a field nested in nutpie's user-data record."""
    offset = 0
    dtype = record_dtype
    for name in path:
        fields = dtype.fields
        if fields is None or name not in fields:
            raise RuntimeError(f"nutpie's user-data record has no field {path}")
        field_dtype, field_offset = fields[name][:2]
        offset += field_offset
        dtype = field_dtype
    if offset % 8:
        raise RuntimeError(f"nutpie's user-data field {path} is not 64-bit aligned")
    return offset // 8


def _array_exprs(
    shared: Sequence[Any], keys: dict[Any, str], record_dtype: np.dtype
) -> tuple[list[str], int]:
    """Source expressions rebuilding each shared array from the record, and the record's words."""
    if record_dtype.itemsize % 8:
        raise RuntimeError("nutpie's user-data record is not made of 64-bit words")
    exprs = []
    for var in shared:
        key = keys[var]
        value = var.get_value(borrow=True)
        data = _word(record_dtype, "shared", "data", key)
        shape0 = _word(record_dtype, "shared", "shape", key)
        dims = ", ".join(f"int(h[{shape0 + i}])" for i in range(value.ndim))
        shape = f"({dims},)" if value.ndim else "()"
        exprs.append(f"numba.carray(as_ptr(h[{data}]), {shape}, np.{np.dtype(value.dtype).name})")
    return exprs, record_dtype.itemsize // 8


_LOGP_SRC = """
def hbm_nutpie_logp(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        h = numba.carray(user_data_, ({words},), np.uint64)
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_dim},))
        logp = numba.carray(logp_, ())
        logp_val, grad = inner({args})
        logp[()] = logp_val
        finite = True
        for i in range({n_dim}):
            out[i] = grad[i]
            finite = finite and np.isfinite(grad[i])
        if not finite:
            return 3
        if not np.isfinite(logp[()]):
            return 4
    except Exception:
        return 1
    return 0
"""

_EXPAND_SRC = """
def hbm_nutpie_expand(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        h = numba.carray(user_data_, ({words},), np.uint64)
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_expanded},))
        (values,) = inner({args})
        for i in range({n_expanded}):
            out[i] = values[i]
    except Exception:
        return -2
    return 0
"""


def _cached_cfunc(
    template: str,
    name: str,
    signature: str,
    fn_pt: Any,
    keys: dict[Any, str],
    record_dtype: np.dtype,
    **sizes: int,
) -> Any:
    """A ``numba.cfunc`` around a compiled PyTensor function, cached when PyTensor caches it."""
    import numba
    import nutpie
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    inner = fn_pt.vm.jit_fn
    exprs, words = _array_exprs(fn_pt.get_shared(), keys, record_dtype)
    src = template.format(words=words, args=", ".join(["x", *exprs]), **sizes)
    inner_key = CACHED_SRC_FUNCTIONS.get(inner.py_func)
    cache_key = None
    if inner_key is not None:
        stamp = f"{_WRAPPER_VERSION}|{nutpie.__version__}|{inner_key}|{src}"
        cache_key = hashlib.sha256(stamp.encode()).hexdigest()
    # numba names the callback's environment after __name__, and imports it to load the cache
    env = {
        "__name__": __name__,
        "numba": numba,
        "np": np,
        "inner": inner,
        "as_ptr": address_as_void_pointer,
    }
    fn = compile_numba_function_src(src, name, env, cache_key=cache_key)
    cfunc = numba.cfunc(signature, cache=cache_key is not None)(fn)
    if cache_key is not None and cfunc.cache_hits == 0:
        # run what every later process will load: the freshly compiled callback computed other
        # roundings than its cached copy, so the first fit of a form took other draws
        cfunc = numba.cfunc(signature, cache=True)(fn)
    return cfunc


def compile_cached(model: pm.Model, var_names: Sequence[str] | None = None) -> Any:
    """nutpie's compiled model (numba backend), its callbacks cached across processes.

    Parameters
    ----------
    model
        A PyMC model.
    var_names
        Variables nutpie stores per draw; ``None``: all.

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
        What ``nutpie.compile_pymc_model(model, backend="numba", var_names=var_names)`` returns,
        with callbacks that compute the same values.
    """
    from nutpie.compile_pymc import (
        CompiledPyMCModel,
        _make_functions,
        _prepare_dims_and_coords,
        _wrap_with_lock,
        make_user_data,
    )
    from pymc.initial_point import make_initial_point_fn

    # nutpie's defaults for the numba backend: start at the support point, jittered
    initial_point_fn = _wrap_with_lock(
        make_initial_point_fn(
            model=model,
            default_strategy="support_point",
            jitter_rvs=set(model.free_RVs),
            return_transformed=True,
        )
    )
    (n_dim, n_expanded, logp_pt, expand_pt, initial_fn, shape_info, reparameterized) = (
        _make_functions(
            model,
            mode="NUMBA",
            compute_grad=True,
            join_expanded=True,
            pymc_initial_point_fn=initial_point_fn,
            var_names=var_names,
        )
    )
    shared_data: dict[str, np.ndarray] = {}
    keys: dict[Any, str] = {}
    for var in [*logp_pt.get_shared(), *expand_pt.get_shared()]:
        if var in keys:
            continue
        # nutpie names the record's fields by random keys; only their order matters here
        keys[var] = f"s{len(keys)}"
        value = np.array(var.get_value(), order="C", copy=True)
        value.flags.writeable = False
        shared_data[keys[var]] = value
    user_data = make_user_data(keys, shared_data)
    logp = _cached_cfunc(
        _LOGP_SRC, "hbm_nutpie_logp", _LOGP_SIG, logp_pt, keys, user_data.dtype, n_dim=n_dim
    )
    expand = _cached_cfunc(
        _EXPAND_SRC,
        "hbm_nutpie_expand",
        _EXPAND_SIG,
        expand_pt,
        keys,
        user_data.dtype,
        n_dim=n_dim,
        n_expanded=n_expanded,
    )
    dims, coords = _prepare_dims_and_coords(model, shape_info, reparameterized)
    return CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp,
        compiled_expand_func=expand,
        initial_point_func=initial_fn,
        shared_data=shared_data,
        shared_var_keys=keys,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_pt,
        expand_func=expand_pt,
        reparameterized_names=reparameterized,
    )
