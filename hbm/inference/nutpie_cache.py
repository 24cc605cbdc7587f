"""nutpie's compiled model, with C callbacks that numba caches on disk.

nutpie samples through two C callbacks (log density with gradient, and the per-draw expansion)
that it compiles with ``numba.cfunc``. Its own callbacks capture the model's data arrays and a
per-compile record type as constants, so numba cannot cache them. Each fit then compiled them again,
and numba re-optimized the model's whole log density inside them, a large share of a fit's wall
time (BENCHMARKS.md).

The callbacks built here read everything from nutpie's user-data record instead. They use the
record's fixed layout of 64-bit words, and each array's dtype and rank are written into their
source. Numba can then cache them under a key made of that source and PyTensor's cache key for the
log-density graph. A refit of a model of the same form loads them from PyTensor's numba cache
directory; only a new form compiles, in a child process, and this process then loads it like any
later one. Compiled here, the model's log density would stay loaded in this process and the
cached callbacks would call that copy, which rounds differently: the first fit of a form on a
machine took other draws than every later fit with the same seed.

The rest is nutpie's: the compiled model is nutpie's ``CompiledPyMCModel``, so
``nutpie.sample`` and ``with_data`` work on it unchanged. Its record layout and function
signatures are nutpie internals, so ``pyproject.toml`` pins nutpie's minor version. The tests
compare these callbacks with nutpie's own, value and gradient.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pymc as pm

from hbm.errors import FitError

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


@dataclass(frozen=True)
class _Callback:
    """A callback's Python source function, ready for ``numba.cfunc``."""

    fn: Any
    signature: str
    cacheable: bool  # PyTensor caches the function inside, so numba can cache this one

    def compile(self) -> Any:
        import numba

        return numba.cfunc(self.signature, cache=self.cacheable)(self.fn)

    def on_disk(self) -> bool:
        """Whether numba's cache holds this callback (probing it compiles nothing)."""
        from numba.core import sigutils
        from numba.core.ccallback import CFunc

        args, ret = sigutils.normalize_signature(self.signature)
        probe: Any = CFunc(self.fn, (args, ret), {}, {})
        probe.enable_caching()
        context = probe._targetdescr.target_context
        return probe._cache.load_overload(probe._sig, context) is not None


def _callback(
    template: str,
    name: str,
    signature: str,
    fn_pt: Any,
    keys: dict[Any, str],
    record_dtype: np.dtype,
    **sizes: int,
) -> _Callback:
    """A callback around a compiled PyTensor function, keyed for numba's cache when PyTensor
    caches that function."""
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
        # the module's name too: a cached callback imports it on loading, so an entry written
        # under another name (before a move) must not be found
        stamp = f"{_WRAPPER_VERSION}|{__name__}|{nutpie.__version__}|{inner_key}|{src}"
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
    return _Callback(fn, signature, cache_key is not None)


def _compile_in_child(model: pm.Model, var_names: Sequence[str] | None) -> None:
    """Compile a model's callbacks into numba's cache from a child process.

    Compiled in this process, the model's log density would stay loaded here, and the cached
    callbacks loaded afterwards call that copy, which rounds differently from the one they
    carry: the first fit of a model form on a machine would then take other draws than every
    later fit with the same seed (ARCHITECTURE.md, "Compiled once per form, on disk").
    """
    import cloudpickle
    from pytensor.link.numba.cache import NUMBA_CACHE_PATH

    # var_names exactly as given: an empty list (store nothing) is another form than None (all)
    names = None if var_names is None else list(var_names)
    payload = cloudpickle.dumps((model, names, str(NUMBA_CACHE_PATH)))
    code = "from hbm.inference.nutpie_cache import _compile_from_stdin; _compile_from_stdin()"
    done = subprocess.run(
        [sys.executable, "-c", code], input=payload, capture_output=True, check=False
    )
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-2000:]
        raise FitError(f"compiling the model's nutpie callbacks failed:\n{tail}")


def _compile_from_stdin() -> None:
    """The child process of ``_compile_in_child``: compile what it was sent, here."""
    import cloudpickle
    import pytensor.link.numba.cache as pytensor_cache

    model, var_names, cache_dir = cloudpickle.loads(sys.stdin.buffer.read())
    pytensor_cache.NUMBA_CACHE_PATH = Path(cache_dir)  # the parent's, whatever config says
    _compile(model, var_names, compile_here=True)


def compile_cached(model: pm.Model, var_names: Sequence[str] | None = None) -> Any:
    """nutpie's compiled model (numba backend), its callbacks cached across processes.

    A model form not in the cache yet is compiled by a child process (``_compile_in_child``), so
    that this process runs the cached callbacks like every later one.

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
    return _compile(model, var_names, compile_here=False)


def _shared_data(logp_pt: Any, expand_pt: Any) -> tuple[dict[Any, str], dict[str, np.ndarray]]:
    """The record's key of each shared variable of the two functions, and a read-only copy of
    each one's value under its key."""
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
    return keys, shared_data


def _compile(model: pm.Model, var_names: Sequence[str] | None, compile_here: bool) -> Any:
    """``compile_cached``; ``compile_here``: compile missing callbacks in this process."""
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
    keys, shared_data = _shared_data(logp_pt, expand_pt)
    user_data = make_user_data(keys, shared_data)
    callbacks = (
        _callback(
            _LOGP_SRC, "hbm_nutpie_logp", _LOGP_SIG, logp_pt, keys, user_data.dtype, n_dim=n_dim
        ),
        _callback(
            _EXPAND_SRC,
            "hbm_nutpie_expand",
            _EXPAND_SIG,
            expand_pt,
            keys,
            user_data.dtype,
            n_dim=n_dim,
            n_expanded=n_expanded,
        ),
    )
    cacheable = all(cb.cacheable for cb in callbacks)
    if cacheable and not compile_here and not all(cb.on_disk() for cb in callbacks):
        _compile_in_child(model, var_names)
    logp, expand = (cb.compile() for cb in callbacks)
    if cacheable and compile_here and logp.cache_hits == 0:
        # what every later process will load: the freshly compiled code rounds otherwise
        logp, expand = (cb.compile() for cb in callbacks)
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
